"""The embedded, Kafka-protocol broker.

:class:`EmbeddedBroker` runs it in-process (tests, embedding); ``rivulet broker``
runs it as a server. :class:`BrokerConfig` holds every setting.
"""

from __future__ import annotations

from rivulet.broker.config import BrokerConfig, FetchTransfer, StorageKind
from rivulet.broker.core import Broker
from rivulet.broker.embedded import EmbeddedBroker, ThreadedBroker
from rivulet.broker.server import BrokerServer, serving_on

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerServer",
    "EmbeddedBroker",
    "FetchTransfer",
    "StorageKind",
    "ThreadedBroker",
    "serving_on",
]
