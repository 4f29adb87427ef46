"""Bad input costs one connection or earns an error code; the broker keeps serving."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker import EmbeddedBroker
from rivulet.protocol.messages import encode_request
from rivulet.protocol.records import build_batch
from rivulet.storage import LogConfig

from .kafka_wire import WireClient
from .test_wire_apis import create_topic, produce_body

MAX_REQUEST = 64 * 1024


@pytest.fixture
async def strict_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(
        tmp_path / "broker",
        socket_request_max_bytes=MAX_REQUEST,
        auto_create_topics=False,
        log=LogConfig(max_message_bytes=2048),
    ) as embedded:
        yield embedded


async def assert_serving(embedded: EmbeddedBroker) -> None:
    """A fresh client still gets answers."""
    client = await WireClient.connect(embedded.bootstrap_servers)
    try:
        response = await client.request(3, 1, {"topics": None})
        assert response.brokers[0].port == embedded.broker.port
    finally:
        await client.close()


def raw_frame(api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    payload = struct.pack(">hhih", api_key, version, correlation_id, -1) + body
    return struct.pack(">i", len(payload)) + payload


BAD_FRAMES = {
    "malformed body": raw_frame(3, 1, 1, b"\x00\x00\x00\x05\x00"),
    "unknown api key": raw_frame(9999, 0, 1, b""),
    "unsupported version": raw_frame(0, 2, 1, b""),
    "oversized frame": struct.pack(">i", MAX_REQUEST + 1) + b"\x00" * 100,
    "negative size": struct.pack(">i", -5),
    "header too short": struct.pack(">i", 3) + b"\x00\x03\x00",
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frame_closes_only_that_connection(
    strict_broker: EmbeddedBroker, frame: bytes
) -> None:
    bystander = await WireClient.connect(strict_broker.bootstrap_servers)
    offender = await WireClient.connect(strict_broker.bootstrap_servers)
    await offender.send_raw(frame)
    assert await offender.closed_by_peer()
    await offender.close()
    # The other connection, and new ones, are unaffected.
    assert (await bystander.request(3, 1, {"topics": None})).brokers
    await bystander.close()
    await assert_serving(strict_broker)


async def test_trailing_bytes_are_ignored(strict_broker: EmbeddedBroker) -> None:
    """Kafka ignores bytes after a request body, and librdkafka relies on it."""
    client = await WireClient.connect(strict_broker.bootstrap_servers)
    payload = encode_request(3, 1, 1, None, {"topics": None})[4:] + b"junk"
    await client.send_raw(struct.pack(">i", len(payload)) + payload)
    got, response = await client.receive(3, 1)
    assert got == 1
    assert response.brokers
    await client.close()


async def test_responses_due_before_a_bad_frame_are_still_sent(
    strict_broker: EmbeddedBroker,
) -> None:
    client = await WireClient.connect(strict_broker.bootstrap_servers)
    first = await client.send(3, 1, {"topics": None})
    await client.send_raw(raw_frame(9999, 0, 99, b""))
    got, response = await client.receive(3, 1)
    assert got == first
    assert response.brokers
    assert await client.closed_by_peer()
    await client.close()


async def test_byte_at_a_time_request(strict_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(strict_broker.bootstrap_servers)
    frame = encode_request(
        3, 12, 7, "slow", {"topics": None, "include_topic_authorized_operations": False}
    )
    for i in range(len(frame)):
        await client.send_raw(frame[i : i + 1])
    got, response = await client.receive(3, 12)
    assert got == 7
    assert response.brokers
    await client.close()


def corrupt(batch: bytes) -> bytes:
    data = bytearray(batch)
    data[-1] ^= 0xFF
    return bytes(data)


def old_magic(batch: bytes) -> bytes:
    data = bytearray(batch)
    data[16] = 1
    return bytes(data)


async def test_produce_errors(strict_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(strict_broker.bootstrap_servers)
    await create_topic(client, "t", 2)
    good = build_batch([(b"k", b"v")])
    cases = [
        (produce_body("t", corrupt(good)), ErrorCode.corrupt_message),
        (produce_body("t", old_magic(good)), ErrorCode.corrupt_message),
        (produce_body("t", good[:-3]), ErrorCode.corrupt_message),
        (produce_body("t", b""), ErrorCode.corrupt_message),
        (produce_body("t", build_batch([(None, b"x" * 3000)])), ErrorCode.message_too_large),
        (produce_body("t", good, partition=7), ErrorCode.unknown_topic_or_partition),
        (produce_body("missing", good), ErrorCode.unknown_topic_or_partition),
        (produce_body("bad name!", good), ErrorCode.invalid_topic_exception),
        (produce_body("t", good, acks=5), ErrorCode.invalid_required_acks),
    ]
    for body, expected in cases:
        response = await client.request(0, 9, body)
        partition = response.responses[0].partition_responses[0]
        assert partition.error_code is expected, body
        assert partition.base_offset == -1
        assert partition.error_message
    # Nothing bad was stored; good data still goes in at offset 0.
    ok = await client.request(0, 9, produce_body("t", good))
    assert ok.responses[0].partition_responses[0].base_offset == 0
    await client.close()


async def test_clients_cannot_write_internal_topics(async_broker: EmbeddedBroker) -> None:
    async_broker.broker.topics.create("__consumer_offsets", configs={"cleanup.policy": "compact"})
    client = await WireClient.connect(async_broker.bootstrap_servers)
    response = await client.request(
        0, 9, produce_body("__consumer_offsets", build_batch([(b"k", b"v")]))
    )
    assert (
        response.responses[0].partition_responses[0].error_code is ErrorCode.invalid_topic_exception
    )
    meta = await client.request(3, 1, {"topics": None})
    assert meta.topics[0].is_internal
    deleted = await client.request(20, 4, {"topic_names": ["__consumer_offsets"], "timeout": 100})
    assert deleted.responses[0].error_code is ErrorCode.invalid_topic_exception
    await client.close()


async def test_acks_zero_gets_no_response(async_broker: EmbeddedBroker) -> None:
    client = await WireClient.connect(async_broker.bootstrap_servers)
    await create_topic(client, "quiet")
    for _ in range(3):
        await client.send(0, 9, produce_body("quiet", build_batch([(None, b"v")]), acks=0))
    # The next response on the wire is the ListOffsets one: no Produce answers came.
    response = await client.request(
        2,
        5,
        {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [{"name": "quiet", "partitions": [{"partition_index": 0, "timestamp": -1}]}],
        },
    )
    assert response.topics[0].partitions[0].offset == 3
    await client.close()
