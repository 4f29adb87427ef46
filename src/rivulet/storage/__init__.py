"""The partition log: an append-only sequence of record batches.

``base`` defines the interface the broker depends on; ``memory`` is the in-memory
implementation for unit tests and ``segmented`` the durable, on-disk one.
"""

from __future__ import annotations

from rivulet.storage.base import (
    AppendResult,
    CleanupPolicy,
    FileRegion,
    LogConfig,
    PartitionLog,
    ReadChunk,
    ReadResult,
    TimestampType,
)
from rivulet.storage.errors import (
    CorruptLogError,
    OffsetOutOfRangeError,
    StorageError,
)

__all__ = [
    "AppendResult",
    "CleanupPolicy",
    "CorruptLogError",
    "FileRegion",
    "LogConfig",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "ReadChunk",
    "ReadResult",
    "StorageError",
    "TimestampType",
]
