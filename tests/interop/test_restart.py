"""Topics, their configs and their records survive stopping and starting the broker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource, ConfigSource  # where the stubs have them

from rivulet.broker import ThreadedBroker
from tests.interop._support import create_topic, read_topic

pytestmark = pytest.mark.interop

BrokerFactory = Callable[..., ThreadedBroker]
OVERRIDES = {"retention.ms": "604800001", "max.message.bytes": "2000000"}


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2})
    for i, value in enumerate(values):
        producer.produce(topic, key=b"k%d" % (i % 5), value=value, headers=[("i", b"%d" % i)])
    assert producer.flush(15) == 0


def describe(bootstrap: str) -> tuple[str | None, dict[str, int], dict[str, str]]:
    """Cluster id, partitions of each user topic, and the overrides set on "orders"."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10)
    partitions = {
        name: len(topic.partitions)
        for name, topic in metadata.topics.items()
        if not name.startswith("__")
    }
    resource = ConfigResource(ConfigResource.Type.TOPIC, "orders")
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    overrides = {
        name: entry.value
        for name, entry in configs.items()
        if entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    }
    return metadata.cluster_id, partitions, overrides


def test_topics_configs_and_records_survive_a_restart(
    broker_factory: BrokerFactory, broker_dir: Path
) -> None:
    first = broker_factory(data_dir=broker_dir)
    create_topic(first.bootstrap_servers, "orders", partitions=3, configs=OVERRIDES)
    produce(first.bootstrap_servers, "orders", [b"order-%d" % i for i in range(30)])
    produce(first.bootstrap_servers, "auto-created", [b"x", b"y"])  # made by Produce itself
    before = describe(first.bootstrap_servers)
    orders_before = read_topic(first.bootstrap_servers, "orders", partitions=3)
    first.stop()

    again = broker_factory(data_dir=broker_dir)

    assert describe(again.bootstrap_servers) == before
    assert before[1:] == ({"orders": 3, "auto-created": 1}, OVERRIDES)
    assert read_topic(again.bootstrap_servers, "orders", partitions=3) == orders_before
    assert [r.value for r in read_topic(again.bootstrap_servers, "auto-created", 1)] == [
        b"x",
        b"y",
    ]
    # New records continue each partition's offsets; nothing is overwritten.
    produce(again.bootstrap_servers, "orders", [b"later-%d" % i for i in range(6)])
    orders_after = read_topic(again.bootstrap_servers, "orders", partitions=3)
    assert set(orders_before) <= set(orders_after)
    for partition in range(3):
        offsets = [r.offset for r in orders_after if r.partition == partition]
        assert offsets == list(range(len(offsets)))
    assert len(orders_after) == 36
