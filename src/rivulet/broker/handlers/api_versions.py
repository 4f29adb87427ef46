"""ApiVersions (API key 18): which APIs and versions this broker serves.

Requests for a version above ours never reach this handler: the broker answers
them at v0 with UNSUPPORTED_VERSION and the same list (KIP-511), see
:meth:`rivulet.broker.core.Broker.handle_frame`.
"""

from __future__ import annotations

from typing import Any

from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    return {
        "error_code": 0,
        "throttle_time": 0,
        "api_keys": [
            {"api_key": key, "min_version": lo, "max_version": hi}
            for key, lo, hi in ctx.broker.router.api_versions()
        ],
        "supported_features": [],
        "finalized_features_epoch": -1,
        "finalized_features": [],
        "zk_migration_ready": False,
    }


HANDLER = Handler(api_key=18, min_version=0, max_version=4, handle=handle, name="ApiVersions")
