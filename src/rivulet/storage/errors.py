"""Errors raised by the storage layer. One root, :class:`StorageError`."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error the storage layer raises."""


class OffsetOutOfRangeError(StorageError):
    """A read asked for an offset outside ``[start_offset, end_offset]``."""

    def __init__(self, offset: int, start_offset: int, end_offset: int) -> None:
        super().__init__(
            f"offset {offset} is outside the log's range [{start_offset}, {end_offset}]"
        )
        self.offset = offset
        self.start_offset = start_offset
        self.end_offset = end_offset


class CorruptLogError(StorageError):
    """Data on disk cannot be read and recovery could not repair it."""
