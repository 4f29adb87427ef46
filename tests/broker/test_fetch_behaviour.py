"""Fetch semantics: long polling, byte limits, errors, and response order on one connection."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker import EmbeddedBroker
from rivulet.protocol.batch import read_header
from rivulet.protocol.records import build_batch

from .kafka_wire import WireClient
from .test_wire_apis import create_topic, fetch_body, produce_body, topic_id, values_in

NO_ID = uuid.UUID(int=0)
# Long enough that a fetch which is not woken would outlast the test's own wait.
LONG_POLL_MS = 120_000
WAIT_S = 30


async def produce(client: WireClient, topic: str, value: bytes, partition: int = 0) -> int:
    response = await client.request(
        0, 9, produce_body(topic, build_batch([(None, value)]), partition)
    )
    result = response.responses[0].partition_responses[0]
    assert result.error_code is ErrorCode.none
    offset: int = result.base_offset
    return offset


async def test_long_poll_is_woken_by_an_append(async_broker: EmbeddedBroker) -> None:
    consumer = await WireClient.connect(async_broker.bootstrap_servers)
    producer = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(producer, "wake")
    correlation_id = await consumer.send(
        1, 12, fetch_body(12, "wake", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=1)
    )
    await produce(producer, "wake", b"hello")
    got, response = await asyncio.wait_for(consumer.receive(1, 12), WAIT_S)
    assert got == correlation_id
    assert values_in(response.responses[0].partitions[0].records) == [b"hello"]
    await consumer.close()
    await producer.close()


async def test_long_poll_waits_for_min_bytes(async_broker: EmbeddedBroker) -> None:
    consumer = await WireClient.connect(async_broker.bootstrap_servers)
    producer = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(producer, "min")
    one_batch = len(build_batch([(None, b"a")]))
    await consumer.send(
        1, 12, fetch_body(12, "min", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=one_batch + 1)
    )
    await produce(producer, "min", b"a")
    await produce(producer, "min", b"b")
    _, response = await asyncio.wait_for(consumer.receive(1, 12), WAIT_S)
    # Woken by the first append, the fetch found too few bytes and kept waiting.
    assert values_in(response.responses[0].partitions[0].records) == [b"a", b"b"]
    await consumer.close()
    await producer.close()


async def test_long_poll_times_out_with_what_there_is(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "timeout")
    await produce(client, "timeout", b"only")
    response = await client.request(
        1, 12, fetch_body(12, "timeout", NO_ID, 0, max_wait=200, min_bytes=1 << 20)
    )
    assert values_in(response.responses[0].partitions[0].records) == [b"only"]
    empty = await client.request(
        1, 12, fetch_body(12, "timeout", NO_ID, 1, max_wait=200, min_bytes=1)
    )
    assert empty.responses[0].partitions[0].records == b""
    assert empty.responses[0].partitions[0].high_watermark == 1
    await client.close()


async def test_responses_keep_request_order_behind_a_long_poll(
    async_broker: EmbeddedBroker,
) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    other = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(other, "order")
    fetch_id = await client.send(
        1, 12, fetch_body(12, "order", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=1)
    )
    versions_id = await client.send(18, 0, {})
    metadata_id = await client.send(3, 1, {"topics": None})
    # The quick requests are answered behind the fetch, which an append releases.
    await produce(other, "order", b"go")
    first, fetched = await asyncio.wait_for(client.receive(1, 12), WAIT_S)
    second, _ = await asyncio.wait_for(client.receive(18, 0), WAIT_S)
    third, _ = await asyncio.wait_for(client.receive(3, 1), WAIT_S)
    assert (first, second, third) == (fetch_id, versions_id, metadata_id)
    assert values_in(fetched.responses[0].partitions[0].records) == [b"go"]
    await client.close()
    await other.close()


async def test_quick_requests_run_while_a_fetch_waits(async_broker: EmbeddedBroker) -> None:
    """Pipelined produce requests behind a long poll on the same connection are
    processed, and they are what wakes it."""
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "self")
    fetch_id = await client.send(
        1, 12, fetch_body(12, "self", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=1)
    )
    produce_id = await client.send(0, 9, produce_body("self", build_batch([(None, b"me")])))
    got_fetch, fetched = await asyncio.wait_for(client.receive(1, 12), WAIT_S)
    got_produce, produced = await asyncio.wait_for(client.receive(0, 9), WAIT_S)
    assert (got_fetch, got_produce) == (fetch_id, produce_id)
    assert values_in(fetched.responses[0].partitions[0].records) == [b"me"]
    assert produced.responses[0].partition_responses[0].base_offset == 0
    await client.close()


async def test_first_batch_returned_even_when_over_limits(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "big", 2)
    for partition in (0, 1):
        for i in range(3):
            await produce(client, "big", b"p%d-%d" % (partition, i) + b"x" * 500, partition)

    def request(partition_max_bytes: int, max_bytes: int) -> dict[str, Any]:
        body = fetch_body(
            12, "big", NO_ID, 0, partition_max_bytes=partition_max_bytes, max_bytes=max_bytes
        )
        body["topics"][0]["partitions"].append(
            {"partition": 1, "fetch_offset": 0, "partition_max_bytes": partition_max_bytes}
        )
        return body

    tiny = await client.request(1, 12, request(partition_max_bytes=10, max_bytes=10))
    first, second = tiny.responses[0].partitions
    # Only the first batch of the first partition with data breaks the limits.
    assert len(values_in(first.records)) == 1
    assert second.records == b""
    negative = await client.request(1, 12, request(partition_max_bytes=-5, max_bytes=-5))
    assert len(values_in(negative.responses[0].partitions[0].records)) == 1
    per_partition = await client.request(1, 12, request(partition_max_bytes=10, max_bytes=1 << 20))
    first, second = per_partition.responses[0].partitions
    assert len(values_in(first.records)) == 1
    assert second.records == b""
    batch_size = read_header(first.records).size
    roomy = await client.request(
        1, 12, request(partition_max_bytes=2 * batch_size, max_bytes=3 * batch_size)
    )
    first, second = roomy.responses[0].partitions
    assert len(values_in(first.records)) == 2
    assert len(values_in(second.records)) == 1
    await client.close()


async def test_fetch_errors(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "errs")
    await produce(client, "errs", b"one")
    beyond = await client.request(1, 12, fetch_body(12, "errs", NO_ID, 5, max_wait=LONG_POLL_MS))
    partition = beyond.responses[0].partitions[0]
    assert partition.error_code is ErrorCode.offset_out_of_range
    assert partition.high_watermark == 1
    assert partition.log_start_offset == 0
    missing = await client.request(1, 12, fetch_body(12, "nope", NO_ID, 0, max_wait=LONG_POLL_MS))
    assert missing.responses[0].partitions[0].error_code is ErrorCode.unknown_topic_or_partition
    unknown_id = await client.request(
        1, 13, fetch_body(13, "", uuid.uuid4(), 0, max_wait=LONG_POLL_MS)
    )
    assert unknown_id.responses[0].partitions[0].error_code is ErrorCode.unknown_topic_id
    zero_id = await client.request(1, 13, fetch_body(13, "", NO_ID, 0, max_wait=LONG_POLL_MS))
    assert zero_id.responses[0].partitions[0].error_code is ErrorCode.unknown_topic_id
    session = fetch_body(12, "errs", NO_ID, 0)
    session.update(session_id=12345, session_epoch=3)
    no_session = await client.request(1, 12, session)
    assert no_session.error_code is ErrorCode.fetch_session_id_not_found
    await client.close()


async def test_deleting_a_topic_answers_its_waiting_fetches(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    admin = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(admin, "doomed")
    tid = await topic_id(admin, "doomed")
    await client.send(1, 13, fetch_body(13, "", tid, 0, max_wait=LONG_POLL_MS, min_bytes=1))
    deleted = await admin.request(20, 4, {"topic_names": ["doomed"], "timeout": 1000})
    assert deleted.responses[0].error_code is ErrorCode.none
    _, response = await asyncio.wait_for(client.receive(1, 13), WAIT_S)
    assert response.responses[0].partitions[0].error_code is ErrorCode.unknown_topic_id
    await client.close()
    await admin.close()


async def test_log_append_time_topic(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "stamped", configs={"message.timestamp.type": "LogAppendTime"})
    response = await client.request(
        0, 9, produce_body("stamped", build_batch([(None, b"v")], timestamp_ms=5))
    )
    appended = response.responses[0].partition_responses[0]
    append_time_ms = int(appended.log_append_time.timestamp() * 1000)
    assert append_time_ms > 1_600_000_000_000
    fetched = await client.request(1, 12, fetch_body(12, "stamped", NO_ID, 0))
    header = read_header(fetched.responses[0].partitions[0].records)
    assert header.log_append_time
    assert header.max_timestamp == append_time_ms
    await client.close()


async def test_shutdown_answers_waiting_fetches(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "bye")
    fetch_id = await client.send(
        1, 12, fetch_body(12, "bye", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=1)
    )
    partition = async_broker.broker.topics.get("bye").partitions[0]  # type: ignore[union-attr]
    while not partition.waiting:  # noqa: ASYNC110 - polls broker state, no event exists
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(async_broker.stop())
    got, response = await asyncio.wait_for(client.receive(1, 12), WAIT_S)
    assert got == fetch_id
    assert response.responses[0].partitions[0].records == b""
    await asyncio.wait_for(stopping, WAIT_S)
    await client.close()


async def test_data_read_behind_a_waiting_fetch_arrives_intact(
    async_broker: EmbeddedBroker,
) -> None:
    """A fetch answered while an earlier one still waits has its file data copied
    at once, and is sent, whole and in order, once the earlier one is answered."""
    client = await WireClient.connect(async_broker.bootstrap_servers)
    other = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(other, "ready")
    await create_topic(other, "idle")
    values = [b"r%d" % i + b"." * 3000 for i in range(20)]
    for value in values:
        await produce(other, "ready", value)
    waiting = await client.send(
        1, 12, fetch_body(12, "idle", NO_ID, 0, max_wait=LONG_POLL_MS, min_bytes=1)
    )
    ready = await client.send(1, 12, fetch_body(12, "ready", NO_ID, 0))
    partition = async_broker.broker.topics.get("idle").partitions[0]  # type: ignore[union-attr]
    while not partition.waiting:  # noqa: ASYNC110 - polls broker state, no event exists
        await asyncio.sleep(0.01)
    await produce(other, "idle", b"now")
    first, idle = await asyncio.wait_for(client.receive(1, 12), WAIT_S)
    second, data = await asyncio.wait_for(client.receive(1, 12), WAIT_S)
    assert (first, second) == (waiting, ready)
    assert values_in(idle.responses[0].partitions[0].records) == [b"now"]
    assert values_in(data.responses[0].partitions[0].records) == values
    await client.close()
    await other.close()
