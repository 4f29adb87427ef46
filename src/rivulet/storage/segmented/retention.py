"""When a segment rolls and when retention deletes it: pure decisions.

Both decisions look only at a few numbers per segment, so they are written once
here and used by :class:`~rivulet.storage.segmented.log.SegmentedLog` and by
:class:`~rivulet.storage.memory.MemoryLog`, which keeps the same segment
structure in memory so the two behave alike.

Rolling (a new active segment starts at the log end offset) happens before an
append when the active segment is non-empty and any of these hold:

* the append would take it past ``segment.bytes``;
* it is older than ``segment.ms``, measured from the ``now_ms`` of the first
  append into it (for a segment recovered from disk, from the smaller of that
  ``now_ms`` and its first batch's max timestamp, so a restart does not reset
  the age of a segment that was already old);
* its offset index is full (``segment.index.bytes``), or the append's last offset
  would not fit the index's 32-bit offset relative to the segment's base offset.

Retention follows Kafka: only a leading run of segments is ever deleted. A segment
has expired by time when ``now_ms - largest timestamp > retention.ms``; by size
while the log would still hold at least ``retention.bytes`` without it. An empty
last segment is never deleted; when every segment has expired the caller rolls
first, so the log keeps its end offset and an empty active segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rivulet.storage.base import CleanupPolicy, LogConfig

__all__ = ["MAX_RELATIVE_OFFSET", "SegmentStats", "expired_count", "should_roll"]

MAX_RELATIVE_OFFSET = (1 << 31) - 1


class SegmentStats(Protocol):
    """What the decisions need to know about a segment."""

    @property
    def base_offset(self) -> int: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def max_timestamp(self) -> int:
        """Largest batch max timestamp in the segment; -1 when it holds no batch."""
        ...


def should_roll(
    segment: SegmentStats,
    *,
    append_bytes: int,
    last_offset: int,
    rolled_at_ms: int | None,
    index_full: bool,
    config: LogConfig,
    now_ms: int,
) -> bool:
    """Whether ``segment`` (the active one) must roll before this append."""
    if segment.size_bytes == 0:
        return False
    return (
        segment.size_bytes + append_bytes > config.segment_bytes
        or (rolled_at_ms is not None and now_ms - rolled_at_ms > config.segment_ms)
        or index_full
        or last_offset - segment.base_offset > MAX_RELATIVE_OFFSET
    )


def expired_count(segments: Sequence[SegmentStats], config: LogConfig, *, now_ms: int) -> int:
    """How many leading segments retention deletes (0 unless the policy has ``delete``)."""
    if CleanupPolicy.DELETE not in config.cleanup_policy or not segments:
        return 0
    count = 0
    last = len(segments) - 1
    # An empty active segment is the log's end: never expired.
    deletable = last if segments[last].size_bytes == 0 else last + 1
    if config.retention_ms >= 0:
        while count < deletable and now_ms - segments[count].max_timestamp > config.retention_ms:
            count += 1
    if config.retention_bytes >= 0:
        excess = sum(s.size_bytes for s in segments[count:]) - config.retention_bytes
        while count < deletable and excess - segments[count].size_bytes >= 0:
            excess -= segments[count].size_bytes
            count += 1
    return count
