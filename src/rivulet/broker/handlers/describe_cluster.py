"""DescribeCluster (API key 60): the cluster id, its controller and its one broker."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.handlers._common import AUTHORIZED_OPERATIONS_OMITTED
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_BROKERS_ENDPOINT = 1


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    config = broker.config
    endpoint_type = getattr(request, "endpoint_type", _BROKERS_ENDPOINT)
    error, message = ErrorCode.none, None
    if endpoint_type != _BROKERS_ENDPOINT:
        error = ErrorCode.unsupported_endpoint_type
        message = "this broker has no separate controller endpoints; ask for brokers (1)"
    return {
        "throttle_time": 0,
        "error_code": error,
        "error_message": message,
        "endpoint_type": endpoint_type,
        "cluster_id": broker.cluster_id,
        "controller_id": config.node_id,
        "brokers": []
        if message
        else [
            {
                "broker_id": config.node_id,
                "host": config.client_host,
                "port": broker.port,
                "rack": None,
                "is_fenced": False,
            }
        ],
        "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


HANDLER = Handler(api_key=60, min_version=0, max_version=2, handle=handle, name="DescribeCluster")
