"""IncrementalAlterConfigs (API key 44): change some of a topic's configs.

Operations: SET (0) a value, DELETE (1) an override (back to the default),
APPEND (2) and SUBTRACT (3) items of a list config (``cleanup.policy``, the
throttled-replica lists), starting from the config's current value. All
changes to one resource apply together or not at all.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError, InvalidConfigError, InvalidRequestError
from rivulet.broker.handlers._resources import config_target, read_only_broker_error
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topic_configs import TOPIC_CONFIGS, ConfigType
from rivulet.storage.base import LogConfig

__all__ = ["HANDLER"]

SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


def _apply(
    overrides: dict[str, str], defaults: LogConfig, name: str, operation: int, value: str | None
) -> None:
    """Apply one operation to ``overrides`` in place."""
    if operation == DELETE:
        overrides.pop(name, None)
        return
    if operation == SET:
        if value is None:
            raise InvalidConfigError(f"SET of {name!r} needs a value")
        overrides[name] = value
        return
    if operation not in (APPEND, SUBTRACT):
        raise InvalidRequestError(f"unknown config operation {operation} for {name!r}")
    definition = TOPIC_CONFIGS.get(name)
    if definition is None:
        raise InvalidConfigError(f"unknown topic config {name!r}")
    if definition.type is not ConfigType.LIST:
        raise InvalidConfigError(
            f"{name!r} is not a list config; APPEND and SUBTRACT apply only to lists, use SET"
        )
    current = overrides.get(name, definition.broker_default(defaults))
    items = [item for item in current.split(",") if item]
    changes = [item.strip() for item in (value or "").split(",") if item.strip()]
    if operation == APPEND:
        items += [item for item in changes if item not in items]
    else:
        items = [item for item in items if item not in changes]
    overrides[name] = ",".join(items)


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
            repeated = [
                n for n, count in Counter(c.name for c in resource.configs).items() if count > 1
            ]
            if repeated:
                raise InvalidRequestError(f"configs {repeated} appear more than once")
            overrides = dict(topic.overrides)
            for change in resource.configs:
                _apply(
                    overrides,
                    broker.topics.log_defaults,
                    change.name,
                    change.config_operation,
                    change.value,
                )
            broker.topics.set_overrides(topic.name, overrides, validate_only=request.validate_only)
        except BrokerError as exc:
            entry.update(error_code=exc.error_code, error_message=str(exc))
        responses.append(entry)
    return {"throttle_time": 0, "responses": responses}


HANDLER = Handler(
    api_key=44, min_version=0, max_version=1, handle=handle, name="IncrementalAlterConfigs"
)
