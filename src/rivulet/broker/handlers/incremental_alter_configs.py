"""IncrementalAlterConfigs (API key 44): change some of a topic's configs.

Operations: SET (0) a value, DELETE (1) an override (back to the default),
APPEND (2) and SUBTRACT (3) items of a list config (``cleanup.policy``, the
throttled-replica lists), starting from the config's current value. All
changes to one resource apply together or not at all.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from rivulet.broker.errors import InvalidConfigError, InvalidRequestError
from rivulet.broker.handlers._resources import alter_topic_configs
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topic_configs import TOPIC_CONFIGS, ConfigType
from rivulet.storage.base import LogConfig

if TYPE_CHECKING:
    from rivulet.broker.core import Broker
    from rivulet.broker.topics import Topic

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


def _overrides(broker: Broker, topic: Topic, resource: Any) -> dict[str, str]:
    """The topic's overrides after every change to ``resource``, or none of them."""
    repeated = [n for n, count in Counter(c.name for c in resource.configs).items() if count > 1]
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
    return overrides


async def handle(ctx: RequestContext, request: Any) -> Response:
    return alter_topic_configs(ctx.broker, request, _overrides)


HANDLER = Handler(
    api_key=44, min_version=0, max_version=1, handle=handle, name="IncrementalAlterConfigs"
)
