"""The records inside a record batch v2, sans I/O: decode them and build batches.

The broker's produce and fetch paths never come here (they work on headers, see
:mod:`rivulet.protocol.batch`). Records are decoded only where their contents
matter: log compaction (keys), ListOffsets by timestamp (record timestamps), the
broker's internal topics and tests.

After the 61-byte batch header come ``records count`` records, compressed as one
unit when the attributes name a codec (:mod:`rivulet.protocol.compression`).
Each record::

    length            varint   bytes of the record after this field
    attributes        int8     unused, 0
    timestamp delta   varlong  from the batch's base timestamp
    offset delta      varint   from the batch's base offset
    key length        varint   -1 for a null key
    key               bytes
    value length      varint   -1 for a null value (a tombstone)
    value             bytes
    headers count     varint
    headers           count x (key length varint, key UTF-8, value length varint
                      (-1 null), value)

Varints are zigzag-encoded base-128 varints, least significant group first.
With LogAppendTime (attributes bit 3) every record's timestamp is the batch's
max timestamp, whatever its delta says.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import crc32c

from rivulet.protocol.batch import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    Compression,
    iter_batches,
    read_header,
    verify_crc,
)
from rivulet.protocol.compression import compress, decompress
from rivulet.protocol.errors import InvalidBatchError

__all__ = [
    "DecodedBatch",
    "Record",
    "build_batch",
    "decode_batch",
    "decode_varint",
    "encode_batch",
    "encode_varint",
    "find_timestamp",
    "iter_decoded",
]

_HEADER = struct.Struct(">qiibIhiqqqhii")
_TIMESTAMP_TYPE_BIT = 0x08
_TRANSACTIONAL_BIT = 0x10
_CONTROL_BIT = 0x20
_CRC_START = 21

Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class Record:
    """One record as a batch stores it: deltas relative to the batch header."""

    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[Header, ...] = ()
    timestamp_delta: int = 0
    offset_delta: int = 0


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch header with its decoded records."""

    header: BatchHeader
    records: tuple[Record, ...]

    def offset(self, record: Record) -> int:
        """The absolute offset of one of this batch's records."""
        return self.header.base_offset + record.offset_delta

    def timestamp(self, record: Record) -> int:
        """The timestamp a consumer sees for one of this batch's records."""
        if self.header.log_append_time:
            return self.header.max_timestamp
        return self.header.base_timestamp + record.timestamp_delta


# -- varints -----------------------------------------------------------------


def encode_varint(value: int, out: bytearray) -> None:
    """Append ``value`` (a signed 64-bit integer) as a zigzag varint."""
    zigzag = ((value << 1) ^ (value >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def decode_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read a zigzag varint at ``pos``; return ``(value, position after it)``."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise InvalidBatchError("record data ends inside a varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise InvalidBatchError("record varint is longer than 10 bytes")


# -- decoding ----------------------------------------------------------------


def _read_bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buf, pos)
    if length < 0:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise InvalidBatchError("record field overruns its record")
    return buf[pos:end], end


def _decode_record(buf: bytes, pos: int) -> tuple[Record, int]:
    length, pos = decode_varint(buf, pos)
    end = pos + length
    if length < 1 or end > len(buf):
        raise InvalidBatchError(f"record declares length {length}; {len(buf) - pos} bytes remain")
    pos += 1  # attributes: unused by every record format Kafka has shipped
    timestamp_delta, pos = decode_varint(buf, pos)
    offset_delta, pos = decode_varint(buf, pos)
    key, pos = _read_bytes(buf, pos)
    value, pos = _read_bytes(buf, pos)
    count, pos = decode_varint(buf, pos)
    headers: list[Header] = []
    for _ in range(count):
        raw_key, pos = _read_bytes(buf, pos)
        if raw_key is None:
            raise InvalidBatchError("record header has a null key")
        try:
            header_key = raw_key.decode()
        except UnicodeDecodeError as exc:
            raise InvalidBatchError("record header key is not UTF-8") from exc
        header_value, pos = _read_bytes(buf, pos)
        headers.append((header_key, header_value))
    if pos != end:
        raise InvalidBatchError(f"record declares length {length} but its fields differ")
    return Record(key, value, tuple(headers), timestamp_delta, offset_delta), end


def decode_batch(
    buf: bytes | bytearray | memoryview, pos: int = 0, *, verify: bool = True
) -> DecodedBatch:
    """Decode the batch at ``pos``, decompressing its records if needed.

    Raises :class:`InvalidBatchError` for a bad CRC (unless ``verify`` is false),
    an unknown codec or records that do not parse.
    """
    header = read_header(buf, pos)
    if header.magic != MAGIC:
        raise InvalidBatchError(f"record batch has magic {header.magic}; only 2 is supported")
    if len(buf) - pos < header.size:
        raise InvalidBatchError(
            f"record batch is truncated: needs {header.size} bytes, {len(buf) - pos} remain"
        )
    if verify:
        verify_crc(buf, pos, header)
    try:
        codec = header.compression
    except ValueError as exc:
        raise InvalidBatchError(
            f"record batch names compression codec {header.attributes & 0x07}, which Kafka "
            "does not define"
        ) from exc
    body = decompress(codec, memoryview(buf)[pos + HEADER_SIZE : pos + header.size])
    records: list[Record] = []
    at = 0
    for _ in range(header.records_count):
        record, at = _decode_record(body, at)
        records.append(record)
    if at != len(body):
        raise InvalidBatchError(
            f"record batch holds {len(body) - at} bytes after its {header.records_count} records"
        )
    return DecodedBatch(header, tuple(records))


def iter_decoded(
    buf: bytes | bytearray | memoryview, *, verify: bool = True
) -> Iterator[DecodedBatch]:
    """Decode every batch in ``buf`` (for example, the bytes of a log read)."""
    for pos, _ in iter_batches(buf):
        yield decode_batch(buf, pos, verify=verify)


# -- encoding ----------------------------------------------------------------


def _write_bytes(value: bytes | None, out: bytearray) -> None:
    if value is None:
        encode_varint(-1, out)
    else:
        encode_varint(len(value), out)
        out += value


def _encode_record(record: Record, out: bytearray) -> None:
    body = bytearray(b"\x00")
    encode_varint(record.timestamp_delta, body)
    encode_varint(record.offset_delta, body)
    _write_bytes(record.key, body)
    _write_bytes(record.value, body)
    encode_varint(len(record.headers), body)
    for header_key, header_value in record.headers:
        _write_bytes(header_key.encode(), body)
        _write_bytes(header_value, body)
    encode_varint(len(body), out)
    out += body


def encode_batch(
    records: Sequence[Record],
    *,
    base_offset: int = 0,
    base_timestamp: int = 0,
    max_timestamp: int | None = None,
    last_offset_delta: int | None = None,
    compression: Compression = Compression.NONE,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = -1,
    transactional: bool = False,
    control: bool = False,
    log_append_time: bool = False,
) -> bytes:
    """Build one v2 batch holding ``records`` (their deltas kept as given).

    ``max_timestamp`` defaults to the largest record timestamp and
    ``last_offset_delta`` to the largest offset delta; a batch with no records
    must be given its ``last_offset_delta`` (compaction keeps such empty batches
    to remember a producer's last sequence).
    """
    if last_offset_delta is None:
        if not records:
            raise ValueError("an empty batch needs an explicit last_offset_delta")
        last_offset_delta = max(r.offset_delta for r in records)
    if max_timestamp is None:
        max_timestamp = base_timestamp + max((r.timestamp_delta for r in records), default=0)
    body = bytearray()
    for record in records:
        _encode_record(record, body)
    payload = compress(compression, body)
    attributes = int(compression)
    if log_append_time:
        attributes |= _TIMESTAMP_TYPE_BIT
    if transactional:
        attributes |= _TRANSACTIONAL_BIT
    if control:
        attributes |= _CONTROL_BIT
    out = bytearray(HEADER_SIZE)
    _HEADER.pack_into(
        out,
        0,
        base_offset,
        HEADER_SIZE - LOG_OVERHEAD + len(payload),
        partition_leader_epoch,
        MAGIC,
        0,
        attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        len(records),
    )
    out += payload
    struct.pack_into(">I", out, 17, crc32c.crc32c(memoryview(out)[_CRC_START:]))
    return bytes(out)


def build_batch(
    items: Iterable[tuple[bytes | None, bytes | None]],
    *,
    timestamp_ms: int = 0,
    headers: tuple[Header, ...] = (),
    compression: Compression = Compression.NONE,
) -> bytes:
    """A batch of ``(key, value)`` records, all at ``timestamp_ms``, offsets from 0.

    >>> from rivulet.protocol.batch import read_header
    >>> read_header(build_batch([(b"k", b"v"), (None, b"w")], timestamp_ms=5)).records_count
    2
    """
    records = [
        Record(key=key, value=value, headers=headers, offset_delta=i)
        for i, (key, value) in enumerate(items)
    ]
    return encode_batch(records, base_timestamp=timestamp_ms, compression=compression)


def find_timestamp(
    buf: bytes | bytearray | memoryview, pos: int, timestamp_ms: int, *, min_offset: int
) -> tuple[int, int] | None:
    """The first record of the batch at ``pos`` with timestamp >= ``timestamp_ms``.

    Records below ``min_offset`` (the log start offset) are skipped. Returns
    ``(offset, timestamp)`` or ``None``. ListOffsets answers with this: Kafka looks
    up record timestamps, not just the batch's max timestamp.
    """
    header = read_header(buf, pos)
    if header.max_timestamp < timestamp_ms or header.last_offset < min_offset:
        return None
    if header.log_append_time:
        # Every record carries the batch's append time: no need to decode them.
        return max(header.base_offset, min_offset), header.max_timestamp
    batch = decode_batch(buf, pos, verify=False)
    for record in batch.records:
        offset = batch.offset(record)
        timestamp = batch.timestamp(record)
        if offset >= min_offset and timestamp >= timestamp_ms:
            return offset, timestamp
    return None
