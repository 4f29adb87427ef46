"""The sparse offset index of a segment (``<base offset>.index``).

File format, as Kafka's: 8-byte entries, each a big-endian int32 offset relative
to the segment's base offset and a big-endian int32 byte position in the
segment's ``.log`` file. An entry names the base offset of a batch and where that
batch starts. One entry is added when at least ``index.interval.bytes`` of batches
were appended since the previous one, so the index stays small and a lookup is a
bisect followed by a short scan of batch headers.

The index can always be rebuilt from the log (see
:mod:`rivulet.storage.segmented.recovery`); :meth:`OffsetIndex.is_consistent`
tells whether a loaded one can be trusted.
"""

from __future__ import annotations

import bisect

from rivulet.storage.segmented.index_file import SegmentIndex

__all__ = ["ENTRY_SIZE", "OffsetIndex"]

ENTRY_SIZE = 8


class OffsetIndex(SegmentIndex):
    """Maps offsets to positions in one segment's log file."""

    __slots__ = ()

    def __init__(self, path: str, base_offset: int) -> None:
        super().__init__(path, base_offset, "i", "i")

    def is_full(self, max_index_bytes: int) -> bool:
        return (len(self._file) + 1) * ENTRY_SIZE > max_index_bytes

    def add(self, offset: int, position: int) -> None:
        self._file.append(offset - self.base_offset, position)

    def lookup(self, offset: int) -> int:
        """A batch boundary at or before the batch holding ``offset`` (0 when unknown)."""
        self._file.load()
        i = bisect.bisect_right(self._file.first, offset - self.base_offset) - 1
        return self._file.second[i] if i >= 0 else 0

    def floor_position(self, position: int) -> int:
        """The largest indexed batch boundary at or before ``position`` (0 when none)."""
        self._file.load()
        i = bisect.bisect_right(self._file.second, position) - 1
        return self._file.second[i] if i >= 0 else 0

    def is_consistent(self, log_size: int) -> bool:
        """Whether entries increase in both columns and point inside the log."""
        self._file.load()
        offsets, positions = self._file.first, self._file.second
        if offsets and (offsets[0] < 0 or positions[0] < 0 or positions[-1] >= log_size):
            return False
        return all(
            offsets[i] < offsets[i + 1] and positions[i] < positions[i + 1]
            for i in range(len(offsets) - 1)
        )

    def last_position(self) -> int:
        """The last indexed batch boundary (0 when the index is empty)."""
        self._file.load()
        return self._file.second[-1] if self._file.second else 0
