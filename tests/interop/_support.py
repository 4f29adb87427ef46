"""Helpers the interop tests share: topic names, topic creation, reading a topic back.

Reading back always goes through confluent-kafka (librdkafka) with
``check.crcs`` on, whichever client wrote the records: a batch whose CRC32C
does not match is reported as an error, so "every fetched batch is whole" is
checked on every read. Each read stops at the partitions' high watermarks, so
the records returned are exactly what the log holds, neither more nor less.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # where the type stubs declare it

from rivulet.broker.handlers import HANDLERS

__all__ = [
    "INIT_PRODUCER_ID",
    "Record",
    "broker_serves",
    "create_topic",
    "produce_values",
    "read_topic",
    "unique_topic",
]

INIT_PRODUCER_ID = 22
"""API key clients need for idempotent producers (kafka-python 3 turns that on by default)."""

_READ_TIMEOUT_S = 20.0


def broker_serves(api_key: int) -> bool:
    """Whether the broker has a handler for ``api_key`` (some APIs land in later work)."""
    return any(handler.api_key == api_key for handler in HANDLERS)


@dataclass(frozen=True, slots=True)
class Record:
    """One record as a consumer sees it, comparable across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = -1
    timestamp_type: int = 1
    """1 is CreateTime, 2 LogAppendTime (librdkafka's TIMESTAMP_* numbering)."""


def unique_topic(prefix: str) -> str:
    """A topic name no other test uses, so tests can share one broker."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int = 1,
    configs: Mapping[str, str] | None = None,
) -> None:
    """Create a topic with confluent-kafka's AdminClient; fail the test on any error."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, config=dict(configs or {}))],
        operation_timeout=10,
        request_timeout=10,
    )
    futures[name].result(timeout=15)


def produce_values(bootstrap: str, topic: str, values: list[bytes]) -> None:
    """Write ``values`` (keyless, acks=all) with confluent-kafka, for tests about reading."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(15) == 0, "some records were never delivered"


def _headers(raw: object) -> tuple[tuple[str, bytes], ...]:
    """librdkafka's headers as a tuple; a null header value reads as ``b""``."""
    assert raw is None or isinstance(raw, list), raw
    result = []
    for name, value in raw or ():
        assert value is None or isinstance(value, bytes), value
        result.append((name, value or b""))
    return tuple(result)


def read_topic(
    bootstrap: str, topic: str, partitions: int, config: Mapping[str, Any] | None = None
) -> list[Record]:
    """Every record of ``topic`` from each partition's start to its high watermark.

    Records come back grouped by partition, in offset order. Any consumer
    error (a bad CRC included) fails the read.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # confluent-kafka insists on a group id; nothing is committed with it.
            "group.id": unique_topic("reader"),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "check.crcs": True,
            "fetch.wait.max.ms": 50,
            **(config or {}),
        }
    )
    try:
        high: dict[int, int] = {}
        for p in range(partitions):
            watermarks = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assert watermarks is not None, f"no watermarks for {topic}[{p}]"
            high[p] = watermarks[1]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        by_partition: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        next_offset = dict.fromkeys(range(partitions), 0)
        deadline = time.monotonic() + _READ_TIMEOUT_S
        while any(next_offset[p] < high[p] for p in range(partitions)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"reading {topic} stalled at {next_offset}, high watermarks {high}"
                )
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                error = message.error()
                if error is not None:
                    raise KafkaException(error)
                partition, offset = message.partition(), message.offset()
                assert partition is not None
                assert offset is not None
                if offset >= high[partition]:
                    continue  # written after the read began: not part of this snapshot
                timestamp_type, timestamp = message.timestamp()
                by_partition[partition].append(
                    Record(
                        partition=partition,
                        offset=offset,
                        key=message.key(),
                        value=message.value(),
                        headers=_headers(message.headers()),
                        timestamp=timestamp,
                        timestamp_type=timestamp_type,
                    )
                )
                next_offset[partition] = offset + 1
    finally:
        consumer.close()
    return [record for p in range(partitions) for record in by_partition[p]]
