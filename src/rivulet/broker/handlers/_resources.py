"""Config resources (topics and the broker) shared by the three config APIs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError, InvalidRequestError, UnknownTopicError
from rivulet.broker.topics import Topic

if TYPE_CHECKING:
    from rivulet.broker.core import Broker
    from rivulet.broker.router import Response

__all__ = ["BROKER", "TOPIC", "alter_topic_configs", "config_target"]

TOPIC = 2
BROKER = 4


def config_target(broker: Broker, resource_type: int, resource_name: str) -> Topic | None:
    """The topic a config resource names, or ``None`` for this broker itself.

    Raises :class:`BrokerError` for an unknown topic, another broker's id or a
    resource type without configs here.
    """
    if resource_type == TOPIC:
        topic = broker.topics.get(resource_name)
        if topic is None:
            raise UnknownTopicError(f"topic {resource_name!r} does not exist")
        return topic
    if resource_type == BROKER:
        if resource_name not in ("", str(broker.config.node_id)):
            raise InvalidRequestError(
                f"broker {resource_name!r} is not this broker; use {broker.config.node_id} "
                "or an empty name"
            )
        return None
    raise InvalidRequestError(
        f"resource type {resource_type} has no configs here; use topics (2) or the broker (4)"
    )


def _read_only_broker_error() -> BrokerError:
    return InvalidRequestError(
        "broker settings are fixed when the broker starts; pass them to `rivulet broker` "
        "or EmbeddedBroker, or alter a topic's configs instead"
    )


def alter_topic_configs(
    broker: Broker, request: Any, new_overrides: Callable[[Broker, Topic, Any], dict[str, str]]
) -> Response:
    """Answer an AlterConfigs or IncrementalAlterConfigs request.

    ``new_overrides(broker, topic, resource)`` gives the complete set of
    overrides a resource asks for; each resource succeeds or fails on its own,
    and the broker's own settings are refused as read-only.
    """
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
                raise _read_only_broker_error()
            overrides = new_overrides(broker, topic, resource)
            broker.topics.set_overrides(topic.name, overrides, validate_only=request.validate_only)
        except BrokerError as exc:
            entry.update(error_code=exc.error_code, error_message=str(exc))
        responses.append(entry)
    return {"throttle_time": 0, "responses": responses}
