"""Placing appended batches: the header patching both logs do on every append.

The broker hands over batches it validated; a log gives them consecutive
offsets by patching each base offset in place and, with LogAppendTime, stamps
the append time (which changes the CRC, recomputed over the header's tail and
the records, never decoding them). Nothing here touches record bodies.
"""

from __future__ import annotations

from typing import NamedTuple

from rivulet.protocol.batch import iter_batches, set_base_offset, set_log_append_time

__all__ = ["BatchInfo", "place_batches"]


class BatchInfo(NamedTuple):
    """Where a batch sits in an append buffer, and what the indexes need of it."""

    position: int
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int


def place_batches(
    batches: bytearray | memoryview, next_offset: int, *, log_append_time_ms: int | None
) -> list[BatchInfo]:
    """Patch ``batches`` to start at ``next_offset``; describe each batch.

    Raises :class:`~rivulet.protocol.errors.InvalidBatchError` for a malformed
    buffer and :class:`ValueError` for an empty one.
    """
    placed: list[BatchInfo] = []
    for position, header in iter_batches(batches):
        set_base_offset(batches, position, next_offset)
        max_timestamp = header.max_timestamp
        if log_append_time_ms is not None:
            set_log_append_time(batches, position, header, log_append_time_ms)
            max_timestamp = log_append_time_ms
        last = next_offset + header.last_offset_delta
        placed.append(BatchInfo(position, header.size, next_offset, last, max_timestamp))
        next_offset = last + 1
    if not placed:
        raise ValueError("append needs at least one record batch; got an empty buffer")
    return placed
