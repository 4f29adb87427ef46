"""The partition log interface.

A partition log holds record batches (Kafka record batch format v2, magic 2) in
offset order. The broker hands :meth:`PartitionLog.append` batches it has already
validated (CRC, magic, size); the log assigns offsets by patching each batch's base
offset in place and never re-encodes records. Reads return the stored bytes as
chunks: memory views for in-memory data, :class:`FileRegion` for data on disk so
the server can send it with ``sendfile`` without copying it through Python.

Time is never read inside a log: every method that needs the clock takes ``now_ms``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

DAY_MS = 24 * 60 * 60 * 1000


class CleanupPolicy(enum.Flag):
    """What happens to old data: deleted by retention, compacted by key, or both."""

    DELETE = enum.auto()
    COMPACT = enum.auto()

    @classmethod
    def parse(cls, value: str) -> CleanupPolicy:
        """Parse Kafka's ``cleanup.policy`` value (``delete``, ``compact`` or both)."""
        policy = cls(0)
        for part in value.replace(" ", "").split(","):
            if part == "delete":
                policy |= cls.DELETE
            elif part == "compact":
                policy |= cls.COMPACT
            else:
                raise ValueError(f"cleanup.policy must be delete, compact or both, not {value!r}")
        if not policy:
            raise ValueError("cleanup.policy must not be empty")
        return policy


class TimestampType(enum.Enum):
    """``message.timestamp.type``: keep the producer's time or stamp the append time."""

    CREATE_TIME = "CreateTime"
    LOG_APPEND_TIME = "LogAppendTime"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """Per-partition log settings, named after the Kafka topic configs they mirror.

    A value of ``-1`` for a retention limit means "no limit", as in Kafka.
    """

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * DAY_MS
    segment_index_bytes: int = 10 * 1024 * 1024
    index_interval_bytes: int = 4096
    retention_ms: int = 7 * DAY_MS
    retention_bytes: int = -1
    cleanup_policy: CleanupPolicy = CleanupPolicy.DELETE
    delete_retention_ms: int = DAY_MS
    min_compaction_lag_ms: int = 0
    max_message_bytes: int = 1024 * 1024 + 12
    timestamp_type: TimestampType = TimestampType.CREATE_TIME


@dataclass(frozen=True, slots=True)
class FileRegion:
    """A byte range of an open file, sendable with ``os.sendfile``.

    ``fd`` stays open for as long as the segment it belongs to is open. When a
    segment is deleted (retention, DeleteRecords, truncation) or replaced by its
    compacted copy, its files go at once but the descriptor is closed only at the
    log's next ``enforce_retention``, ``compact`` or ``close``: until then the region
    reads what the file held, since an open descriptor keeps the inode alive. Send
    or copy a region before any of those three runs again; a region can read short
    if ``truncate_to`` cut its segment in the meantime.
    """

    fd: int
    position: int
    length: int


ReadChunk = memoryview | FileRegion


@dataclass(frozen=True, slots=True)
class ReadResult:
    """Whole batches read from a log, in order.

    ``size`` is the sum of the chunk lengths. ``chunks`` is empty when there is
    nothing at the requested offset yet.
    """

    chunks: tuple[ReadChunk, ...]
    size: int


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where appended batches landed.

    ``log_append_time_ms`` is -1 unless the log stamped LogAppendTime.
    """

    base_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int


@runtime_checkable
class PartitionLog(Protocol):
    """One partition's log. Implementations are not thread-safe; the broker owns them."""

    @property
    def config(self) -> LogConfig: ...

    @property
    def start_offset(self) -> int:
        """The first offset still readable (the log start offset)."""
        ...

    @property
    def end_offset(self) -> int:
        """The offset the next appended record will get (the log end offset)."""
        ...

    @property
    def size_bytes(self) -> int:
        """Bytes of batch data held."""
        ...

    def reconfigure(self, config: LogConfig) -> None:
        """Apply new settings; they govern the next roll, retention and compaction."""
        ...

    def append(self, batches: bytearray | memoryview, *, now_ms: int) -> AppendResult:
        """Append one or more validated v2 batches, assigning consecutive offsets.

        ``batches`` (writable) is patched in place (base offsets; with
        LogAppendTime the max timestamp, the timestamp-type bit and the CRC) and
        then stored as is; the caller may reuse the buffer once this returns. Raises
        :class:`~rivulet.storage.errors.StorageError` when the data cannot be
        written (the log is then left as it was).

        Batches of idempotent producers follow :mod:`rivulet.storage.producer_state`:
        a repeat of a recently appended batch stores nothing and returns the
        original batch's offsets; a batch breaking its producer's sequence or
        epoch raises a :class:`~rivulet.storage.producer_state.ProducerStateError`
        and nothing is appended.
        """
        ...

    def read(self, offset: int, max_bytes: int, *, min_one: bool = True) -> ReadResult:
        """Read whole batches starting with the one that contains ``offset``.

        At most ``max_bytes`` are returned, except that with ``min_one`` the first
        batch is returned even when it alone is larger (Kafka's fetch rule).
        Raises :class:`~rivulet.storage.errors.OffsetOutOfRangeError` when
        ``offset`` is below ``start_offset`` or above ``end_offset``; reading at
        ``end_offset`` returns an empty result.
        """
        ...

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """The first record (at or above the start offset) with timestamp >= ``timestamp_ms``.

        Returns ``(offset, timestamp)`` or ``None`` when no such record exists. As
        in Kafka, record timestamps count (the batch found through the time index
        is decoded); with LogAppendTime every record has its batch's append time.
        """
        ...

    def max_timestamp(self) -> tuple[int, int] | None:
        """``(offset, timestamp)`` of the record with the largest timestamp, if any."""
        ...

    def delete_records_before(self, offset: int) -> int:
        """Move the log start offset up to ``offset`` (DeleteRecords); return it.

        Never moves it back. Raises
        :class:`~rivulet.storage.errors.OffsetOutOfRangeError` when ``offset`` is
        past the end offset.
        """
        ...

    def truncate_to(self, offset: int) -> None:
        """Drop every record at or after ``offset``.

        Batches are never split: the batch holding ``offset`` is dropped whole, so
        the end offset becomes that batch's base offset (never below the start
        offset). Raises :class:`~rivulet.storage.errors.OffsetOutOfRangeError` for
        an ``offset`` below the start offset; one at or past the end does nothing.
        """
        ...

    def enforce_retention(self, *, now_ms: int) -> int:
        """Delete segments past ``retention.ms`` / ``retention.bytes``; return how many.

        Only with ``delete`` in the cleanup policy. When every segment has expired,
        the active one is rolled first, so the log ends up empty with its end offset
        kept (the start offset moves up to it).
        """
        ...

    def compact(self, *, now_ms: int) -> int:
        """Compact by key if the policy says so; return how many bytes were freed."""
        ...

    def flush(self) -> None:
        """Make every appended batch durable (fsync)."""
        ...

    def close(self) -> None:
        """Flush indexes and release files. The log is unusable afterwards."""
        ...
