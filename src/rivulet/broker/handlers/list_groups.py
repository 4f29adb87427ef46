"""ListGroups (API key 16): every group, optionally filtered by state (v4+) or type (v5+)."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.coordinator import CLASSIC_GROUP_TYPE
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    found = groups(ctx).list_groups(
        states=getattr(request, "states_filter", None),
        types=getattr(request, "types_filter", None),
    )
    return {
        "throttle_time": 0,
        "error_code": ErrorCode.none,
        "groups": [
            {
                "group_id": g.group_id,
                "protocol_type": g.protocol_type,
                "group_state": g.state.value,
                "group_type": CLASSIC_GROUP_TYPE,
            }
            for g in found
        ],
    }


HANDLER = Handler(api_key=16, min_version=0, max_version=5, handle=handle, name="ListGroups")
