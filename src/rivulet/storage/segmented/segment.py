"""One segment of a partition log: a log file and its two indexes.

Files, named after the segment's base offset (the offset its first batch may
have, zero-padded to 20 digits)::

    00000000000000001234.log        record batches, back to back, exactly as
                                    appended (base offsets patched), nothing else
    00000000000000001234.index      sparse offset index (see offset_index)
    00000000000000001234.timeindex  sparse time index (see time_index)

The ``.log`` file is the truth; both indexes can be rebuilt from it. Only the
last segment of a log (the active one) is appended to. A segment being rewritten
by compaction is built beside it under the same names plus ``.cleaned``.

Batches are located without reading record bodies: the offset index gives a
batch boundary near the target and :meth:`Segment.headers` walks batch headers
from there with one ``os.pread`` of the 61-byte header per batch. Consumers that
keep up read at or near the end of the active segment, where batches are small
and an index entry may lie dozens of batches back, so a segment also remembers
where its last few appended batches start (see :meth:`Segment.position_of`).
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from rivulet.protocol.batch import HEADER_SIZE, BatchHeader, read_header
from rivulet.storage.errors import CorruptLogError, StorageError
from rivulet.storage.segmented import recovery
from rivulet.storage.segmented.appending import BatchInfo
from rivulet.storage.segmented.offset_index import OffsetIndex
from rivulet.storage.segmented.time_index import TimeIndex

__all__ = ["Segment", "segment_path"]

_log = logging.getLogger(__name__)

#: How many of the last tracked batches a segment remembers the positions of (it
#: keeps between this many and twice as many).
_RECENT_BATCHES = 32


def segment_path(directory: str, base_offset: int, suffix: str) -> str:
    """The path of one of a segment's files, e.g. ``.../00000000000000000042.log``."""
    return os.path.join(directory, f"{base_offset:020d}{suffix}")


class Segment:
    """A segment's files and what is known about its contents.

    ``max_timestamp`` is the largest batch max timestamp (-1 when empty) and
    ``offset_of_max`` the base offset of the first batch carrying it;
    ``next_offset`` is one past the last offset it holds (its base offset when
    empty), kept exact for the active segment.
    """

    __slots__ = (
        "_bytes_since_index",
        "_dirty",
        "_recent_floor",
        "_recent_last_offsets",
        "_recent_positions",
        "_suffix",
        "base_offset",
        "directory",
        "fd",
        "first_timestamp",
        "index_interval_bytes",
        "indexes_checked",
        "indexes_missing",
        "max_timestamp",
        "next_offset",
        "offset_index",
        "offset_of_max",
        "rolled_at_ms",
        "size_bytes",
        "time_index",
    )

    def __init__(
        self, directory: str, base_offset: int, *, index_interval_bytes: int, suffix: str = ""
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        # False until the indexes are known to fit the log (see ensure_indexes).
        self.indexes_checked = True
        self._suffix = suffix
        self.indexes_missing = not (
            os.path.exists(self.path(".index")) and os.path.exists(self.path(".timeindex"))
        )
        self.fd = os.open(
            self.path(".log"), os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )
        self.offset_index = OffsetIndex(self.path(".index"), base_offset)
        self.time_index = TimeIndex(self.path(".timeindex"), base_offset)
        self.size_bytes = os.fstat(self.fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max = base_offset
        self.first_timestamp = -1
        self.rolled_at_ms: int | None = None
        self._bytes_since_index = 0
        self._dirty = False
        # The last tracked batches, in log order: their last offsets and positions.
        # Every batch before them ends at or below ``_recent_floor``.
        self._recent_last_offsets: list[int] = []
        self._recent_positions: list[int] = []
        self._recent_floor = -1

    def path(self, kind: str) -> str:
        return segment_path(self.directory, self.base_offset, kind + self._suffix)

    # -- appending -----------------------------------------------------------

    def append(self, buf: bytes | bytearray | memoryview, batches: Sequence[BatchInfo]) -> None:
        """Write ``buf`` (whole batches) at the end with one write, then index it."""
        start = self.size_bytes
        view = memoryview(buf)
        written = 0
        try:
            while written < len(view):
                written += os.write(self.fd, view[written:])
        except OSError as exc:
            # Leave no partial batch behind: the log stays as it was before the append.
            os.ftruncate(self.fd, start)
            raise StorageError(
                f"could not append to {self.path('.log')}: {exc}; free disk space or check "
                "the data directory's permissions"
            ) from exc
        for batch in batches:
            self.track(start + batch.position, batch)
        self.size_bytes = start + len(view)
        self._dirty = True
        self.offset_index.write()
        self.time_index.write()

    def track(self, position: int, batch: BatchInfo) -> None:
        """Account for one batch at ``position``: stats, and index entries when due."""
        if self.first_timestamp == -1 and position == 0:
            self.first_timestamp = batch.max_timestamp
        if batch.max_timestamp > self.max_timestamp:
            self.max_timestamp = batch.max_timestamp
            self.offset_of_max = batch.base_offset
        if self._bytes_since_index >= self.index_interval_bytes:
            self.offset_index.add(batch.base_offset, position)
            self.time_index.add(self.max_timestamp, self.offset_of_max)
            self._bytes_since_index = 0
        self._bytes_since_index += batch.size
        self.next_offset = batch.last_offset + 1
        last_offsets = self._recent_last_offsets
        if not last_offsets:
            self._recent_floor = batch.base_offset - 1
        last_offsets.append(batch.last_offset)
        self._recent_positions.append(position)
        if len(last_offsets) > 2 * _RECENT_BATCHES:
            self._recent_floor = last_offsets[_RECENT_BATCHES - 1]
            del last_offsets[:_RECENT_BATCHES]
            del self._recent_positions[:_RECENT_BATCHES]

    def _forget_recent(self) -> None:
        self._recent_last_offsets.clear()
        self._recent_positions.clear()

    def set_bytes_since_index(self, count: int) -> None:
        """How many bytes were appended since the last index entry (after a reopen)."""
        self._bytes_since_index = count

    def ensure_indexes(self) -> None:
        """Check a rolled segment's indexes on first use; rebuild them if they do not fit."""
        if self.indexes_checked:
            return
        self.indexes_checked = True
        if not (
            self.offset_index.is_consistent(self.size_bytes)
            and self.time_index.is_consistent(self.next_offset)
        ):
            _log.warning("%s: indexes do not match the log; rebuilding them", self.path(".log"))
            recovery.rescan(self, verify_crc=False)

    def reset_stats(self) -> None:
        """Forget what is known of the contents, before they are scanned again."""
        self.offset_index.clear()
        self.time_index.clear()
        self.next_offset = self.base_offset
        self._forget_recent()
        self.max_timestamp = -1
        self.offset_of_max = self.base_offset
        self.first_timestamp = -1
        self._bytes_since_index = 0

    def seal(self) -> None:
        """Stop being the active segment: record the largest timestamp, make it durable."""
        if self.max_timestamp >= 0:
            self.time_index.add(self.max_timestamp, self.offset_of_max)
        self.flush(indexes=True)

    # -- reading -------------------------------------------------------------

    def header_at(self, position: int) -> BatchHeader:
        data = os.pread(self.fd, HEADER_SIZE, position)
        if len(data) < HEADER_SIZE:
            raise CorruptLogError(
                f"{self.path('.log')}: batch header at position {position} is cut short; "
                "reopen the log to run recovery"
            )
        return read_header(data)

    def headers(self, start: int = 0) -> Iterator[tuple[int, BatchHeader]]:
        """``(position, header)`` of each batch from ``start`` (a batch boundary) on."""
        position = start
        end = self.size_bytes
        while position < end:
            header = self.header_at(position)
            yield position, header
            position += header.size

    def read(self, position: int, length: int) -> bytes:
        return os.pread(self.fd, length, position)

    def position_of(self, offset: int) -> int:
        """Where the first batch whose last offset is >= ``offset`` starts (or the end)."""
        last_offsets = self._recent_last_offsets
        if last_offsets and offset > self._recent_floor:
            # At the tail (a consumer keeping up): no index lookup, no header reads.
            # The remembered batches are the last ones in the file, so past them is the end.
            i = bisect.bisect_left(last_offsets, offset)
            return self._recent_positions[i] if i < len(last_offsets) else self.size_bytes
        self.ensure_indexes()
        for position, header in self.headers(self.offset_index.lookup(offset)):
            if header.last_offset >= offset:
                return position
        return self.size_bytes

    def whole_batches(self, position: int, budget: int) -> int:
        """Bytes of the whole batches from ``position`` that fit in ``budget``."""
        limit = position + budget
        if limit >= self.size_bytes:
            return self.size_bytes - position
        self.ensure_indexes()
        end = max(position, self.offset_index.floor_position(limit))
        for at, header in self.headers(end):
            if at + header.size > limit:
                break
            end = at + header.size
        return end - position

    # -- changing ------------------------------------------------------------

    def truncate(self, position: int) -> None:
        """Cut the log file at ``position`` (a batch boundary)."""
        os.ftruncate(self.fd, position)
        self.size_bytes = position
        self._dirty = True
        self._forget_recent()

    def rename_from_cleaned(self) -> None:
        """Commit a ``.cleaned`` segment: the log first (the commit point), then indexes."""
        suffix = self._suffix
        self._suffix = ""
        os.rename(self.path(".log") + suffix, self.path(".log"))
        self.offset_index.rename(self.path(".index"))
        self.time_index.rename(self.path(".timeindex"))

    def flush(self, *, indexes: bool = False) -> None:
        """fsync the log file (and the indexes, when asked)."""
        if self._dirty:
            os.fsync(self.fd)
            self._dirty = False
        if indexes:
            self.offset_index.flush()
            self.time_index.flush()
        else:
            self.offset_index.write()
            self.time_index.write()

    def close_indexes(self) -> None:
        self.offset_index.close()
        self.time_index.close()

    def close(self) -> None:
        self.close_indexes()
        os.close(self.fd)

    def unlink(self) -> None:
        """Remove the segment's files (open descriptors keep the data readable)."""
        for kind in (".log", ".index", ".timeindex"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(kind))
