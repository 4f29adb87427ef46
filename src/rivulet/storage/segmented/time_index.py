"""The sparse time index of a segment (``<base offset>.timeindex``).

File format, as Kafka's: 12-byte entries, each a big-endian int64 timestamp and a
big-endian int32 offset relative to the segment's base offset. An entry
``(t, o)`` says: ``t`` is the largest batch max timestamp up to that point of the
segment, and ``o`` is the base offset of the first batch that reached it, so every
batch before ``o`` has a max timestamp below ``t``. Timestamps strictly increase.

Entries are added alongside offset index entries (every ``index.interval.bytes``)
when the largest timestamp grew, and once more when the segment stops being the
active one (roll or clean close), so a segment's last entry holds its largest
timestamp and where it first occurs.
"""

from __future__ import annotations

import bisect

from rivulet.storage.segmented.index_file import SegmentIndex

__all__ = ["ENTRY_SIZE", "TimeIndex"]

ENTRY_SIZE = 12


class TimeIndex(SegmentIndex):
    """Maps timestamps to the offset where a scan for them should start."""

    __slots__ = ()

    def __init__(self, path: str, base_offset: int) -> None:
        super().__init__(path, base_offset, "q", "i")

    def add(self, timestamp: int, offset: int) -> None:
        """Record a new largest timestamp (ignored unless it is larger)."""
        self._file.load()
        if not self._file.first or timestamp > self._file.first[-1]:
            self._file.append(timestamp, offset - self.base_offset)

    def last(self) -> tuple[int, int] | None:
        """``(timestamp, offset)`` of the last entry, read without loading the index."""
        entry = self._file.last_in_file()
        if entry is None:
            return None
        return entry[0], self.base_offset + entry[1]

    def lookup(self, timestamp: int) -> int:
        """An offset before which no batch has a timestamp >= ``timestamp``."""
        self._file.load()
        i = bisect.bisect_right(self._file.first, timestamp) - 1
        return self.base_offset + (self._file.second[i] if i >= 0 else 0)

    def is_consistent(self, next_offset: int) -> bool:
        """Whether timestamps strictly increase and offsets stay inside the segment."""
        self._file.load()
        stamps, offsets = self._file.first, self._file.second
        if offsets and (offsets[0] < 0 or self.base_offset + offsets[-1] >= next_offset):
            return False
        return all(
            stamps[i] < stamps[i + 1] and offsets[i] <= offsets[i + 1]
            for i in range(len(stamps) - 1)
        )
