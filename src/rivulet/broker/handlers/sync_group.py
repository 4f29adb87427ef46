"""SyncGroup (API key 14): the leader hands out assignments; members collect theirs.

A member's SyncGroup waits until the leader's arrives. v3+ carry
``group.instance.id``; v5+ name the protocol type and name, which must match the
group's (INCONSISTENT_GROUP_PROTOCOL otherwise).
"""

from __future__ import annotations

from typing import Any

from rivulet.broker.coordinator.model import SyncRequest
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    sync = SyncRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        generation_id=request.generation_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=getattr(request, "protocol_type", None),
        protocol_name=getattr(request, "protocol_name", None),
        # Copied: assignments outlive the request buffer.
        assignments={a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    answer = await groups(ctx).sync_group(sync)
    return {
        "throttle_time": 0,
        "error_code": answer.error,
        "protocol_type": answer.protocol_type,
        "protocol_name": answer.protocol_name,
        "assignment": answer.assignment,
    }


HANDLER = Handler(api_key=14, min_version=0, max_version=5, handle=handle, name="SyncGroup")
