"""Config resources (topics and the broker) shared by the three config APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rivulet.broker.errors import BrokerError, InvalidRequestError, UnknownTopicError
from rivulet.broker.topics import Topic

if TYPE_CHECKING:
    from rivulet.broker.core import Broker

__all__ = ["BROKER", "TOPIC", "config_target", "read_only_broker_error"]

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


def read_only_broker_error() -> BrokerError:
    return InvalidRequestError(
        "broker settings are fixed when the broker starts; pass them to `rivulet broker` "
        "or EmbeddedBroker, or alter a topic's configs instead"
    )
