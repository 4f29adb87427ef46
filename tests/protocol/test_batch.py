"""Record batch v2 header views: parsing, CRC checks, in-place patches."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.protocol.batch import (
    HEADER_SIZE,
    Compression,
    compute_crc,
    iter_batches,
    read_header,
    set_base_offset,
    set_log_append_time,
    verify_crc,
)
from rivulet.protocol.errors import InvalidBatchError
from rivulet.protocol.records import Record, build_batch, decode_batch, encode_batch

values = st.lists(st.binary(max_size=50), min_size=1, max_size=10)


@given(values, st.integers(0, 2**40))
def test_header_fields(vals: list[bytes], timestamp: int) -> None:
    data = build_batch([(None, v) for v in vals], timestamp_ms=timestamp)
    header = read_header(data)
    assert header.magic == 2
    assert header.size == len(data)
    assert header.records_count == len(vals)
    assert header.last_offset_delta == len(vals) - 1
    assert header.base_timestamp == timestamp
    assert header.compression is Compression.NONE
    assert not header.log_append_time
    verify_crc(data, 0, header)


@given(st.lists(values, min_size=1, max_size=5))
def test_iter_batches_walks_concatenated_batches(groups: list[list[bytes]]) -> None:
    batches = [build_batch([(None, v) for v in vals]) for vals in groups]
    stream = b"".join(batches)
    found = list(iter_batches(memoryview(stream)))
    assert [pos for pos, _ in found] == [sum(map(len, batches[:i])) for i in range(len(batches))]
    assert [h.records_count for _, h in found] == [len(g) for g in groups]


@given(values, st.data())
def test_any_flipped_byte_after_crc_is_detected(vals: list[bytes], data: st.DataObject) -> None:
    batch = bytearray(build_batch([(None, v) for v in vals]))
    index = data.draw(st.integers(21, len(batch) - 1))
    batch[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(InvalidBatchError, match="CRC32C"):
        verify_crc(batch, 0, read_header(batch))


def test_truncated_batch_rejected() -> None:
    batch = build_batch([(None, b"value")])
    with pytest.raises(InvalidBatchError, match="truncated"):
        list(iter_batches(batch[:-1]))
    with pytest.raises(InvalidBatchError, match="truncated"):
        read_header(batch[: HEADER_SIZE - 1])


def test_wrong_magic_rejected() -> None:
    batch = bytearray(build_batch([(None, b"value")]))
    batch[16] = 1
    with pytest.raises(InvalidBatchError, match="magic 1"):
        list(iter_batches(batch))


def test_length_smaller_than_header_rejected() -> None:
    batch = bytearray(build_batch([(None, b"value")]))
    batch[8:12] = (10).to_bytes(4, "big")
    with pytest.raises(InvalidBatchError, match="smaller than its own header"):
        list(iter_batches(batch))


@given(st.integers(0, 2**62))
def test_base_offset_patch_keeps_crc(offset: int) -> None:
    batch = bytearray(build_batch([(b"k", b"v")]))
    set_base_offset(batch, 0, offset)
    header = read_header(batch)
    assert header.base_offset == offset
    verify_crc(batch, 0, header)


def test_log_append_time_stamp_recomputes_crc() -> None:
    batch = bytearray(
        encode_batch([Record(value=b"a"), Record(value=b"b", offset_delta=1)], base_timestamp=5)
    )
    set_log_append_time(batch, 0, read_header(batch), 1_000)
    header = read_header(batch)
    assert header.log_append_time
    assert header.max_timestamp == 1_000
    assert compute_crc(batch, 0, header) == header.crc
    decoded = decode_batch(batch)
    assert [decoded.timestamp(r) for r in decoded.records] == [1_000, 1_000]


def test_last_sequence_wraps() -> None:
    batch = encode_batch(
        [Record(value=b"x", offset_delta=i) for i in range(3)], base_sequence=2**31 - 2
    )
    assert read_header(batch).last_sequence == 0
    assert read_header(build_batch([(None, b"x")])).last_sequence == -1
