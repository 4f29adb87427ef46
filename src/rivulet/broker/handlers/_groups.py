"""Pieces the consumer group handlers share (JoinGroup ... OffsetDelete)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rivulet.broker.coordinator.runtime import GroupRuntime
    from rivulet.broker.router import RequestContext

__all__ = ["client_host", "groups", "millis"]


def groups(ctx: RequestContext) -> GroupRuntime:
    """The broker's group coordinator."""
    return ctx.broker.groups


def millis(value: datetime.timedelta | int) -> int:
    """A kio duration field (a ``timedelta``) in integer milliseconds."""
    if isinstance(value, int):
        return value
    return value // datetime.timedelta(milliseconds=1)


def client_host(ctx: RequestContext) -> str:
    """The client's address as Kafka reports it in group descriptions: ``/<ip>``."""
    host = ctx.client_host.rsplit(":", 1)[0] if ":" in ctx.client_host else ctx.client_host
    return f"/{host}"
