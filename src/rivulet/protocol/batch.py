"""Record batch v2 (magic 2) header views.

A record batch on the wire and on disk::

    offset  size  field
    0       8     base offset            (patched by the log on append)
    8       4     batch length           (bytes after this field)
    12      4     partition leader epoch
    16      1     magic                  (2)
    17      4     CRC32C                 (of every byte from attributes to the end)
    21      2     attributes             (bits 0-2 compression, 3 timestamp type,
                                          4 transactional, 5 control)
    23      4     last offset delta
    27      8     base timestamp
    35      8     max timestamp
    43      8     producer id
    51      2     producer epoch
    53      4     base sequence
    57      4     records count
    61      ...   records (compressed as a whole when compression is set)

The broker only reads and patches headers; records are never parsed on the
produce or fetch path. All functions work on memory views without copying.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import crc32c

from rivulet.protocol.errors import InvalidBatchError

HEADER_SIZE = 61
LOG_OVERHEAD = 12  # base offset + batch length: bytes not counted by batch length
MAGIC = 2

_CRC_START = 21
_HEADER = struct.Struct(">qiibIhiqqqhii")
_INT64 = struct.Struct(">q")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")

_COMPRESSION_MASK = 0x07
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20


class Compression(enum.IntEnum):
    """The compression codec in a batch's attributes."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The decoded header of one record batch."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies, header included."""
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> Compression:
        return Compression(self.attributes & _COMPRESSION_MASK)

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & _TIMESTAMP_TYPE_BIT)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & _TRANSACTIONAL_BIT)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & _CONTROL_BIT)

    @property
    def last_sequence(self) -> int:
        """Sequence of the last record, wrapping at 2**31 as Kafka does."""
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.last_offset_delta) % (1 << 31)


def read_header(buf: memoryview | bytes | bytearray, pos: int = 0) -> BatchHeader:
    """Decode the header of the batch starting at ``pos``.

    Raises :class:`InvalidBatchError` when fewer than a header's bytes remain.
    """
    if len(buf) - pos < HEADER_SIZE:
        raise InvalidBatchError(
            f"record batch header truncated: {len(buf) - pos} bytes at position {pos}"
        )
    return BatchHeader(*_HEADER.unpack_from(buf, pos))


def iter_batches(buf: memoryview | bytes | bytearray) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each whole batch in ``buf``.

    Raises :class:`InvalidBatchError` on a truncated batch, a batch length too small
    to hold a header, or a magic other than 2. CRCs are not checked here: see
    :func:`verify_crc`.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        header = read_header(buf, pos)
        if header.magic != MAGIC:
            raise InvalidBatchError(
                f"record batch at position {pos} has magic {header.magic}; only magic 2 "
                "(Kafka 0.11+ record batches) is supported"
            )
        if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
            raise InvalidBatchError(
                f"record batch at position {pos} declares length {header.batch_length}, "
                "smaller than its own header"
            )
        if pos + header.size > end:
            raise InvalidBatchError(
                f"record batch at position {pos} is truncated: needs {header.size} bytes, "
                f"{end - pos} remain"
            )
        yield pos, header
        pos += header.size


def compute_crc(buf: memoryview | bytes | bytearray, pos: int, header: BatchHeader) -> int:
    """The CRC32C the batch at ``pos`` should carry."""
    view = memoryview(buf)[pos + _CRC_START : pos + header.size]
    return int(crc32c.crc32c(view))


def verify_crc(buf: memoryview | bytes | bytearray, pos: int, header: BatchHeader) -> None:
    """Raise :class:`InvalidBatchError` unless the batch's stored CRC matches its bytes."""
    actual = compute_crc(buf, pos, header)
    if actual != header.crc:
        raise InvalidBatchError(
            f"record batch at position {pos} fails its CRC32C check "
            f"(stored {header.crc:#010x}, computed {actual:#010x})"
        )


def set_base_offset(buf: bytearray | memoryview, pos: int, base_offset: int) -> None:
    """Patch a batch's base offset in place (not covered by the CRC)."""
    _INT64.pack_into(buf, pos, base_offset)


def set_log_append_time(
    buf: bytearray | memoryview, pos: int, header: BatchHeader, timestamp_ms: int
) -> None:
    """Stamp LogAppendTime on a batch in place and recompute its CRC.

    Kafka marks the timestamp type in the attributes and puts the append time in
    the max timestamp; record timestamps are left as the producer wrote them.
    """
    _INT16.pack_into(buf, pos + 21, header.attributes | _TIMESTAMP_TYPE_BIT)
    _INT64.pack_into(buf, pos + 35, timestamp_ms)
    crc = int(crc32c.crc32c(memoryview(buf)[pos + _CRC_START : pos + header.size]))
    _UINT32.pack_into(buf, pos + 17, crc)
