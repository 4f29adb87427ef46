"""Heartbeat (API key 12): a member is alive; the answer says whether to rejoin.

REBALANCE_IN_PROGRESS asks the member to rejoin; ILLEGAL_GENERATION,
UNKNOWN_MEMBER_ID and FENCED_INSTANCE_ID say it is no longer in the group's
current generation.
"""

from __future__ import annotations

from typing import Any

from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    error = groups(ctx).heartbeat(
        request.group_id,
        request.member_id,
        request.generation_id,
        getattr(request, "group_instance_id", None),
    )
    return {"throttle_time": 0, "error_code": error}


HANDLER = Handler(api_key=12, min_version=0, max_version=4, handle=handle, name="Heartbeat")
