"""kafka-python (pure-Python, synchronous client) producing, consuming and administering."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from tests.interop._support import (
    INIT_PRODUCER_ID,
    Record,
    broker_serves,
    produce_values,
    read_topic,
    unique_topic,
)

# kafka-python 3 loads its protocol schemas with importlib.resources.open_text,
# deprecated in Python 3.11; the warning names importlib, not kafka, so the
# project's "ignore::DeprecationWarning:kafka.*" filter does not catch it.
OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings(OPEN_TEXT_DEPRECATED)]

BASE_TIMESTAMP = 1_700_000_000_000

# kafka-python needs optional packages the project does not install for snappy,
# lz4 and zstd (python-snappy, lz4, zstandard); confluent-kafka and aiokafka
# cover those codecs. gzip is built in.
CODECS = [None, "gzip"]


def produce(bootstrap: str, topic: str, count: int, **config: Any) -> list[tuple[int, int]]:
    """Send ``count`` records to partitions 0 and 1 in turn; return (partition, offset) of each."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        futures = [
            producer.send(
                topic,
                key=f"key-{i}".encode(),
                value=f"value-{i}".encode() * (1 + i % 5),
                partition=i % 2,
                headers=[("seq", str(i).encode())],
                timestamp_ms=BASE_TIMESTAMP + i,
            )
            for i in range(count)
        ]
        producer.flush(timeout=15)
        metadata = [future.get(timeout=15) for future in futures]
    finally:
        producer.close(timeout=5)
    return [(m.partition, m.offset) for m in metadata]


def expected_log(count: int) -> list[Record]:
    return [
        Record(
            partition=p,
            offset=n,
            key=f"key-{i}".encode(),
            value=f"value-{i}".encode() * (1 + i % 5),
            headers=(("seq", str(i).encode()),),
            timestamp=BASE_TIMESTAMP + i,
        )
        for p in range(2)
        for n, i in enumerate(range(p, count, 2))
    ]


def consume_from_beginning(bootstrap: str, topic: str, count: int) -> list[Record]:
    """Read ``count`` records from partitions 0 and 1 with assign() and seek_to_beginning()."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        consumer_timeout_ms=5000,
    )
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        consumer.seek_to_beginning()
        records = []
        for message in consumer:
            records.append(
                Record(
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                    headers=tuple(message.headers),
                    timestamp=message.timestamp,
                )
            )
            if len(records) == count:
                break
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


@pytest.fixture
def topic(bootstrap: str) -> str:
    name = unique_topic("kp")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()
    return name


@pytest.mark.parametrize("compression", CODECS)
@pytest.mark.parametrize("acks", [0, 1, "all"])
def test_produce_and_consume_round_trip(
    bootstrap: str, topic: str, acks: int | str, compression: str | None
) -> None:
    # Idempotence (kafka-python 3's default) needs InitProducerId; see the test below.
    sent = produce(
        bootstrap, topic, 30, acks=acks, compression_type=compression, enable_idempotence=False
    )

    expected = expected_log(30)
    assert consume_from_beginning(bootstrap, topic, 30) == expected
    assert read_topic(bootstrap, topic, partitions=2) == expected
    if acks != 0:  # acks=0 gets offset -1 back
        assert sorted(sent) == [(r.partition, r.offset) for r in expected]


@pytest.mark.skipif(
    not broker_serves(INIT_PRODUCER_ID),
    reason="kafka-python 3 producers are idempotent by default; the broker lacks InitProducerId",
)
def test_producer_with_default_settings(bootstrap: str, topic: str) -> None:
    sent = produce(bootstrap, topic, 10)

    assert sorted(sent) == [(r.partition, r.offset) for r in expected_log(10)]
    assert read_topic(bootstrap, topic, partitions=2) == expected_log(10)


def test_keyed_records_land_where_the_partitioner_chose(bootstrap: str, topic: str) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    reported = {}
    try:
        for n in range(3):
            for k in range(10):
                value = f"{k}#{n}".encode()
                metadata = producer.send(topic, key=f"sku-{k}".encode(), value=value).get(15)
                reported[value] = (metadata.partition, metadata.offset)
    finally:
        producer.close(timeout=5)

    log = read_topic(bootstrap, topic, partitions=2)

    assert {r.value: (r.partition, r.offset) for r in log} == reported
    for k in range(10):
        of_key = [r for r in log if r.key == f"sku-{k}".encode()]
        assert [r.value for r in of_key] == [f"{k}#{n}".encode() for n in range(3)]
    assert len({r.partition for r in log}) == 2


def test_admin_creates_describes_configs_and_deletes_topics(bootstrap: str) -> None:
    name = unique_topic("kp-admin")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(
                    name,
                    num_partitions=3,
                    replication_factor=1,
                    topic_configs={"retention.ms": "3600000", "cleanup.policy": "compact"},
                )
            ]
        )
        assert name in admin.list_topics()
        [description] = admin.describe_topics([name])
        assert len(description["partitions"]) == 3

        resource = ConfigResource(ConfigResourceType.TOPIC, name)
        modified = admin.describe_configs([resource])["topic"][name]
        everything = admin.describe_configs([resource], config_filter="all")["topic"][name]

        assert {k: v["value"] for k, v in modified.items()} == {
            "retention.ms": "3600000",
            "cleanup.policy": "compact",
        }
        assert everything["max.message.bytes"]["config_source"] == "DEFAULT_CONFIG"
        assert everything["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"

        admin.delete_topics([name])
        assert name not in admin.list_topics()
    finally:
        admin.close()


def consume_in_group(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    """Join ``group``, read ``count`` records, commit them, leave."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    values: list[bytes] = []
    try:
        for _ in range(100):
            if len(values) >= count:
                break
            batches = consumer.poll(timeout_ms=200, max_records=count - len(values))
            values.extend(m.value for messages in batches.values() for m in messages)
        consumer.commit()
    finally:
        consumer.close()
    return values


def test_group_member_commits_and_its_successor_resumes_after(bootstrap: str, topic: str) -> None:
    first, second = [b"a%d" % i for i in range(10)], [b"b%d" % i for i in range(6)]

    produce_values(bootstrap, topic, first)
    assert sorted(consume_in_group(bootstrap, topic, topic, len(first))) == sorted(first)
    produce_values(bootstrap, topic, second)

    assert sorted(consume_in_group(bootstrap, topic, topic, len(second))) == sorted(second)
