"""Dead letters: reading them back, describing them, replaying them.

Replaying republishes a dead letter to its original topic with its key, payload and
CloudEvents headers, addressed to the group that failed it
(``kafka_dlt-original-consumer-group``: other groups of that topic skip it) and with
its retry bookkeeping and exception headers removed, so it gets a fresh set of
attempts. Its event id is unchanged: an idempotent handler that had in fact handled
it skips it. Each replay carries a batch id (``rivulet_replay``), and the last
replayed record of each key is marked ``rivulet_replay-last``, which releases a key
parked by ``park_failed_keys`` once that record succeeds.

Dead-letter topics are append-only: replaying does not remove anything, and replaying
the same records twice republishes them twice (idempotent handlers drop the second).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import confluent_kafka

from rivulet.framework._consumer import to_record
from rivulet.framework._processor import REPLAY, REPLAY_LAST
from rivulet.framework._retry import (
    ATTEMPTS,
    BACKOFF_TIMESTAMP,
    DLT_REASON,
    EXCEPTION_CAUSE_FQCN,
    EXCEPTION_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    ORIGINAL_CONSUMER_GROUP,
    ORIGINAL_OFFSET,
    ORIGINAL_PARTITION,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_TOPIC,
    attempt_of,
    decode_int,
)
from rivulet.framework._wire import EVENT_ID, EVENT_TYPE, ConsumedRecord, OutgoingRecord

__all__ = ["DeadLetter", "describe", "new_batch_id", "read_topic", "replay_records", "select"]

# Headers a replay drops: the failure's account and the previous replay's marks.
_DROPPED: Final = frozenset(
    {
        EXCEPTION_FQCN,
        EXCEPTION_CAUSE_FQCN,
        EXCEPTION_MESSAGE,
        EXCEPTION_STACKTRACE,
        ATTEMPTS,
        BACKOFF_TIMESTAMP,
        DLT_REASON,
        REPLAY,
        REPLAY_LAST,
        "retry_topic-original-timestamp",
    }
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What a dead-letter record says about its failure."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    event_id: str | None
    event_type: str | None
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    original_timestamp_ms: int | None
    group: str | None
    reason: str | None
    exception: str | None
    message: str | None
    stacktrace: str | None
    attempts: int
    value: bytes | None


def _text(record: ConsumedRecord, name: str) -> str | None:
    raw = record.header(name)
    return None if raw is None else raw.decode("utf-8", "replace")


def describe(record: ConsumedRecord) -> DeadLetter:
    """The failure a dead-letter record describes, from its Spring-named headers."""
    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        timestamp_ms=record.timestamp_ms,
        key=record.key,
        event_id=_text(record, EVENT_ID),
        event_type=_text(record, EVENT_TYPE),
        original_topic=_text(record, ORIGINAL_TOPIC),
        original_partition=decode_int(record.header(ORIGINAL_PARTITION)),
        original_offset=decode_int(record.header(ORIGINAL_OFFSET)),
        original_timestamp_ms=decode_int(record.header(ORIGINAL_TIMESTAMP)),
        group=_text(record, ORIGINAL_CONSUMER_GROUP),
        reason=_text(record, DLT_REASON),
        exception=_text(record, EXCEPTION_FQCN),
        message=_text(record, EXCEPTION_MESSAGE),
        stacktrace=_text(record, EXCEPTION_STACKTRACE),
        attempts=attempt_of(record),
        value=record.value,
    )


def new_batch_id() -> str:
    """A fresh replay batch id."""
    return uuid.uuid4().hex[:16]


def replay_records(records: Sequence[ConsumedRecord], batch: str) -> list[OutgoingRecord]:
    """The records to publish to replay ``records`` (in their order) as batch ``batch``.

    Records without ``kafka_dlt-original-topic`` are not dead letters of a Rivulet or
    Spring consumer and raise ``ValueError``.
    """
    last_of_key = {record.key: i for i, record in enumerate(records)}
    out = []
    for i, record in enumerate(records):
        topic = _text(record, ORIGINAL_TOPIC)
        if topic is None:
            raise ValueError(
                f"{record.topic}[{record.partition}]@{record.offset} has no "
                f"{ORIGINAL_TOPIC} header: not a dead letter this tool can replay"
            )
        headers = [(n, v) for n, v in record.headers if n not in _DROPPED and v is not None]
        headers.append((REPLAY, batch.encode()))
        if last_of_key[record.key] == i:
            headers.append((REPLAY_LAST, b"1"))
        out.append(OutgoingRecord(topic, record.key, record.value, headers))
    return out


def read_topic(
    config: dict[str, object], topic: str, *, timeout_s: float = 10.0
) -> list[ConsumedRecord]:
    """Every record of ``topic`` now (all partitions, beginning to high watermark)."""
    consumer = confluent_kafka.Consumer(
        {**config, "group.id": "rivulet-dlq-reader", "enable.auto.commit": False}
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            raise LookupError(f"topic {topic} does not exist")
        ends: dict[int, int] = {}
        starts: list[confluent_kafka.TopicPartition] = []
        for partition in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, partition), timeout=timeout_s
            )
            if high > low:
                ends[partition] = high
                starts.append(confluent_kafka.TopicPartition(topic, partition, low))
        if not starts:
            return []
        consumer.assign(starts)
        records: list[ConsumedRecord] = []
        remaining = dict(ends)
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.2):
                if message.error() is not None:
                    continue
                record = to_record(message)
                if record.offset < ends[record.partition]:
                    records.append(record)
                if record.offset + 1 >= ends[record.partition]:
                    remaining.pop(record.partition, None)
        if remaining:
            raise TimeoutError(f"could not read {topic} to its end within {timeout_s} s")
        records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
        return records
    finally:
        consumer.close()


def select(
    records: Iterable[ConsumedRecord],
    *,
    group: str | None = None,
    keys: Sequence[bytes] = (),
    positions: Sequence[tuple[int, int]] = (),
) -> list[ConsumedRecord]:
    """The records matching every given filter (group, keys, (partition, offset) pairs)."""
    wanted_keys = set(keys)
    wanted_positions = set(positions)
    chosen = []
    for record in records:
        if group is not None and _text(record, ORIGINAL_CONSUMER_GROUP) != group:
            continue
        if wanted_keys and record.key not in wanted_keys:
            continue
        if wanted_positions and (record.partition, record.offset) not in wanted_positions:
            continue
        chosen.append(record)
    return chosen
