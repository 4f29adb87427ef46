"""confluent-kafka (librdkafka) against the broker over TCP: producer, consumer, admin."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# The admin package re-exports these without declaring them public to type checkers.
from confluent_kafka.admin._config import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
)
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.cimpl import NewPartitions, NewTopic

from rivulet.broker import ThreadedBroker

TIMEOUT = 30.0

pytestmark = pytest.mark.interop


def admin(broker: ThreadedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap_servers})


def create(broker: ThreadedBroker, *topics: NewTopic) -> None:
    client = admin(broker)  # must outlive its futures
    for future in client.create_topics(list(topics), operation_timeout=10).values():
        future.result(TIMEOUT)


def produce(
    broker: ThreadedBroker,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    **config: Any,
) -> list[Message]:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5, **config})
    reports: list[Message] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        reports.append(message)

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(TIMEOUT) == 0
    assert len(reports) == len(records)
    return reports


@pytest.fixture
def consumer(broker: ThreadedBroker) -> Iterator[Consumer]:
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": "tests",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    yield c
    c.close()


def consume(consumer: Consumer, count: int) -> list[Message]:
    out: list[Message] = []
    for _ in range(200):
        for message in consumer.consume(count - len(out), timeout=0.5):
            assert message.error() is None, message.error()
            out.append(message)
        if len(out) >= count:
            return out
    raise AssertionError(f"consumed {len(out)} of {count} messages")


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_produce_with_each_acks_setting(
    broker: ThreadedBroker, consumer: Consumer, acks: str
) -> None:
    records = [(b"k%d" % i, b"value-%d" % i) for i in range(50)]
    reports = produce(broker, "acks", records, acks=acks)
    if acks != "0":
        assert [m.offset() for m in reports] == list(range(50))
    consumer.assign([TopicPartition("acks", 0, OFFSET_BEGINNING)])
    got = consume(consumer, 50)
    assert [(m.key(), m.value()) for m in got] == records
    assert [m.offset() for m in got] == list(range(50))
    assert got[0].timestamp()[0] == TIMESTAMP_CREATE_TIME


@pytest.mark.parametrize("compression", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(
    broker: ThreadedBroker, consumer: Consumer, compression: str
) -> None:
    records = [(None, b"compressible " * 20 + b"%d" % i) for i in range(100)]
    produce(broker, "squeezed", records, **{"compression.type": compression})
    consumer.assign([TopicPartition("squeezed", 0, 0)])
    assert [m.value() for m in consume(consumer, 100)] == [v for _, v in records]


def test_assign_and_seek(broker: ThreadedBroker, consumer: Consumer) -> None:
    produce(broker, "seek", [(None, b"%d" % i) for i in range(20)])
    consumer.assign([TopicPartition("seek", 0, 15)])
    assert [m.value() for m in consume(consumer, 5)] == [b"%d" % i for i in range(15, 20)]
    consumer.seek(TopicPartition("seek", 0, 3))
    assert [m.offset() for m in consume(consumer, 4)] == [3, 4, 5, 6]


def test_keyed_records_stay_in_their_partition_in_order(
    broker: ThreadedBroker, consumer: Consumer
) -> None:
    create(broker, NewTopic("keyed", num_partitions=4, replication_factor=1))
    records = [(b"key-%d" % (i % 7), b"%d" % i) for i in range(140)]
    reports = produce(broker, "keyed", records)
    chosen = {(m.key(), m.value()): m.partition() for m in reports}
    assert len({m.partition() for m in reports}) > 1
    consumer.assign([TopicPartition("keyed", p, 0) for p in range(4)])
    got = consume(consumer, 140)
    for message in got:
        assert message.partition() == chosen[(message.key(), message.value())]
    for key in {k for k, _ in records}:
        values = [m.value() for m in got if m.key() == key]
        assert values == [v for k, v in records if k == key]


def test_admin_create_describe_delete_topics(broker: ThreadedBroker) -> None:
    client = admin(broker)
    futures = client.create_topics(
        [
            NewTopic(
                "orders", num_partitions=3, replication_factor=1, config={"retention.ms": "60000"}
            ),
            NewTopic("bad", num_partitions=1, replication_factor=3),
        ]
    )
    futures["orders"].result(TIMEOUT)
    with pytest.raises(KafkaException) as info:
        futures["bad"].result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    again = client.create_topics([NewTopic("orders", 1, 1)])["orders"]
    with pytest.raises(KafkaException) as info:
        again.result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    dry = client.create_topics([NewTopic("dry", 2, 1)], validate_only=True)["dry"]
    dry.result(TIMEOUT)

    metadata = client.list_topics(timeout=TIMEOUT)
    assert set(metadata.topics) == {"orders"}
    assert len(metadata.topics["orders"].partitions) == 3
    (node,) = metadata.brokers.values()
    assert f"{node.host}:{node.port}" == broker.bootstrap_servers

    client.delete_topics(["orders"], operation_timeout=10)["orders"].result(TIMEOUT)
    assert "orders" not in client.list_topics(timeout=TIMEOUT).topics
    missing = client.delete_topics(["orders"])["orders"]
    with pytest.raises(KafkaException) as info:
        missing.result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def topic_configs(client: AdminClient, topic: str) -> dict[str, ConfigEntry]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    result: dict[str, ConfigEntry] = client.describe_configs([resource])[resource].result(TIMEOUT)
    return result


def test_admin_describe_and_alter_configs(broker: ThreadedBroker) -> None:
    client = admin(broker)
    create(broker, NewTopic("conf", 1, 1, config={"cleanup.policy": "compact"}))
    configs = topic_configs(client, "conf")
    assert configs["cleanup.policy"].value == "compact"
    assert ConfigSource(configs["cleanup.policy"].source) is ConfigSource.DYNAMIC_TOPIC_CONFIG
    assert configs["retention.ms"].is_default

    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "conf",
        incremental_configs=[
            ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    client.incremental_alter_configs([resource])[resource].result(TIMEOUT)
    configs = topic_configs(client, "conf")
    assert configs["retention.ms"].value == "3600000"
    assert configs["cleanup.policy"].value == "compact,delete"

    legacy = ConfigResource(ConfigResource.Type.TOPIC, "conf", set_config={"segment.ms": "60000"})
    with pytest.warns(DeprecationWarning, match="alter_configs"):
        client.alter_configs([legacy])[legacy].result(TIMEOUT)
    configs = topic_configs(client, "conf")
    assert configs["segment.ms"].value == "60000"
    assert configs["retention.ms"].is_default  # AlterConfigs replaces every override

    bad = ConfigResource(ConfigResource.Type.TOPIC, "conf", set_config={"retention.ms": "never"})
    with (
        pytest.warns(DeprecationWarning, match="alter_configs"),
        pytest.raises(KafkaException) as info,
    ):
        client.alter_configs([bad])[bad].result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.INVALID_CONFIG

    broker_resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    broker_configs = client.describe_configs([broker_resource])[broker_resource].result(TIMEOUT)
    assert broker_configs["num.partitions"].value == "1"
    assert broker_configs["num.partitions"].is_read_only


def test_admin_create_partitions(broker: ThreadedBroker, consumer: Consumer) -> None:
    client = admin(broker)
    create(broker, NewTopic("grow", 2, 1))
    client.create_partitions([NewPartitions("grow", 6)])["grow"].result(TIMEOUT)
    assert len(client.list_topics("grow", timeout=TIMEOUT).topics["grow"].partitions) == 6
    with pytest.raises(KafkaException) as info:
        client.create_partitions([NewPartitions("grow", 3)])["grow"].result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce("grow", value=b"new", partition=5)
    assert producer.flush(TIMEOUT) == 0
    consumer.assign([TopicPartition("grow", 5, 0)])
    assert consume(consumer, 1)[0].value() == b"new"


def test_admin_delete_records(broker: ThreadedBroker, consumer: Consumer) -> None:
    client = admin(broker)
    produce(
        broker,
        "trim",
        [(None, b"%d" % i) for i in range(10)],
        **{"linger.ms": 0, "batch.num.messages": 1},
    )
    result = client.delete_records([TopicPartition("trim", 0, 6)])
    deleted = next(iter(result.values())).result(TIMEOUT)
    assert deleted.low_watermark == 6
    low, high = consumer.get_watermark_offsets(TopicPartition("trim", 0), timeout=TIMEOUT)
    assert (low, high) == (6, 10)
    consumer.assign([TopicPartition("trim", 0, OFFSET_BEGINNING)])
    assert [m.value() for m in consume(consumer, 4)] == [b"6", b"7", b"8", b"9"]


def test_admin_list_offsets(broker: ThreadedBroker) -> None:
    client = admin(broker)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 0})
    for i, timestamp in enumerate([1_000, 5_000, 3_000, 7_000]):
        producer.produce("times", value=b"%d" % i, timestamp=timestamp)
        producer.flush(TIMEOUT)
    tp = TopicPartition("times", 0)

    def offset_for(spec: OffsetSpec) -> tuple[int, int]:
        info = client.list_offsets({tp: spec})[tp].result(TIMEOUT)
        return info.offset, info.timestamp

    earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
    latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]
    max_timestamp = OffsetSpec.max_timestamp()  # type: ignore[no-untyped-call]
    assert offset_for(earliest)[0] == 0
    assert offset_for(latest)[0] == 4
    assert offset_for(max_timestamp) == (3, 7_000)
    assert offset_for(OffsetSpec.for_timestamp(2_000)) == (1, 5_000)
    assert offset_for(OffsetSpec.for_timestamp(6_000)) == (3, 7_000)
    assert offset_for(OffsetSpec.for_timestamp(8_000))[0] == -1


def test_consumer_offsets_for_times(broker: ThreadedBroker, consumer: Consumer) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 0})
    for i, timestamp in enumerate([10_000, 20_000, 30_000]):
        producer.produce("lookup", value=b"%d" % i, timestamp=timestamp)
        producer.flush(TIMEOUT)
    (found,) = consumer.offsets_for_times([TopicPartition("lookup", 0, 15_000)], timeout=TIMEOUT)
    assert found.offset == 1


def test_unknown_topic_without_auto_create(broker_factory: Any) -> None:
    strict = broker_factory(auto_create_topics=False)
    producer = Producer({"bootstrap.servers": strict.bootstrap_servers, "message.timeout.ms": 2000})
    errors: list[KafkaError | None] = []
    producer.produce("absent", value=b"x", on_delivery=lambda e, _m: errors.append(e))
    producer.flush(TIMEOUT)
    assert errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._MSG_TIMED_OUT)
