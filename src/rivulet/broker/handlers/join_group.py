"""JoinGroup (API key 11): join a group, or rejoin it for a rebalance.

The answer waits until the group's join phase completes (see
:mod:`rivulet.broker.coordinator`). Version differences: v0 has no rebalance
timeout (the session timeout serves), v4+ make a new member come back with the
id it is given (MEMBER_ID_REQUIRED), v5+ carry ``group.instance.id``, v7+ return
the protocol type, v9 can tell a rejoining static leader to skip assignment.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.model import GroupProtocol, JoinRequest
from rivulet.broker.handlers._groups import client_host, groups, millis
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_NULLABLE_PROTOCOL_FROM = 7


async def handle(ctx: RequestContext, request: Any) -> Response:
    version = ctx.api_version
    session = millis(request.session_timeout)
    join = JoinRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        client_id=ctx.header.client_id or "",
        client_host=client_host(ctx),
        session_timeout_ms=session,
        rebalance_timeout_ms=millis(getattr(request, "rebalance_timeout", session)),
        protocol_type=request.protocol_type,
        # Copied: the coordinator keeps metadata long after the request buffer is gone.
        protocols=tuple(GroupProtocol(p.name, bytes(p.metadata)) for p in request.protocols),
        require_known_member_id=version >= 4,
        supports_skip_assignment=version >= 9,
        reason=getattr(request, "reason", None),
    )
    answer = await groups(ctx).join_group(join)
    protocol_name = answer.protocol_name
    if protocol_name is None and version < _NULLABLE_PROTOCOL_FROM:
        protocol_name = ""
    return {
        "throttle_time": 0,
        "error_code": answer.error,
        "generation_id": answer.generation_id if answer.error is ErrorCode.none else -1,
        "protocol_type": answer.protocol_type,
        "protocol_name": protocol_name,
        "leader": answer.leader,
        "skip_assignment": answer.skip_assignment,
        "member_id": answer.member_id,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "metadata": m.metadata,
            }
            for m in answer.members
        ],
    }


HANDLER = Handler(api_key=11, min_version=0, max_version=9, handle=handle, name="JoinGroup")
