"""FindCoordinator (API key 10): which broker coordinates a group or transaction.

This broker is the only one, so it coordinates every group and transactional id.
v0 asks for a group; v1-3 name the key type (0 group, 1 transaction); v4+ batch
several keys of one type. Other key types (2, share groups) get INVALID_REQUEST.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_GROUP = 0
_TRANSACTION = 1
_BATCHED_FROM = 4


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    key_type = getattr(request, "key_type", _GROUP)
    if key_type in (_GROUP, _TRANSACTION):
        error, message = ErrorCode.none, None
    else:
        error = ErrorCode.invalid_request
        message = f"key type {key_type} is not supported: use 0 (group) or 1 (transaction)"
    node = {
        "node_id": broker.config.node_id if error is ErrorCode.none else -1,
        "host": broker.config.client_host if error is ErrorCode.none else "",
        "port": broker.port if error is ErrorCode.none else -1,
        "error_code": error,
        "error_message": message,
    }
    if ctx.api_version >= _BATCHED_FROM:
        return {
            "throttle_time": 0,
            "coordinators": [{"key": key, **node} for key in request.coordinator_keys],
        }
    return {"throttle_time": 0, **node}


HANDLER = Handler(api_key=10, min_version=0, max_version=6, handle=handle, name="FindCoordinator")
