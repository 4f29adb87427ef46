"""Produce requests read without copying their record data.

kio decodes a Produce request's record sets into new ``bytes`` objects. The
broker only patches batch headers and writes the batches to the log, so a copy
of every produced byte (and the page faults of the fresh memory it lands in)
buys nothing: :func:`read_produce_request` gives each record set as a
:class:`memoryview` into the request frame instead, writable when the frame
is a ``bytearray``, so the log patches the batches where they arrived.

Produce v3 to v12 share one layout; v9 and later are flexible (compact
lengths, tagged fields)::

    ProduceRequest   transactional_id nullable string | acks int16 | timeout_ms int32
                     | topic_data [TopicProduceData]
    TopicProduceData name string | partition_data [PartitionProduceData]
    PartitionProduceData index int32 | records nullable bytes

Non-flexible versions prefix strings with an int16 length, arrays and bytes
with an int32 one (-1 for null); flexible versions use an unsigned varint of
length + 1 (0 for null) and end each structure with tagged fields, which are
skipped. Bytes after the body are ignored, as in
:func:`~rivulet.protocol.messages.decode_request`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rivulet.protocol.errors import MalformedRequestError
from rivulet.protocol.messages import read_uvarint, skip_tagged_fields

__all__ = [
    "FIRST_FLEXIBLE_VERSION",
    "PartitionProduceData",
    "ProduceRequest",
    "TopicProduceData",
    "read_produce_request",
]

FIRST_FLEXIBLE_VERSION = 9

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_ACKS_TIMEOUT = struct.Struct(">hi")

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class PartitionProduceData:
    """One partition's record set: a view into the request frame (``None`` if null)."""

    index: int
    records: memoryview | None


@dataclass(frozen=True, slots=True)
class TopicProduceData:
    name: str
    partition_data: tuple[PartitionProduceData, ...]


@dataclass(frozen=True, slots=True)
class ProduceRequest:
    """A Produce request body (the fields of kio's ``ProduceRequest``, timeout in ms)."""

    transactional_id: str | None
    acks: int
    timeout_ms: int
    topic_data: tuple[TopicProduceData, ...]


class _Reader:
    """A cursor over one frame; every read checks it stays inside the frame."""

    __slots__ = ("buf", "flexible", "pos", "view")

    def __init__(self, buf: Buffer, pos: int, *, flexible: bool) -> None:
        self.buf = buf
        self.view = memoryview(buf)
        self.pos = pos
        self.flexible = flexible

    def take(self, count: int) -> int:
        """Step over ``count`` bytes; return where they start."""
        start = self.pos
        end = start + count
        if end > len(self.buf):
            raise MalformedRequestError(
                f"produce request truncated: needs {count} bytes at position {start}, "
                f"the frame has {len(self.buf)}"
            )
        self.pos = end
        return start

    def _length(self, fixed: struct.Struct) -> int:
        """A length prefix; -1 means null."""
        if self.flexible:
            value, self.pos = read_uvarint(self.buf, self.pos)
            return value - 1
        (value,) = fixed.unpack_from(self.buf, self.take(fixed.size))
        if value < -1:
            raise MalformedRequestError(f"produce request has a negative length {value}")
        return int(value)

    def int32(self) -> int:
        return int(_INT32.unpack_from(self.buf, self.take(4))[0])

    def string(self) -> str | None:
        size = self._length(_INT16)
        if size < 0:
            return None
        start = self.take(size)
        try:
            return str(self.view[start : self.pos], "utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedRequestError("produce request has a string that is not UTF-8") from exc

    def records(self) -> memoryview | None:
        size = self._length(_INT32)
        if size < 0:
            return None
        start = self.take(size)
        return self.view[start : self.pos]

    def count(self) -> int:
        """An array's element count (a null array reads as empty)."""
        return max(self._length(_INT32), 0)

    def end_struct(self) -> None:
        if self.flexible:
            self.pos = skip_tagged_fields(self.buf, self.pos)


def read_produce_request(frame: Buffer, pos: int, api_version: int) -> ProduceRequest:
    """Read the Produce body starting at ``pos`` of ``frame`` (after the request header).

    Raises :class:`MalformedRequestError` when the bytes do not hold a whole body.
    A :data:`~rivulet.protocol.messages.BodyReader`.
    """
    reader = _Reader(frame, pos, flexible=api_version >= FIRST_FLEXIBLE_VERSION)
    transactional_id = reader.string()
    acks, timeout_ms = _ACKS_TIMEOUT.unpack_from(frame, reader.take(_ACKS_TIMEOUT.size))
    topics = []
    for _ in range(reader.count()):
        name = reader.string()
        if name is None:
            raise MalformedRequestError("produce request has a null topic name")
        partitions = []
        for _ in range(reader.count()):
            index = reader.int32()
            partitions.append(PartitionProduceData(index, reader.records()))
            reader.end_struct()
        reader.end_struct()
        topics.append(TopicProduceData(name, tuple(partitions)))
    reader.end_struct()
    return ProduceRequest(transactional_id, acks, timeout_ms, tuple(topics))
