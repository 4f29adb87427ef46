"""The bytes of ``__consumer_offsets`` records, in Apache Kafka's own layout.

Keeping Kafka's format means a tool that reads Kafka's ``__consumer_offsets``
(e.g. ``kafka-console-consumer --formatter ...GroupMetadataMessageFormatter``)
reads ours. Keys and values start with an int16 version; strings are int16
length + UTF-8 (length -1: null), bytes are int32 length + data, arrays int32
count + elements. All big-endian. None of the versions written here is flexible.

Keys::

    version 0 or 1   offset commit    group string | topic string | partition int32
    version 2        group metadata   group string

Offset commit value (written: v3, or v1 when the commit carries its own expiry)::

    v0  offset int64 | metadata string | commit_timestamp int64
    v1  offset int64 | metadata string | commit_timestamp int64 | expire_timestamp int64
    v2  offset int64 | metadata string | commit_timestamp int64
    v3  offset int64 | leader_epoch int32 | metadata string | commit_timestamp int64

Group metadata value (written: v3)::

    protocol_type string | generation int32 | protocol nullable string |
    leader nullable string | current_state_timestamp int64 (v2+, -1: unknown) |
    members: array of
        member_id string | group_instance_id nullable string (v3+) | client_id string |
        client_host string | rebalance_timeout int32 (v1+) | session_timeout int32 |
        subscription bytes | assignment bytes

A null value is a tombstone. Keys of other record types (a future version's
consumer-group records, for instance) decode to ``None`` and are skipped.
"""

from __future__ import annotations

import struct

from rivulet.broker.coordinator.records import (
    CommittedOffset,
    GroupMetadataRecord,
    GroupMetadataValue,
    MemberMetadataValue,
    OffsetCommitRecord,
    Record,
)

__all__ = ["RecordFormatError", "decode_record", "encode_record"]

_OFFSET_KEY_VERSION = 1
_GROUP_KEY_VERSION = 2
_OFFSET_VALUE_VERSION = 3
_OFFSET_VALUE_WITH_EXPIRY = 1
_GROUP_VALUE_VERSION = 3

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A ``__consumer_offsets`` record whose bytes do not follow the format."""


class _Writer:
    def __init__(self, version: int) -> None:
        self.out = bytearray(_I16.pack(version))

    def i32(self, value: int) -> None:
        self.out += _I32.pack(value)

    def i64(self, value: int) -> None:
        self.out += _I64.pack(value)

    def string(self, value: str | None) -> None:
        if value is None:
            self.out += _I16.pack(-1)
            return
        raw = value.encode()
        self.out += _I16.pack(len(raw))
        self.out += raw

    def bytes_(self, value: bytes) -> None:
        self.out += _I32.pack(len(value))
        self.out += value


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self.data):
            raise RecordFormatError("record ends early")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def i16(self) -> int:
        (value,) = _I16.unpack(self._take(2))
        return int(value)

    def i32(self) -> int:
        (value,) = _I32.unpack(self._take(4))
        return int(value)

    def i64(self) -> int:
        (value,) = _I64.unpack(self._take(8))
        return int(value)

    def nullable_string(self) -> str | None:
        length = self.i16()
        if length < 0:
            return None
        try:
            return self._take(length).decode()
        except UnicodeDecodeError as exc:
            raise RecordFormatError("string is not UTF-8") from exc

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise RecordFormatError("a string that may not be null is null")
        return value

    def bytes_(self) -> bytes:
        length = self.i32()
        return b"" if length < 0 else self._take(length)


def encode_record(record: Record) -> tuple[bytes, bytes | None]:
    """The key and value (``None``: tombstone) that store ``record``."""
    if isinstance(record, OffsetCommitRecord):
        key = _Writer(_OFFSET_KEY_VERSION)
        key.string(record.group_id)
        key.string(record.topic)
        key.i32(record.partition)
        return bytes(key.out), None if record.value is None else _offset_value(record.value)
    key = _Writer(_GROUP_KEY_VERSION)
    key.string(record.group_id)
    return bytes(key.out), None if record.value is None else _group_value(record.value)


def _offset_value(value: CommittedOffset) -> bytes:
    if value.expire_timestamp_ms is not None:
        out = _Writer(_OFFSET_VALUE_WITH_EXPIRY)
        out.i64(value.offset)
        out.string(value.metadata)
        out.i64(value.commit_timestamp_ms)
        out.i64(value.expire_timestamp_ms)
        return bytes(out.out)
    out = _Writer(_OFFSET_VALUE_VERSION)
    out.i64(value.offset)
    out.i32(value.leader_epoch)
    out.string(value.metadata)
    out.i64(value.commit_timestamp_ms)
    return bytes(out.out)


def _group_value(value: GroupMetadataValue) -> bytes:
    out = _Writer(_GROUP_VALUE_VERSION)
    out.string(value.protocol_type or "")
    out.i32(value.generation_id)
    out.string(value.protocol_name)
    out.string(value.leader)
    out.i64(-1 if value.current_state_timestamp_ms is None else value.current_state_timestamp_ms)
    out.i32(len(value.members))
    for member in value.members:
        out.string(member.member_id)
        out.string(member.group_instance_id)
        out.string(member.client_id)
        out.string(member.client_host)
        out.i32(member.rebalance_timeout_ms)
        out.i32(member.session_timeout_ms)
        out.bytes_(member.subscription)
        out.bytes_(member.assignment)
    return bytes(out.out)


def decode_record(key: bytes, value: bytes | None) -> Record | None:
    """The record stored under ``key``/``value``; ``None`` for other record types.

    Raises :class:`RecordFormatError` when the bytes are not a valid record.
    """
    reader = _Reader(key)
    version = reader.i16()
    if version in (0, 1):
        group, topic, partition = reader.string(), reader.string(), reader.i32()
        committed = None if value is None else _read_offset_value(value)
        return OffsetCommitRecord(group, topic, partition, committed)
    if version == _GROUP_KEY_VERSION:
        group = reader.string()
        return GroupMetadataRecord(group, None if value is None else _read_group_value(value))
    return None


def _read_offset_value(data: bytes) -> CommittedOffset:
    reader = _Reader(data)
    version = reader.i16()
    if not 0 <= version <= _OFFSET_VALUE_VERSION:
        raise RecordFormatError(f"offset commit value version {version} is not supported")
    offset = reader.i64()
    leader_epoch = reader.i32() if version >= 3 else -1
    metadata = reader.string()
    commit_timestamp = reader.i64()
    expire = reader.i64() if version == 1 else -1
    return CommittedOffset(
        offset=offset,
        leader_epoch=leader_epoch,
        metadata=metadata,
        commit_timestamp_ms=commit_timestamp,
        expire_timestamp_ms=None if expire < 0 else expire,
    )


def _read_group_value(data: bytes) -> GroupMetadataValue:
    reader = _Reader(data)
    version = reader.i16()
    if not 0 <= version <= _GROUP_VALUE_VERSION:
        raise RecordFormatError(f"group metadata value version {version} is not supported")
    protocol_type = reader.string()
    generation = reader.i32()
    protocol = reader.nullable_string()
    leader = reader.nullable_string()
    state_timestamp = reader.i64() if version >= 2 else -1
    members = []
    for _ in range(reader.i32()):
        member_id = reader.string()
        instance_id = reader.nullable_string() if version >= 3 else None
        client_id = reader.string()
        client_host = reader.string()
        session_or_rebalance = reader.i32()
        if version >= 1:
            rebalance, session = session_or_rebalance, reader.i32()
        else:
            rebalance = session = session_or_rebalance
        members.append(
            MemberMetadataValue(
                member_id=member_id,
                group_instance_id=instance_id,
                client_id=client_id,
                client_host=client_host,
                rebalance_timeout_ms=rebalance,
                session_timeout_ms=session,
                subscription=reader.bytes_(),
                assignment=reader.bytes_(),
            )
        )
    return GroupMetadataValue(
        protocol_type=protocol_type or None,
        generation_id=generation,
        protocol_name=protocol,
        leader=leader,
        current_state_timestamp_ms=None if state_timestamp < 0 else state_timestamp,
        members=tuple(members),
    )
