"""An in-memory partition log, for unit tests and throwaway brokers.

:class:`MemoryLog` keeps the same structure as the segmented log (segments that
roll by size and age, retention that deletes whole leading segments, compaction
that rewrites only rolled segments) so that code tested against it behaves the
same on disk. Batches are held as the bytes appended; reads return memory views
of them, adjacent batches of one append merged into one view.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from rivulet.protocol.batch import read_header
from rivulet.protocol.records import find_timestamp
from rivulet.storage.base import (
    AppendResult,
    LogConfig,
    ReadChunk,
    ReadResult,
    TimestampType,
)
from rivulet.storage.errors import OffsetOutOfRangeError
from rivulet.storage.producer_state import ProducerStateManager
from rivulet.storage.segmented import compaction
from rivulet.storage.segmented.appending import place_batches
from rivulet.storage.segmented.retention import expired_count, should_roll

__all__ = ["MemoryLog"]


@dataclass(slots=True)
class _Batch:
    buf: bytes
    pos: int
    size: int
    base_offset: int
    last_offset: int
    max_timestamp: int

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.pos : self.pos + self.size]


@dataclass(slots=True)
class _Segment:
    base_offset: int
    rolled_at_ms: int | None = None
    batches: list[_Batch] = field(default_factory=list)
    last_offsets: list[int] = field(default_factory=list)
    size_bytes: int = 0
    max_timestamp: int = -1

    def add(self, batch: _Batch) -> None:
        self.batches.append(batch)
        self.last_offsets.append(batch.last_offset)
        self.size_bytes += batch.size
        self.max_timestamp = max(self.max_timestamp, batch.max_timestamp)

    def replace(self, batches: list[_Batch]) -> None:
        self.batches = []
        self.last_offsets = []
        self.size_bytes = 0
        self.max_timestamp = -1
        for batch in batches:
            self.add(batch)


class MemoryLog:
    """A :class:`~rivulet.storage.base.PartitionLog` held in memory.

    >>> from rivulet.protocol.records import Record, encode_batch
    >>> log = MemoryLog(LogConfig())
    >>> log.append(bytearray(encode_batch([Record(value=b"hi")])), now_ms=0).base_offset
    0
    >>> log.end_offset
    1
    """

    def __init__(self, config: LogConfig, *, start_offset: int = 0) -> None:
        self._config = config
        self._segments = [_Segment(start_offset)]
        self._start_offset = start_offset
        self._end_offset = start_offset
        self._producers = ProducerStateManager()

    # -- state ---------------------------------------------------------------

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def start_offset(self) -> int:
        return self._start_offset

    @property
    def end_offset(self) -> int:
        return self._end_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size_bytes for s in self._segments)

    @property
    def segment_count(self) -> int:
        """How many segments the log holds (the active one included)."""
        return len(self._segments)

    @property
    def producers(self) -> ProducerStateManager:
        """The idempotent producers' state (read it; the log keeps it up to date)."""
        return self._producers

    def reconfigure(self, config: LogConfig) -> None:
        self._config = config

    # -- writing -------------------------------------------------------------

    def append(self, batches: bytearray | memoryview, *, now_ms: int) -> AppendResult:
        log_append_time = self._config.timestamp_type is TimestampType.LOG_APPEND_TIME
        # Idempotence: a producer's retry is answered with the original offsets.
        pending = self._producers.check(batches, now_ms=now_ms)
        if pending.duplicate is not None:
            return pending.duplicate.result(self._start_offset, log_append_time=log_append_time)
        placed = place_batches(
            batches, self._end_offset, log_append_time_ms=now_ms if log_append_time else None
        )
        next_offset = placed[-1].last_offset + 1
        active = self._segments[-1]
        if should_roll(
            active,
            append_bytes=len(batches),
            last_offset=next_offset - 1,
            rolled_at_ms=active.rolled_at_ms,
            index_full=False,
            config=self._config,
            now_ms=now_ms,
        ):
            active = self._roll()
        if active.rolled_at_ms is None:
            active.rolled_at_ms = now_ms
        # A private copy: the caller may reuse its buffer once append returns.
        stored = bytes(batches)
        for info in placed:
            active.add(_Batch(stored, *info))
        self._producers.record(pending, placed)
        first_offset = self._end_offset
        self._end_offset = next_offset
        return AppendResult(
            base_offset=first_offset,
            last_offset=next_offset - 1,
            log_append_time_ms=now_ms if log_append_time else -1,
            log_start_offset=self._start_offset,
        )

    def _roll(self) -> _Segment:
        segment = _Segment(self._end_offset)
        self._segments.append(segment)
        return segment

    # -- reading -------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> ReadResult:
        self._check_range(offset)
        chunks: list[tuple[bytes, int, int]] = []
        size = 0
        for batch in self._batches_from(offset):
            if size + batch.size > max_bytes and not (min_one and size == 0):
                break
            if chunks and chunks[-1][0] is batch.buf and chunks[-1][2] == batch.pos:
                buf, start, _ = chunks[-1]
                chunks[-1] = (buf, start, batch.pos + batch.size)
            else:
                chunks.append((batch.buf, batch.pos, batch.pos + batch.size))
            size += batch.size
        views: tuple[ReadChunk, ...] = tuple(memoryview(b)[s:e] for b, s, e in chunks)
        return ReadResult(views, size)

    def _check_range(self, offset: int) -> None:
        if not self._start_offset <= offset <= self._end_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self._end_offset)

    def _batches_from(self, offset: int) -> Iterator[_Batch]:
        """Every batch whose last offset is >= ``offset``, in order."""
        bases = [s.base_offset for s in self._segments]
        first = max(bisect.bisect_right(bases, offset) - 1, 0)
        for segment in self._segments[first:]:
            start = bisect.bisect_left(segment.last_offsets, offset)
            yield from segment.batches[start:]

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        for batch in self._batches_from(self._start_offset):
            if batch.max_timestamp < timestamp_ms:
                continue
            found = find_timestamp(batch.view(), 0, timestamp_ms, min_offset=self._start_offset)
            if found is not None:
                return found
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        best: _Batch | None = None
        for batch in self._batches_from(self._start_offset):
            if best is None or batch.max_timestamp > best.max_timestamp:
                best = batch
        if best is None:
            return None
        exact = find_timestamp(best.view(), 0, best.max_timestamp, min_offset=self._start_offset)
        # The batch's largest timestamp may belong to a record below the start offset.
        return exact or (max(best.base_offset, self._start_offset), best.max_timestamp)

    # -- removing ------------------------------------------------------------

    def delete_records_before(self, offset: int) -> int:
        if offset > self._end_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self._end_offset)
        if offset <= self._start_offset:
            return self._start_offset
        self._start_offset = offset
        # Whole segments below the new start go; the active one always stays.
        while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
            self._segments.pop(0)
        return self._start_offset

    def truncate_to(self, offset: int) -> None:
        if offset < self._start_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self._end_offset)
        if offset >= self._end_offset:
            return
        # Batches are atomic: the one holding ``offset`` goes whole.
        cut = min(
            [offset, *(b.base_offset for b in itertools.islice(self._batches_from(offset), 1))]
        )
        while len(self._segments) > 1 and self._segments[-1].base_offset >= cut:
            self._segments.pop()
        active = self._segments[-1]
        active.replace([b for b in active.batches if b.base_offset < cut])
        self._end_offset = max(cut, self._start_offset)
        self._producers.clear()
        for segment in self._segments:
            for batch in segment.batches:
                self._producers.replay(read_header(batch.buf, batch.pos))

    def enforce_retention(self, *, now_ms: int) -> int:
        count = expired_count(self._segments, self._config, now_ms=now_ms)
        if count == 0:
            return 0
        if count == len(self._segments):
            self._roll()
        del self._segments[:count]
        self._start_offset = max(self._start_offset, self._segments[0].base_offset)
        return count

    def compact(self, *, now_ms: int) -> int:
        cleanable = self._segments[
            : compaction.cleanable_count(self._segments, self._config, now_ms=now_ms)
        ]
        if not cleanable:
            return 0
        plan = compaction.plan(
            (b.view() for s in cleanable for b in s.batches), self._config, now_ms=now_ms
        )
        freed = 0
        for segment in cleanable:
            kept: list[_Batch] = []
            for batch in segment.batches:
                view = batch.view()
                rewritten = plan.rewrite(view)
                if rewritten is None:
                    freed += batch.size
                elif rewritten is view:
                    kept.append(batch)
                else:
                    freed += batch.size - len(rewritten)
                    buf = bytes(rewritten)
                    max_timestamp = read_header(buf).max_timestamp
                    kept.append(
                        _Batch(
                            buf, 0, len(buf), batch.base_offset, batch.last_offset, max_timestamp
                        )
                    )
            segment.replace(kept)
        # Segments emptied by compaction go, except the first, which anchors the start.
        self._segments = [
            s
            for i, s in enumerate(self._segments)
            if s.batches or i in (0, len(self._segments) - 1)
        ]
        return freed

    # -- lifecycle -----------------------------------------------------------

    def flush(self) -> None:
        """Nothing to do: memory is as durable as this log gets."""

    def close(self) -> None:
        self._segments = [_Segment(self._end_offset)]
        self._producers.clear()
