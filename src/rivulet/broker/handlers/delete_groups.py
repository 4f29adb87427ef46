"""DeleteGroups (API key 42): forget groups that have no members, with their offsets.

A group with members gets NON_EMPTY_GROUP; an unknown one GROUP_ID_NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    results = groups(ctx).delete_groups(list(request.groups_names))
    return {
        "throttle_time": 0,
        "results": [{"group_id": g, "error_code": error} for g, error in results],
    }


HANDLER = Handler(api_key=42, min_version=0, max_version=2, handle=handle, name="DeleteGroups")
