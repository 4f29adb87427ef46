"""The __consumer_offsets record format: Kafka's bytes, round trips, older versions."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.broker.coordinator.log_format import RecordFormatError, decode_record, encode_record
from rivulet.broker.coordinator.records import (
    CommittedOffset,
    GroupMetadataRecord,
    GroupMetadataValue,
    MemberMetadataValue,
    OffsetCommitRecord,
    Record,
)


def string(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">h", -1)
    raw = value.encode()
    return struct.pack(">h", len(raw)) + raw


def test_offset_commit_bytes_match_kafkas_layout() -> None:
    record = OffsetCommitRecord("g", "orders", 3, CommittedOffset(42, 7, "meta", 1_000))
    key, value = encode_record(record)
    assert key == struct.pack(">h", 1) + string("g") + string("orders") + struct.pack(">i", 3)
    assert value == struct.pack(">hqi", 3, 42, 7) + string("meta") + struct.pack(">q", 1_000)


def test_an_offset_with_its_own_expiry_is_written_as_version_1() -> None:
    committed = CommittedOffset(42, 7, "", 1_000, expire_timestamp_ms=9_000)
    _, value = encode_record(OffsetCommitRecord("g", "t", 0, committed))
    assert value == struct.pack(">hq", 1, 42) + string("") + struct.pack(">qq", 1_000, 9_000)


def test_group_metadata_bytes_match_kafkas_layout() -> None:
    member = MemberMetadataValue("m-1", "i-1", "client", "/10.0.0.1", 30_000, 10_000, b"S", b"A")
    value = GroupMetadataValue("consumer", 5, "range", "m-1", 123, (member,))
    key, raw = encode_record(GroupMetadataRecord("g", value))
    assert key == struct.pack(">h", 2) + string("g")
    assert raw == (
        struct.pack(">h", 3)
        + string("consumer")
        + struct.pack(">i", 5)
        + string("range")
        + string("m-1")
        + struct.pack(">q", 123)
        + struct.pack(">i", 1)
        + string("m-1")
        + string("i-1")
        + string("client")
        + string("/10.0.0.1")
        + struct.pack(">ii", 30_000, 10_000)
        + struct.pack(">i", 1)
        + b"S"
        + struct.pack(">i", 1)
        + b"A"
    )


def test_tombstones_have_no_value() -> None:
    assert encode_record(OffsetCommitRecord("g", "t", 0, None))[1] is None
    key, value = encode_record(GroupMetadataRecord("g", None))
    assert value is None
    assert decode_record(key, None) == GroupMetadataRecord("g", None)


def test_older_value_versions_decode() -> None:
    key = struct.pack(">h", 0) + string("g") + string("t") + struct.pack(">i", 1)
    v0 = struct.pack(">hq", 0, 5) + string("x") + struct.pack(">q", 77)
    assert decode_record(key, v0) == OffsetCommitRecord(
        "g", "t", 1, CommittedOffset(5, -1, "x", 77)
    )
    group_key = struct.pack(">h", 2) + string("g")
    v0_group = (
        struct.pack(">h", 0)
        + string("consumer")
        + struct.pack(">i", 2)
        + string(None)
        + string(None)
        + struct.pack(">i", 1)
        + string("m")
        + string("c")
        + string("h")
        + struct.pack(">i", 6_000)
        + struct.pack(">i", 0)
        + struct.pack(">i", 0)
    )
    decoded = decode_record(group_key, v0_group)
    assert decoded == GroupMetadataRecord(
        "g",
        GroupMetadataValue(
            "consumer",
            2,
            None,
            None,
            None,
            (MemberMetadataValue("m", None, "c", "h", 6_000, 6_000, b"", b""),),
        ),
    )


def test_other_record_types_are_skipped_and_garbage_is_refused() -> None:
    assert decode_record(struct.pack(">h", 3) + string("g"), b"") is None
    with pytest.raises(RecordFormatError):
        decode_record(struct.pack(">h", 1) + string("g"), b"")
    key, _ = encode_record(OffsetCommitRecord("g", "t", 0, None))
    with pytest.raises(RecordFormatError, match="version 9"):
        decode_record(key, struct.pack(">h", 9))


names = st.text(max_size=20)
optional_names = st.none() | names
offsets = st.builds(
    CommittedOffset,
    offset=st.integers(-1, 2**63 - 1),
    leader_epoch=st.integers(-1, 2**31 - 1),
    metadata=names,
    commit_timestamp_ms=st.integers(0, 2**62),
    expire_timestamp_ms=st.none() | st.integers(0, 2**62),
)
members = st.builds(
    MemberMetadataValue,
    member_id=names,
    group_instance_id=optional_names,
    client_id=names,
    client_host=names,
    rebalance_timeout_ms=st.integers(0, 2**31 - 1),
    session_timeout_ms=st.integers(0, 2**31 - 1),
    subscription=st.binary(max_size=40),
    assignment=st.binary(max_size=40),
)
groups = st.builds(
    GroupMetadataValue,
    protocol_type=st.none() | names.filter(bool),
    generation_id=st.integers(0, 2**31 - 1),
    protocol_name=optional_names,
    leader=optional_names,
    current_state_timestamp_ms=st.none() | st.integers(0, 2**62),
    members=st.lists(members, max_size=3).map(tuple),
)
records = st.one_of(
    st.builds(
        OffsetCommitRecord,
        group_id=names,
        topic=names,
        partition=st.integers(0, 2**31 - 1),
        value=st.none() | offsets,
    ),
    st.builds(GroupMetadataRecord, group_id=names, value=st.none() | groups),
)


@given(records)
def test_every_record_round_trips(record: Record) -> None:
    key, value = encode_record(record)
    expected = record
    if (
        isinstance(record, OffsetCommitRecord)
        and record.value is not None
        and record.value.expire_timestamp_ms is not None
    ):
        # Version 1, the only one with an expiry, has no leader epoch.
        expected = replace(record, value=replace(record.value, leader_epoch=-1))
    assert decode_record(key, value) == expected
