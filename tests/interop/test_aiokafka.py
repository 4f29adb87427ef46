"""aiokafka (pure-Python asyncio client) producing, consuming and administering topics."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from tests.interop._support import Record, create_topic, produce_values, read_topic, unique_topic

pytestmark = pytest.mark.interop

BASE_TIMESTAMP = 1_700_000_000_000


async def consume_from_beginning(
    bootstrap: str, topic: str, partitions: int, count: int
) -> list[Record]:
    """Read ``count`` records with assign() and seek_to_beginning() (no consumer group)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    records: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        for _ in range(100):
            if len(records) >= count:
                break
            batches = await consumer.getmany(timeout_ms=200)
            for messages in batches.values():
                records.extend(
                    Record(
                        partition=m.partition,
                        offset=m.offset,
                        key=m.key,
                        value=m.value,
                        headers=tuple(m.headers),
                        timestamp=m.timestamp,
                    )
                    for m in messages
                )
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.partition, r.offset))


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("acks", [0, 1, "all"])
async def test_produce_and_consume_round_trip(
    bootstrap: str, acks: int | str, compression: str | None
) -> None:
    topic = unique_topic(f"aio-acks{acks}-{compression}")
    create_topic(bootstrap, topic, partitions=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=acks, compression_type=compression, linger_ms=5
    )
    await producer.start()
    sent = []
    try:
        futures = [
            await producer.send(
                topic,
                key=f"key-{i}".encode(),
                value=f"value-{i}".encode() * (1 + i % 7),
                partition=i % 2,
                headers=[("seq", str(i).encode()), ("tag", b"")],
                timestamp_ms=BASE_TIMESTAMP + i,
            )
            for i in range(40)
        ]
        for future in futures:
            metadata = await future
            if acks != 0:  # acks=0 gets no metadata back
                sent.append((metadata.partition, metadata.offset))
    finally:
        await producer.stop()

    got = await consume_from_beginning(bootstrap, topic, partitions=2, count=40)

    expected = [
        Record(
            partition=p,
            offset=n,
            key=f"key-{i}".encode(),
            value=f"value-{i}".encode() * (1 + i % 7),
            headers=(("seq", str(i).encode()), ("tag", b"")),
            timestamp=BASE_TIMESTAMP + i,
        )
        for p in range(2)
        for n, i in enumerate(range(p, 40, 2))
    ]
    assert got == expected
    assert read_topic(bootstrap, topic, partitions=2) == expected  # and librdkafka agrees
    if acks != 0:
        assert sorted(sent) == [(r.partition, r.offset) for r in expected]


async def test_keyed_records_land_where_the_partitioner_chose(bootstrap: str) -> None:
    topic = unique_topic("aio-keyed")
    create_topic(bootstrap, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    reported = {}
    try:
        for n in range(3):
            for k in range(10):
                value = f"{k}#{n}".encode()
                metadata = await producer.send_and_wait(topic, key=f"sku-{k}".encode(), value=value)
                reported[value] = (metadata.partition, metadata.offset)
    finally:
        await producer.stop()

    log = read_topic(bootstrap, topic, partitions=3)

    assert {r.value: (r.partition, r.offset) for r in log} == reported
    for k in range(10):
        of_key = [r for r in log if r.key == f"sku-{k}".encode()]
        assert len({r.partition for r in of_key}) == 1
        assert [r.value for r in of_key] == [f"{k}#{n}".encode() for n in range(3)]


async def test_admin_creates_lists_and_deletes_topics(bootstrap: str) -> None:
    topic = unique_topic("aio-admin")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        assert topic in await admin.list_topics()
        described = await admin.describe_topics([topic])
        assert [len(t["partitions"]) for t in described] == [3]
        response = await admin.create_topics([NewTopic(topic, 1, 1)])
        assert [e[1] for e in response.topic_errors] == [TopicAlreadyExistsError.errno]

        await admin.delete_topics([topic])
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def consume_in_group(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    """Join ``group``, read ``count`` records, commit them, leave."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        for _ in range(100):
            if len(values) >= count:
                break
            batches = await consumer.getmany(timeout_ms=200, max_records=count - len(values))
            values.extend(m.value for messages in batches.values() for m in messages)
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def test_group_member_commits_and_its_successor_resumes_after(bootstrap: str) -> None:
    topic = unique_topic("aio-group")
    create_topic(bootstrap, topic, partitions=2)
    first, second = [b"a%d" % i for i in range(10)], [b"b%d" % i for i in range(6)]

    produce_values(bootstrap, topic, first)
    assert sorted(await consume_in_group(bootstrap, topic, topic, len(first))) == sorted(first)
    produce_values(bootstrap, topic, second)

    assert sorted(await consume_in_group(bootstrap, topic, topic, len(second))) == sorted(second)
