"""LeaveGroup (API key 13): members leave, so the group rebalances at once.

v0-2 name one member; v3+ a batch, each by member id and/or
``group.instance.id`` (an empty member id with an instance id evicts that static
member, as Kafka's admin tools do), each with its own error.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.model import LeavingMember
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_BATCHED_FROM = 3


async def handle(ctx: RequestContext, request: Any) -> Response:
    if ctx.api_version < _BATCHED_FROM:
        result = groups(ctx).leave_group(request.group_id, [LeavingMember(request.member_id)])
        error = result.error
        if error is ErrorCode.none and result.member_errors:
            error = result.member_errors[0]
        return {"throttle_time": 0, "error_code": error}
    leaving = [LeavingMember(m.member_id, m.group_instance_id) for m in request.members]
    result = groups(ctx).leave_group(request.group_id, leaving)
    return {
        "throttle_time": 0,
        "error_code": result.error,
        "members": [
            {
                "member_id": who.member_id,
                "group_instance_id": who.group_instance_id,
                "error_code": error,
            }
            for who, error in zip(leaving, result.member_errors, strict=False)
        ],
    }


HANDLER = Handler(api_key=13, min_version=0, max_version=5, handle=handle, name="LeaveGroup")
