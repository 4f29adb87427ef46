"""Pieces several handlers share: topic lookup with auto-creation, constants."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from rivulet.broker.errors import UnknownTopicError
from rivulet.broker.topics import INTERNAL_TOPICS, Topic, validate_topic_name

if TYPE_CHECKING:
    from rivulet.broker.core import Broker

__all__ = ["AUTHORIZED_OPERATIONS_OMITTED", "lookup_topic"]

log = logging.getLogger(__name__)

AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
"""Kafka's value for "authorized operations were not requested"."""


def lookup_topic(broker: Broker, name: str, *, auto_create: bool) -> Topic:
    """The topic ``name``, created with broker defaults when allowed and missing.

    Raises :class:`~rivulet.broker.errors.BrokerError` (invalid name, unknown topic).
    """
    topic = broker.topics.get(name)
    if topic is not None:
        return topic
    validate_topic_name(name)
    if not (auto_create and broker.config.auto_create_topics) or name in INTERNAL_TOPICS:
        raise UnknownTopicError(f"topic {name!r} does not exist")
    topic = broker.topics.create(name, node_id=broker.config.node_id)
    log.info("auto-created topic %s", name)
    return topic
