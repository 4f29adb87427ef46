"""An append-only file of fixed-size, two-column, big-endian entries.

The offset index and the time index are both such files; this module holds what
they share (reading, appending, truncating, and the file handling of
:class:`SegmentIndex`). The columns are held in memory as
:mod:`array` arrays, so a lookup is a bisect and a gigabyte segment's index costs
a few megabytes. Entries are read from the file only when first needed, so
opening a log with many segments reads no index in full.

The file is written with plain appends, never preallocated: its size is a whole
number of entries unless a crash tore the last one, which loading cuts off.
"""

from __future__ import annotations

import os
import struct
from array import array

__all__ = ["IndexFile", "SegmentIndex"]


class IndexFile:
    """Two integer columns (struct codes ``first`` and ``second``) backed by a file."""

    __slots__ = ("_entry", "_fd", "_loaded", "_pending", "_unsynced", "first", "path", "second")

    def __init__(self, path: str, first: str, second: str) -> None:
        self.path = path
        self._entry = struct.Struct(f">{first}{second}")
        self.first: array[int] = array(first)
        self.second: array[int] = array(second)
        self._pending = bytearray()
        self._loaded = False
        self._unsynced = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)

    def __len__(self) -> int:
        self.load()
        return len(self.first)

    @property
    def torn(self) -> bool:
        """Whether the file ends in a partial entry (a crash, or damage)."""
        return os.fstat(self._fd).st_size % self._entry.size != 0

    @property
    def file_entries(self) -> int:
        """Whole entries in the file, without loading it."""
        return (os.fstat(self._fd).st_size + len(self._pending)) // self._entry.size

    def last_in_file(self) -> tuple[int, int] | None:
        """The last entry, read from the file only when the index is not loaded."""
        if self._loaded:
            return (self.first[-1], self.second[-1]) if self.first else None
        count = self.file_entries
        if count == 0:
            return None
        data = os.pread(self._fd, self._entry.size, (count - 1) * self._entry.size)
        if len(data) < self._entry.size:
            return None
        a, b = self._entry.unpack(data)
        return a, b

    def load(self) -> None:
        """Read every whole entry in the file once (a torn last entry is cut off)."""
        if self._loaded:
            return
        self._loaded = True
        size = os.fstat(self._fd).st_size
        whole = size - size % self._entry.size
        if whole != size:
            os.ftruncate(self._fd, whole)
        first = array(self.first.typecode)
        second = array(self.second.typecode)
        for a, b in self._entry.iter_unpack(os.pread(self._fd, whole, 0)):
            first.append(a)
            second.append(b)
        self.first = first
        self.second = second

    def append(self, a: int, b: int) -> None:
        """Add an entry; it reaches the file at the next :meth:`write`."""
        self.load()
        self.first.append(a)
        self.second.append(b)
        self._pending += self._entry.pack(a, b)

    def write(self) -> None:
        """Write pending entries with one system call."""
        if self._pending:
            os.write(self._fd, self._pending)
            self._pending.clear()
            self._unsynced = True

    def clear(self) -> None:
        """Drop every entry (before a rebuild), without reading the old ones."""
        self._pending.clear()
        self.first = array(self.first.typecode)
        self.second = array(self.second.typecode)
        self._loaded = True
        os.ftruncate(self._fd, 0)
        self._unsynced = True

    def rename(self, path: str) -> None:
        """Move the file (atomically replacing ``path``); the open descriptor stays valid."""
        os.rename(self.path, path)
        self.path = path

    def flush(self) -> None:
        """Write pending entries and fsync, if anything changed since the last flush."""
        self.write()
        if self._unsynced:
            os.fsync(self._fd)
            self._unsynced = False

    def close(self) -> None:
        self.write()
        os.close(self._fd)


class SegmentIndex:
    """What the offset index and the time index of one segment do alike.

    Subclasses add the lookups that give the two columns their meaning; the
    file's life (write, flush, rename, clear, close) is the same for both.
    """

    __slots__ = ("_file", "base_offset")

    def __init__(self, path: str, base_offset: int, first: str, second: str) -> None:
        self.base_offset = base_offset
        self._file = IndexFile(path, first, second)

    @property
    def path(self) -> str:
        return self._file.path

    def __len__(self) -> int:
        return len(self._file)

    @property
    def torn(self) -> bool:
        """Whether the file ends in a partial entry; checked before anything loads it."""
        return self._file.torn

    def write(self) -> None:
        self._file.write()

    def clear(self) -> None:
        self._file.clear()

    def rename(self, path: str) -> None:
        self._file.rename(path)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
