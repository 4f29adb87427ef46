"""Helpers shared by the storage tests: build batches, read logs back as records."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rivulet.protocol.batch import Compression
from rivulet.protocol.records import Record, encode_batch, iter_decoded
from rivulet.storage.base import FileRegion, PartitionLog, ReadResult

# The ``make`` fixture (conftest.py): opens a log with config changes, of each kind.
Make = Callable[..., PartitionLog]


@dataclass(frozen=True)
class Seen:
    """A record as a consumer sees it."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def batch(
    values: Sequence[bytes | None],
    *,
    keys: Sequence[bytes | None] | None = None,
    timestamp: int = 0,
    timestamps: Sequence[int] | None = None,
    compression: Compression = Compression.NONE,
) -> bytearray:
    """A fresh batch (base offset 0) as a producer would send it."""
    keys = keys if keys is not None else [None] * len(values)
    stamps = timestamps if timestamps is not None else [timestamp] * len(values)
    records = [
        Record(key=k, value=v, offset_delta=i, timestamp_delta=t - stamps[0])
        for i, (k, v, t) in enumerate(zip(keys, values, stamps, strict=True))
    ]
    return bytearray(encode_batch(records, base_timestamp=stamps[0], compression=compression))


def result_bytes(result: ReadResult) -> bytes:
    out = bytearray()
    for chunk in result.chunks:
        if isinstance(chunk, FileRegion):
            data = os.pread(chunk.fd, chunk.length, chunk.position)
            assert len(data) == chunk.length
            out += data
        else:
            out += chunk
    assert len(out) == result.size
    return bytes(out)


def read_records(log: PartitionLog, offset: int | None = None) -> list[Seen]:
    """Every record from ``offset`` (default: the start) to the end, as consumers see them."""
    start = log.start_offset if offset is None else offset
    seen: list[Seen] = []
    position = start
    while position < log.end_offset:
        data = result_bytes(log.read(position, 1 << 20))
        if not data:
            break
        for decoded in iter_decoded(data):
            for record in decoded.records:
                at = decoded.offset(record)
                if at >= start:
                    seen.append(Seen(at, decoded.timestamp(record), record.key, record.value))
            position = decoded.header.next_offset
    return seen


def values(log: PartitionLog, offset: int | None = None) -> list[bytes | None]:
    return [s.value for s in read_records(log, offset)]
