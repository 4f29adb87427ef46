"""confluent-kafka (librdkafka) producing and consuming through the broker."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from tests.interop._support import Record, create_topic, produce_values, read_topic, unique_topic

pytestmark = pytest.mark.interop

BASE_TIMESTAMP = 1_700_000_000_000
CREATE_TIME, LOG_APPEND_TIME = 1, 2


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a delivery report said about one record."""

    value: bytes | None
    partition: int
    offset: int | None
    error: KafkaError | None


def produce(
    bootstrap: str, topic: str, records: list[Record], config: dict[str, object]
) -> list[Delivery]:
    """Produce ``records`` (each to its own partition, or -1 for the partitioner's
    choice) and return the delivery reports in the order they arrived."""
    deliveries: list[Delivery] = []

    def report(error: KafkaError | None, message: Message) -> None:
        partition = message.partition()
        assert partition is not None
        deliveries.append(Delivery(message.value(), partition, message.offset(), error))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **config})
    for record in records:
        producer.produce(
            topic,
            key=record.key,
            value=record.value,
            partition=record.partition,
            headers=list(record.headers),
            timestamp=max(record.timestamp, 0),
            on_delivery=report,
        )
        producer.poll(0)
    assert producer.flush(15) == 0, "some records were never delivered"
    assert all(d.error is None for d in deliveries), [d.error for d in deliveries if d.error]
    return deliveries


def sample_records(count: int, partitions: int) -> list[Record]:
    """Records spread over partitions in turn, with every shape a record can take:
    null key, null value (a tombstone), repeated and empty headers, compressible data."""
    records = []
    for i in range(count):
        key = None if i == 3 else f"key-{i}".encode()
        value = None if i == 4 else f"value-{i}:".encode() + b"abc" * (i % 40)
        headers = (("seq", str(i).encode()), ("dup", b"first"), ("dup", b"second"), ("empty", b""))
        records.append(
            Record(
                partition=i % partitions,
                offset=-1,
                key=key,
                value=value,
                headers=headers if i % 5 else (),
                timestamp=BASE_TIMESTAMP + i,
            )
        )
    return records


def expected_log(records: list[Record], partitions: int) -> list[Record]:
    """What a reader must find: each partition's records in produce order, offsets from 0."""
    result = []
    for partition in range(partitions):
        mine = [r for r in records if r.partition == partition]
        for offset, r in enumerate(mine):
            result.append(
                Record(partition, offset, r.key, r.value, r.headers, r.timestamp, CREATE_TIME)
            )
    return result


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_records_round_trip_exactly(bootstrap: str, acks: str, compression: str) -> None:
    topic = unique_topic(f"ck-acks{acks}-{compression}")
    create_topic(bootstrap, topic, partitions=2)
    records = sample_records(60, partitions=2)

    deliveries = produce(bootstrap, topic, records, {"acks": acks, "compression.type": compression})
    log = read_topic(bootstrap, topic, partitions=2)

    assert log == expected_log(records, partitions=2)
    if acks != "0":  # acks=0 gets no offsets back
        where = {(r.partition, r.offset) for r in log}
        assert {(d.partition, d.offset) for d in deliveries} == where


@pytest.mark.parametrize("partitioner", ["murmur2_random", "consistent_random"])
def test_keyed_records_land_where_the_partitioner_chose_and_keep_key_order(
    bootstrap: str, partitioner: str
) -> None:
    topic = unique_topic(f"ck-{partitioner.replace('_', '-')}")
    create_topic(bootstrap, topic, partitions=4)
    keys = [f"order-{k}".encode() for k in range(24)]
    records = [
        Record(partition=-1, offset=-1, key=key, value=f"{key.decode()}#{n}".encode())
        for n in range(5)
        for key in keys
    ]

    deliveries = produce(bootstrap, topic, records, {"acks": "all", "partitioner": partitioner})
    log = read_topic(bootstrap, topic, partitions=4)

    reported = {(d.value, d.partition, d.offset) for d in deliveries}
    assert {(r.value, r.partition, r.offset) for r in log} == reported
    partitions_of_key: dict[bytes, set[int]] = {}
    sequence_of_key: dict[bytes, list[int]] = {}
    for record in log:  # grouped by partition, in offset order
        assert record.key is not None
        assert record.value is not None
        partitions_of_key.setdefault(record.key, set()).add(record.partition)
        sequence_of_key.setdefault(record.key, []).append(int(record.value.split(b"#")[1]))
    assert all(len(p) == 1 for p in partitions_of_key.values()), partitions_of_key
    assert all(seq == list(range(5)) for seq in sequence_of_key.values()), sequence_of_key
    assert len({r.partition for r in log}) > 1, "the keys should spread over partitions"


def test_log_append_time_topic_stamps_records_with_the_broker_clock(bootstrap: str) -> None:
    topic = unique_topic("ck-append-time")
    create_topic(bootstrap, topic, configs={"message.timestamp.type": "LogAppendTime"})
    records = [Record(0, -1, b"k", b"v%d" % i, timestamp=BASE_TIMESTAMP) for i in range(3)]

    before = time.time_ns() // 1_000_000
    produce(bootstrap, topic, records, {"acks": "all"})
    after = time.time_ns() // 1_000_000
    log = read_topic(bootstrap, topic, partitions=1)

    assert [r.value for r in log] == [b"v0", b"v1", b"v2"]
    for record in log:
        assert record.timestamp_type == LOG_APPEND_TIME
        assert before <= record.timestamp <= after


def test_offsets_for_times_and_watermarks(bootstrap: str) -> None:
    topic = unique_topic("ck-times")
    create_topic(bootstrap, topic)
    records = [
        Record(0, -1, None, b"v%d" % i, timestamp=BASE_TIMESTAMP + 1000 * i) for i in range(6)
    ]
    produce(bootstrap, topic, records, {"acks": "all", "linger.ms": 0})

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        # One partition per call: librdkafka merges repeats of a partition in one request.
        found = [
            consumer.offsets_for_times([TopicPartition(topic, 0, BASE_TIMESTAMP + ms)], timeout=10)
            for ms in (2500, 0, 10_000)  # between records 2 and 3, record 0, after the last
        ]
    finally:
        consumer.close()
    assert (low, high) == (0, 6)
    assert [tps[0].offset for tps in found] == [3, 0, -1]


def consume_in_group(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    """Join ``group``, read ``count`` records, commit them, leave."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    values: list[bytes] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 20
        while len(values) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count - len(values), timeout=0.2):
                assert message.error() is None, message.error()
                values.append(message.value() or b"")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


def test_group_member_commits_and_its_successor_resumes_after(bootstrap: str) -> None:
    topic = unique_topic("ck-group")
    create_topic(bootstrap, topic, partitions=2)
    first, second = [b"a%d" % i for i in range(10)], [b"b%d" % i for i in range(6)]

    produce_values(bootstrap, topic, first)
    assert sorted(consume_in_group(bootstrap, topic, topic, len(first))) == sorted(first)
    produce_values(bootstrap, topic, second)

    assert sorted(consume_in_group(bootstrap, topic, topic, len(second))) == sorted(second)
