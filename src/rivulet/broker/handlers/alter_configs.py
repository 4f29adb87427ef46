"""AlterConfigs (API key 33): replace a topic's config overrides wholesale.

The legacy API: the configs given become the topic's complete set of
overrides, and every other config returns to its default. Broker settings are
fixed at start-up and cannot be altered.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.handlers._resources import config_target, read_only_broker_error
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    responses = []
    for resource in request.resources:
        entry: dict[str, Any] = {
            "error_code": ErrorCode.none,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
        }
        try:
            topic = config_target(broker, resource.resource_type, resource.resource_name)
            if topic is None:
                raise read_only_broker_error()
            overrides = {c.name: c.value for c in resource.configs if c.value is not None}
            broker.topics.set_overrides(topic.name, overrides, validate_only=request.validate_only)
        except BrokerError as exc:
            entry.update(error_code=exc.error_code, error_message=str(exc))
        responses.append(entry)
    return {"throttle_time": 0, "responses": responses}


HANDLER = Handler(api_key=33, min_version=0, max_version=2, handle=handle, name="AlterConfigs")
