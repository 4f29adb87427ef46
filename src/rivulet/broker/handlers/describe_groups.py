"""DescribeGroups (API key 15): state, protocol, members and their assignments.

Metadata and assignments are given while the group is Stable. An unknown group
is described as Dead with no error up to v5; v6 answers GROUP_ID_NOT_FOUND
(KIP-1043).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.state import GroupState
from rivulet.broker.handlers._common import AUTHORIZED_OPERATIONS_OMITTED
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_NOT_FOUND_FROM = 6
_ALL_GROUP_OPERATIONS = sum(1 << op for op in (3, 6, 8))  # READ, DELETE, DESCRIBE


async def handle(ctx: RequestContext, request: Any) -> Response:
    operations = (
        _ALL_GROUP_OPERATIONS
        if getattr(request, "include_authorized_operations", False)
        else AUTHORIZED_OPERATIONS_OMITTED
    )
    out = []
    for group in groups(ctx).describe_groups(request.groups):
        error, message = group.error, None
        if group.state is GroupState.DEAD and ctx.api_version >= _NOT_FOUND_FROM:
            error = ErrorCode.group_id_not_found
            message = f"group {group.group_id!r} does not exist"
        out.append(
            {
                "error_code": error,
                "error_message": message,
                "group_id": group.group_id,
                "group_state": group.state.value,
                "protocol_type": group.protocol_type,
                "protocol_data": group.protocol_name,
                "members": [
                    {
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "member_metadata": m.metadata,
                        "member_assignment": m.assignment,
                    }
                    for m in group.members
                ],
                "authorized_operations": operations,
            }
        )
    return {"throttle_time": 0, "groups": out}


HANDLER = Handler(api_key=15, min_version=0, max_version=6, handle=handle, name="DescribeGroups")
