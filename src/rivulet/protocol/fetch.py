"""Fetch responses encoded around record data that is never copied here.

A Fetch response is mostly record batches taken straight from partition logs.
:func:`encode_fetch_response` writes everything except those batches and
returns a list of pieces: ``bytes`` for the protocol fields, and the caller's
own record *chunk* objects, untouched and in place, where each partition's
records go. The caller knows what a chunk is (a memory view, a file region)
and how to send it; this module only needs each partition's total record
size, to write the length prefixes. The frame's 4-byte size prefix is
included in the first piece.

Layout written, by version (Kafka's ``FetchResponse.json``; v12+ are flexible:
compact arrays and strings, tagged fields, and response header v1)::

    correlation_id int32 | [v12+ header tagged fields]
    throttle_time_ms int32
    error_code int16, session_id int32                        (v7+)
    responses: [
      topic string (v4-12) | topic_id uuid (v13+)
      partitions: [
        partition_index int32, error_code int16, high_watermark int64,
        last_stable_offset int64, log_start_offset int64 (v5+),
        aborted_transactions nullable [producer_id int64, first_offset int64],
        preferred_read_replica int32 (v11+),
        records nullable bytes
      ]
    ]

No tagged fields are written (a single broker never reports a diverging epoch,
a new leader or a snapshot).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "MAX_VERSION",
    "MIN_VERSION",
    "FetchPartition",
    "FetchTopic",
    "encode_fetch_response",
]

MIN_VERSION = 4
MAX_VERSION = 18
_FIRST_FLEXIBLE = 12
_FIRST_TOPIC_ID = 13

C = TypeVar("C")

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_TOP_V7 = struct.Struct(">ihi")  # throttle_time_ms, error_code, session_id
_PARTITION_V4 = struct.Struct(">ihqq")  # index, error, high watermark, last stable
_PARTITION_V5 = struct.Struct(">ihqqq")  # ... + log start offset
_ABORTED = struct.Struct(">qq")


@dataclass(frozen=True, slots=True)
class FetchPartition(Generic[C]):
    """One partition of a Fetch response. ``records_size`` is the sum of chunk lengths."""

    partition_index: int
    error_code: int = 0
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted_transactions: Sequence[tuple[int, int]] | None = None
    """``(producer_id, first_offset)`` pairs, for read_committed consumers."""
    preferred_read_replica: int = -1
    records: Sequence[C] = ()
    records_size: int = 0


@dataclass(frozen=True, slots=True)
class FetchTopic(Generic[C]):
    """One topic of a Fetch response: named up to v12, identified by id from v13."""

    name: str
    topic_id: uuid.UUID
    partitions: Sequence[FetchPartition[C]]


def _uvarint(value: int, out: bytearray) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _array_length(count: int, flexible: bool, out: bytearray) -> None:
    if flexible:
        _uvarint(count + 1, out)
    else:
        out += _I32.pack(count)


def encode_fetch_response(
    version: int,
    correlation_id: int,
    topics: Sequence[FetchTopic[C]],
    *,
    throttle_time_ms: int = 0,
    error_code: int = 0,
    session_id: int = 0,
) -> list[bytes | C]:
    """Encode a framed Fetch response of ``version`` (4-18) as bytes and record chunks.

    The pieces, concatenated with each chunk replaced by its bytes, are exactly the
    frame a Kafka broker would send.
    """
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ValueError(f"Fetch v{version} is not supported (v{MIN_VERSION}-v{MAX_VERSION})")
    flexible = version >= _FIRST_FLEXIBLE
    pieces: list[bytes | C] = []
    total = 0
    out = bytearray(b"\x00\x00\x00\x00")
    out += _I32.pack(correlation_id)
    if flexible:
        out.append(0)
    if version >= 7:
        out += _TOP_V7.pack(throttle_time_ms, error_code, session_id)
    else:
        out += _I32.pack(throttle_time_ms)
    _array_length(len(topics), flexible, out)
    for topic in topics:
        if version >= _FIRST_TOPIC_ID:
            out += topic.topic_id.bytes
        else:
            name = topic.name.encode()
            if flexible:
                _uvarint(len(name) + 1, out)
            else:
                out += _I16.pack(len(name))
            out += name
        _array_length(len(topic.partitions), flexible, out)
        for p in topic.partitions:
            if version >= 5:
                out += _PARTITION_V5.pack(
                    p.partition_index,
                    p.error_code,
                    p.high_watermark,
                    p.last_stable_offset,
                    p.log_start_offset,
                )
            else:
                out += _PARTITION_V4.pack(
                    p.partition_index, p.error_code, p.high_watermark, p.last_stable_offset
                )
            aborted = p.aborted_transactions
            if aborted is None:
                if flexible:
                    out.append(0)
                else:
                    out += _I32.pack(-1)
            else:
                _array_length(len(aborted), flexible, out)
                for producer_id, first_offset in aborted:
                    out += _ABORTED.pack(producer_id, first_offset)
                    if flexible:
                        out.append(0)
            if version >= 11:
                out += _I32.pack(p.preferred_read_replica)
            if flexible:
                _uvarint(p.records_size + 1, out)
            else:
                out += _I32.pack(p.records_size)
            if p.records_size:
                total += len(out) + p.records_size
                pieces.append(bytes(out))
                pieces.extend(p.records)
                out = bytearray()
            if flexible:
                out.append(0)  # partition tagged fields
        if flexible:
            out.append(0)  # topic tagged fields
    if flexible:
        out.append(0)  # response tagged fields
    total += len(out)
    pieces.append(bytes(out))
    first = pieces[0]
    assert isinstance(first, bytes)
    pieces[0] = _I32.pack(total - 4) + first[4:]
    return pieces
