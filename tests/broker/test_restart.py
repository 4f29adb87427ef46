"""A restarted broker keeps its identity, topics, configs and data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

# The admin package re-exports these without declaring them public to type checkers.
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker

TIMEOUT = 30.0


def test_restart_keeps_topics_configs_and_data(
    broker_factory: Callable[..., ThreadedBroker], broker_dir: Path
) -> None:
    first = broker_factory()
    admin = AdminClient({"bootstrap.servers": first.bootstrap_servers})
    created = admin.create_topics(
        [
            NewTopic(
                "kept", num_partitions=2, replication_factor=1, config={"retention.ms": "86400000"}
            )
        ]
    )
    created["kept"].result(TIMEOUT)
    producer = Producer({"bootstrap.servers": first.bootstrap_servers, "acks": "all"})
    for i in range(100):
        producer.produce("kept", value=b"%d" % i, partition=i % 2)
    assert producer.flush(TIMEOUT) == 0
    cluster_id = first.broker.cluster_id
    topic_id = first.broker.topics.get("kept").topic_id  # type: ignore[union-attr]
    first.stop()

    second = broker_factory(data_dir=broker_dir)
    assert second.broker.cluster_id == cluster_id
    assert second.broker.topics.get("kept").topic_id == topic_id  # type: ignore[union-attr]
    admin = AdminClient({"bootstrap.servers": second.bootstrap_servers})
    resource = ConfigResource(ConfigResource.Type.TOPIC, "kept")
    configs = admin.describe_configs([resource])[resource].result(TIMEOUT)
    assert configs["retention.ms"].value == "86400000"
    assert len(admin.list_topics("kept", timeout=TIMEOUT).topics["kept"].partitions) == 2

    consumer = Consumer(
        {
            "bootstrap.servers": second.bootstrap_servers,
            "group.id": "restart",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition("kept", p, 0) for p in (0, 1)])
    values: set[bytes | None] = set()
    for _ in range(100):
        for message in consumer.consume(100, timeout=0.5):
            assert message.error() is None
            values.add(message.value())
        if len(values) == 100:
            break
    consumer.close()
    assert values == {b"%d" % i for i in range(100)}
    # New data continues after the old, at the next offsets.
    producer = Producer({"bootstrap.servers": second.bootstrap_servers})
    reports: list[Message] = []
    producer.produce(
        "kept", value=b"after", partition=0, on_delivery=lambda e, m: reports.append(m)
    )
    producer.flush(TIMEOUT)
    assert reports[0].offset() == 50
