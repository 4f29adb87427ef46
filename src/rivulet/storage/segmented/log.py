"""The durable partition log: a directory of segments.

Layout of one partition's directory (as Kafka's, plus two small files)::

    00000000000000000000.log         segments, named by base offset (see segment)
    00000000000000000000.index
    00000000000000000000.timeindex
    00000000000000052113.log         ... the last one is the active segment
    00000000000000052113.index
    00000000000000052113.timeindex
    log-start-offset                 DeleteRecords' start offset (see checkpoint)
    clean-shutdown                   present only while the log is closed cleanly
    00000000000000052113.snapshot    producer state at that offset, for idempotence
                                     (see producer_snapshots; only while some
                                     idempotent producer is known)

An append patches base offsets (and LogAppendTime) in the caller's buffer, rolls
the active segment if due, and writes the buffer with one ``write``; index entries
are added only every ``index.interval.bytes``. Nothing is fsynced unless
:meth:`SegmentedLog.flush` is called (the broker decides when), except that a
segment is fsynced when it rolls, so recovery only ever has to rescan the active
segment.

Reads return :class:`~rivulet.storage.base.FileRegion` chunks (one per segment
touched) for ``sendfile``. When a segment is deleted (retention, DeleteRecords,
truncation, compaction) its files are unlinked at once but its log descriptor is
only closed at the next :meth:`~SegmentedLog.enforce_retention`,
:meth:`~SegmentedLog.compact` or :meth:`~SegmentedLog.close`, so a region handed
out just before stays readable while it is being sent.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import shutil
from collections.abc import Iterator

from rivulet.protocol.batch import BatchHeader, read_header
from rivulet.protocol.records import find_timestamp
from rivulet.storage.base import (
    AppendResult,
    FileRegion,
    LogConfig,
    ReadChunk,
    ReadResult,
    TimestampType,
)
from rivulet.storage.errors import OffsetOutOfRangeError
from rivulet.storage.producer_state import ProducerStateManager
from rivulet.storage.segmented import checkpoint, compaction, recovery
from rivulet.storage.segmented.appending import BatchInfo, place_batches
from rivulet.storage.segmented.producer_snapshots import ProducerSnapshots
from rivulet.storage.segmented.retention import expired_count, should_roll
from rivulet.storage.segmented.segment import Segment

__all__ = ["SegmentedLog", "delete_log", "open_log"]


def open_log(path: str | os.PathLike[str], config: LogConfig) -> SegmentedLog:
    """Open the log in directory ``path``, creating it (empty) if needed, and recover it."""
    return SegmentedLog(os.fspath(path), config)


def delete_log(path: str | os.PathLike[str]) -> None:
    """Remove a (closed) log's directory and everything in it."""
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)


class SegmentedLog:
    """A :class:`~rivulet.storage.base.PartitionLog` stored in a directory of segments."""

    def __init__(self, directory: str, config: LogConfig) -> None:
        self._directory = directory
        self._config = config
        self._parked: list[int] = []
        self._closed = False
        os.makedirs(directory, exist_ok=True)
        marker = os.path.join(directory, recovery.CLEAN_SHUTDOWN)
        clean = os.path.exists(marker)
        bases = recovery.tidy_directory(directory)
        checkpointed = checkpoint.read_offset(self._checkpoint_path)
        if not bases:
            bases = [checkpointed or 0]
        self._segments = [self._open_segment(base) for base in bases]
        self._bases = bases
        for segment, next_base in zip(self._segments, bases[1:], strict=False):
            self._load_rolled(segment, next_base)
        active = self._segments[-1]
        if not (clean and recovery.trusted_tail(active)):
            recovery.rescan(active, verify_crc=True)
        self._start_offset = min(
            max(checkpointed or 0, self._segments[0].base_offset), self.end_offset
        )
        # Segments a DeleteRecords interrupted by a crash did not get to delete.
        self._remove_leading(self._wholly_below(self._start_offset))
        # Idempotent producers: the newest snapshot plus the batches after it.
        self._producers = ProducerStateManager()
        self._snapshots = ProducerSnapshots(directory)
        self._restore_producers(from_active_segment=True)
        if clean:
            os.unlink(marker)
        checkpoint.fsync_directory(directory)

    @property
    def _checkpoint_path(self) -> str:
        return os.path.join(self._directory, checkpoint.LOG_START_OFFSET)

    def _open_segment(self, base_offset: int, suffix: str = "") -> Segment:
        return Segment(
            self._directory,
            base_offset,
            index_interval_bytes=self._config.index_interval_bytes,
            suffix=suffix,
        )

    def _load_rolled(self, segment: Segment, next_base: int) -> None:
        """Learn a rolled segment's statistics from its time index's last entry."""
        segment.next_offset = next_base
        torn = segment.offset_index.torn or segment.time_index.torn
        last = segment.time_index.last()
        implausible = last is not None and not segment.base_offset <= last[1] < next_base
        if (
            segment.indexes_missing
            or torn
            or implausible
            or (segment.size_bytes > 0 and last is None)
        ):
            recovery.rescan(segment, verify_crc=False)
            return
        if last is not None:
            segment.max_timestamp, segment.offset_of_max = last
        segment.indexes_checked = False

    # -- state ---------------------------------------------------------------

    @property
    def config(self) -> LogConfig:
        return self._config

    @property
    def directory(self) -> str:
        return self._directory

    @property
    def start_offset(self) -> int:
        return self._start_offset

    @property
    def end_offset(self) -> int:
        return self._segments[-1].next_offset

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

    def _restore_producers(self, *, from_active_segment: bool) -> None:
        """Rebuild the producer state from the snapshots and the log's batch headers."""
        self._snapshots.restore(
            self._producers,
            end_offset=self.end_offset,
            active_base_offset=self._bases[-1] if from_active_segment else self._bases[0],
            first_base_offset=self._bases[0],
            headers_from=lambda offset: (h for _, _, h in self._headers_from(offset)),
        )

    def reconfigure(self, config: LogConfig) -> None:
        self._config = config
        for segment in self._segments:
            segment.index_interval_bytes = config.index_interval_bytes

    # -- writing -------------------------------------------------------------

    def append(self, batches: bytearray | memoryview, *, now_ms: int) -> AppendResult:
        log_append_time = self._config.timestamp_type is TimestampType.LOG_APPEND_TIME
        # Idempotence: a producer's retry is answered with the original offsets.
        pending = self._producers.check(batches, now_ms=now_ms)
        if pending.duplicate is not None:
            return pending.duplicate.result(self._start_offset, log_append_time=log_append_time)
        first_offset = self.end_offset
        placed = place_batches(
            batches, first_offset, log_append_time_ms=now_ms if log_append_time else None
        )
        next_offset = placed[-1].last_offset + 1
        active = self._segments[-1]
        if active.rolled_at_ms is None:
            # A segment recovered from disk counts its age from its first batch if older.
            first = active.first_timestamp
            active.rolled_at_ms = min(first, now_ms) if active.size_bytes and first >= 0 else now_ms
        if should_roll(
            active,
            append_bytes=len(batches),
            last_offset=next_offset - 1,
            rolled_at_ms=active.rolled_at_ms,
            index_full=active.offset_index.is_full(self._config.segment_index_bytes),
            config=self._config,
            now_ms=now_ms,
        ):
            active = self._roll()
            active.rolled_at_ms = now_ms
        active.append(batches, placed)
        self._producers.record(pending, placed)
        return AppendResult(
            base_offset=first_offset,
            last_offset=next_offset - 1,
            log_append_time_ms=now_ms if log_append_time else -1,
            log_start_offset=self._start_offset,
        )

    def _roll(self) -> Segment:
        """Seal the active segment and start a new one at the log end offset."""
        old = self._segments[-1]
        old.seal()
        # Before the new segment exists: reopening relies on this snapshot for it.
        self._snapshots.save(old.next_offset, self._producers)
        segment = self._open_segment(old.next_offset)
        segment.next_offset = old.next_offset
        self._segments.append(segment)
        self._bases.append(segment.base_offset)
        checkpoint.fsync_directory(self._directory)
        return segment

    # -- reading -------------------------------------------------------------

    def _check_range(self, offset: int) -> None:
        if not self._start_offset <= offset <= self.end_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self.end_offset)

    def _segment_index(self, offset: int) -> int:
        return max(bisect.bisect_right(self._bases, offset) - 1, 0)

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> ReadResult:
        self._check_range(offset)
        chunks: list[ReadChunk] = []
        size = 0
        first = self._segment_index(offset)
        for i in range(first, len(self._segments)):
            segment = self._segments[i]
            position = segment.position_of(offset) if i == first else 0
            available = segment.size_bytes - position
            if available <= 0:
                continue
            length = segment.whole_batches(position, max_bytes - size) if size < max_bytes else 0
            if length == 0 and min_one and size == 0:
                length = segment.header_at(position).size
            if length:
                chunks.append(FileRegion(segment.fd, position, length))
                size += length
            if length < available:
                break
        return ReadResult(tuple(chunks), size)

    def _headers_from(self, offset: int) -> Iterator[tuple[Segment, int, BatchHeader]]:
        """Every batch whose last offset is >= ``offset``, with its segment and position."""
        first = self._segment_index(offset)
        for i in range(first, len(self._segments)):
            segment = self._segments[i]
            start = segment.position_of(offset) if i == first else 0
            for position, header in segment.headers(start):
                yield segment, position, header

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        start = self._start_offset
        first = self._segment_index(start)
        for segment in self._segments[first:]:
            if segment.max_timestamp < timestamp_ms:
                continue
            segment.ensure_indexes()
            from_offset = max(segment.time_index.lookup(timestamp_ms), start)
            for position, header in segment.headers(segment.position_of(from_offset)):
                if header.max_timestamp < timestamp_ms:
                    continue
                data = segment.read(position, header.size)
                found = find_timestamp(data, 0, timestamp_ms, min_offset=start)
                if found is not None:
                    return found
        return None

    def max_timestamp(self) -> tuple[int, int] | None:
        start = self._start_offset
        best: Segment | None = None
        for segment in self._segments[self._segment_index(start) :]:
            if segment.size_bytes and (best is None or segment.max_timestamp > best.max_timestamp):
                best = segment
        if best is not None and best.offset_of_max >= start:
            position = best.position_of(best.offset_of_max)
            header = best.header_at(position)
            data = best.read(position, header.size)
            return find_timestamp(data, 0, best.max_timestamp, min_offset=start)
        # The largest timestamp sits below a DeleteRecords start offset: walk what is left.
        found: tuple[Segment, int, BatchHeader] | None = None
        for segment, position, header in self._headers_from(start):
            if found is None or header.max_timestamp > found[2].max_timestamp:
                found = segment, position, header
        if found is None:
            return None
        segment, position, header = found
        data = segment.read(position, header.size)
        exact = find_timestamp(data, 0, header.max_timestamp, min_offset=start)
        return exact or (max(header.base_offset, start), header.max_timestamp)

    # -- removing ------------------------------------------------------------

    def _drop(self, segment: Segment) -> None:
        """Delete a segment's files now; close its log descriptor later."""
        segment.close_indexes()
        segment.unlink()
        self._parked.append(segment.fd)

    def _close_parked(self) -> None:
        for fd in self._parked:
            os.close(fd)
        self._parked.clear()

    def _remove_leading(self, count: int) -> None:
        if count == 0:
            return
        for segment in self._segments[:count]:
            self._drop(segment)
        del self._segments[:count]
        del self._bases[:count]
        checkpoint.fsync_directory(self._directory)

    def delete_records_before(self, offset: int) -> int:
        if offset > self.end_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self.end_offset)
        if offset <= self._start_offset:
            return self._start_offset
        self._start_offset = offset
        checkpoint.write_offset(self._checkpoint_path, offset)
        self._remove_leading(self._wholly_below(offset))
        return self._start_offset

    def _wholly_below(self, offset: int) -> int:
        """How many leading segments hold only offsets below ``offset`` (never the last)."""
        count = 0
        while count < len(self._segments) - 1 and self._bases[count + 1] <= offset:
            count += 1
        return count

    def truncate_to(self, offset: int) -> None:
        if offset < self._start_offset:
            raise OffsetOutOfRangeError(offset, self._start_offset, self.end_offset)
        if offset >= self.end_offset:
            return
        # Batches are atomic: the one holding ``offset`` goes whole.
        cut = min(
            [
                offset,
                *(h.base_offset for _, _, h in itertools.islice(self._headers_from(offset), 1)),
            ]
        )
        while len(self._segments) > 1 and self._bases[-1] >= cut:
            self._drop(self._segments.pop())
            self._bases.pop()
        active = self._segments[-1]
        active.truncate(active.position_of(cut))
        recovery.rescan(active, verify_crc=False)
        active.rolled_at_ms = None
        new_end = max(cut, self._start_offset)
        if active.next_offset != new_end:
            # The end offset is not where the data ends (a compaction gap, or a
            # start offset inside the dropped batch): a segment named after the
            # end offset makes it survive a reopen.
            if active.size_bytes == 0:
                self._drop(self._segments.pop())
                self._bases.pop()
            else:
                active.next_offset = new_end
                active.seal()
            segment = self._open_segment(new_end)
            segment.next_offset = new_end
            self._segments.append(segment)
            self._bases.append(new_end)
        checkpoint.fsync_directory(self._directory)
        self._restore_producers(from_active_segment=False)
        self._snapshots.save(self.end_offset, self._producers)

    def enforce_retention(self, *, now_ms: int) -> int:
        self._close_parked()
        count = expired_count(self._segments, self._config, now_ms=now_ms)
        if count == 0:
            return 0
        if count == len(self._segments):
            self._roll()
        self._remove_leading(count)
        self._start_offset = max(self._start_offset, self._bases[0])
        return count

    def compact(self, *, now_ms: int) -> int:
        self._close_parked()
        count = compaction.cleanable_count(self._segments, self._config, now_ms=now_ms)
        if count == 0:
            return 0
        cleanable = self._segments[:count]
        plan = compaction.plan(
            (s.read(p, h.size) for s in cleanable for p, h in s.headers()),
            self._config,
            now_ms=now_ms,
        )
        freed = 0
        for i, segment in enumerate(cleanable):
            freed += self._rewrite(i, segment, plan)
        emptied = [i for i in range(1, count) if self._segments[i].size_bytes == 0]
        for i in reversed(emptied):
            self._drop(self._segments.pop(i))
            self._bases.pop(i)
        checkpoint.fsync_directory(self._directory)
        return freed

    def _rewrite(self, index: int, segment: Segment, plan: compaction.CompactionPlan) -> int:
        """Replace one segment by its compacted copy, if compaction changes it."""
        cleaned: Segment | None = None
        try:
            for position, header in segment.headers():
                data = segment.read(position, header.size)
                kept = plan.rewrite(data)
                if kept is data and cleaned is None:
                    continue
                if cleaned is None:
                    # The first change: start the copy with every batch before it.
                    cleaned = self._open_segment(segment.base_offset, ".cleaned")
                    cleaned.reset_stats()
                    for p, h in segment.headers():
                        if p >= position:
                            break
                        self._copy_into(cleaned, segment.read(p, h.size))
                if kept is not None:
                    self._copy_into(cleaned, kept)
        except BaseException:
            if cleaned is not None:
                cleaned.close()
                cleaned.unlink()
            raise
        if cleaned is None:
            return 0
        freed = segment.size_bytes - cleaned.size_bytes
        cleaned.next_offset = segment.next_offset
        cleaned.seal()
        cleaned.rename_from_cleaned()
        self._segments[index] = cleaned
        segment.close_indexes()
        self._parked.append(segment.fd)
        return freed

    @staticmethod
    def _copy_into(segment: Segment, data: bytes | bytearray | memoryview) -> None:
        header = read_header(data)
        info = BatchInfo(
            0, header.size, header.base_offset, header.last_offset, header.max_timestamp
        )
        segment.append(data, [info])

    # -- lifecycle -----------------------------------------------------------

    def flush(self) -> None:
        for segment in self._segments:
            segment.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._segments[-1].seal()
        self._snapshots.save(self.end_offset, self._producers)
        for segment in self._segments:
            segment.flush(indexes=True)
            segment.close()
        self._close_parked()
        marker = os.path.join(self._directory, recovery.CLEAN_SHUTDOWN)
        with open(marker, "wb") as file:
            os.fsync(file.fileno())
        checkpoint.fsync_directory(self._directory)
