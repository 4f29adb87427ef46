"""Records inside v2 batches: varints, golden bytes, round trips, interop, errors.

aiokafka's record batch builder and reader are an independent implementation of
the same format, so they serve as the second opinion: its bytes decode to the
same records, and ours pass its CRC check and decode to ours.
"""

from __future__ import annotations

import struct

import crc32c
import pytest
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.protocol.batch import Compression, read_header, set_base_offset, verify_crc
from rivulet.protocol.errors import InvalidBatchError
from rivulet.protocol.records import (
    Record,
    build_batch,
    decode_batch,
    decode_varint,
    encode_batch,
    encode_varint,
    find_timestamp,
    iter_decoded,
)

# Two records, the first with a header, as aiokafka 0.14's DefaultRecordBatchBuilder
# writes them (base timestamp 1700000000000 = 0x18bcfe56800).
GOLDEN = bytes.fromhex(
    "0000000000000000"  # base offset
    "0000004b"  # batch length 75
    "ffffffff"  # partition leader epoch -1
    "02"  # magic
    "c83cd606"  # CRC32C
    "0000"  # attributes
    "00000001"  # last offset delta
    "0000018bcfe56800"  # base timestamp
    "0000018bcfe56805"  # max timestamp
    "ffffffffffffffff"  # producer id
    "ffff"  # producer epoch
    "ffffffff"  # base sequence
    "00000002"  # records count
    "18"  # length 12
    "00"  # attributes
    "00"  # timestamp delta 0
    "00"  # offset delta 0
    "026b"  # key length 1, "k"
    "0276"  # value length 1, "v"
    "02"  # one header
    "0268"  # header key "h"
    "0278"  # header value "x"
    "18"  # length 12
    "00"  # attributes
    "0a"  # timestamp delta 5
    "02"  # offset delta 1
    "01"  # key length -1 (null)
    "0c76616c756532"  # value "value2"
    "00"  # no headers
)
GOLDEN_RECORDS = (
    Record(key=b"k", value=b"v", headers=(("h", b"x"),)),
    Record(key=None, value=b"value2", timestamp_delta=5, offset_delta=1),
)
BASE_TS = 1_700_000_000_000


def test_golden_batch_decodes() -> None:
    header = read_header(GOLDEN)
    assert header.crc == crc32c.crc32c(GOLDEN[21:])
    verify_crc(GOLDEN, 0, header)
    decoded = decode_batch(GOLDEN)
    assert decoded.records == GOLDEN_RECORDS
    assert [decoded.timestamp(r) for r in decoded.records] == [BASE_TS, BASE_TS + 5]
    assert [decoded.offset(r) for r in decoded.records] == [0, 1]


def test_golden_batch_encodes_byte_for_byte() -> None:
    assert encode_batch(GOLDEN_RECORDS, base_timestamp=BASE_TS) == GOLDEN


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (63, "7e"),
        (-64, "7f"),
        (64, "8001"),
        (300, "d804"),
        (2**31 - 1, "feffffff0f"),
        (-(2**63), "ffffffffffffffffff01"),
    ],
)
def test_varints_match_the_zigzag_spec(value: int, encoded: str) -> None:
    out = bytearray()
    encode_varint(value, out)
    assert out.hex() == encoded
    assert decode_varint(bytes(out), 0) == (value, len(out))


@given(st.integers(-(2**63), 2**63 - 1))
def test_varint_round_trip(value: int) -> None:
    out = bytearray(b"\xaa")
    encode_varint(value, out)
    assert decode_varint(memoryview(bytes(out)), 1) == (value, len(out))


def test_varint_errors() -> None:
    with pytest.raises(InvalidBatchError, match="ends inside"):
        decode_varint(b"\x80\x80", 0)
    with pytest.raises(InvalidBatchError, match="longer than 10"):
        decode_varint(b"\xff" * 11, 0)


maybe_bytes = st.none() | st.binary(max_size=30)
headers = st.lists(st.tuples(st.text(max_size=8), maybe_bytes), max_size=3).map(tuple)


@st.composite
def record_lists(draw: st.DrawFn) -> list[Record]:
    count = draw(st.integers(1, 8))
    gaps = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    offsets = [sum(gaps[:i]) for i in range(count)]  # increasing, as after compaction
    return [
        Record(
            key=draw(maybe_bytes),
            value=draw(maybe_bytes),
            headers=draw(headers),
            timestamp_delta=draw(st.integers(-1000, 10**6)),
            offset_delta=offset,
        )
        for offset in offsets
    ]


batch_fields = st.fixed_dictionaries(
    {
        "base_offset": st.integers(0, 2**40),
        "base_timestamp": st.integers(0, 2**42),
        "producer_id": st.integers(-1, 2**40),
        "producer_epoch": st.integers(-1, 2**15 - 1),
        "base_sequence": st.integers(-1, 2**31 - 1),
        "partition_leader_epoch": st.integers(-1, 100),
        "transactional": st.booleans(),
    }
)


@settings(max_examples=80, deadline=None)
@given(
    records=record_lists(),
    fields=batch_fields,
    codec=st.sampled_from(list(Compression)),
    prefix=st.binary(max_size=5),
)
def test_encode_decode_round_trip(
    records: list[Record], fields: dict[str, int], codec: Compression, prefix: bytes
) -> None:
    encoded = encode_batch(records, compression=codec, **fields)  # type: ignore[arg-type]
    header = read_header(encoded)
    assert header.size == len(encoded)
    assert header.records_count == len(records)
    assert header.compression is codec
    assert header.last_offset_delta == records[-1].offset_delta
    assert header.max_timestamp == fields["base_timestamp"] + max(
        r.timestamp_delta for r in records
    )
    assert header.base_offset == fields["base_offset"]
    assert header.producer_id == fields["producer_id"]
    assert header.is_transactional == fields["transactional"]
    # Decoding works from any position in a larger buffer.
    decoded = decode_batch(memoryview(prefix + encoded), len(prefix))
    assert list(decoded.records) == records
    assert decoded.header == header


@settings(max_examples=40, deadline=None)
@given(records=record_lists(), codec=st.sampled_from(list(Compression)), data=st.data())
def test_crc_covers_every_byte_after_it_but_not_the_base_offset(
    records: list[Record], codec: Compression, data: st.DataObject
) -> None:
    encoded = bytearray(encode_batch(records, compression=codec))
    set_base_offset(encoded, 0, data.draw(st.integers(0, 2**62)))
    decode_batch(encoded)  # still valid: the base offset is outside the CRC
    position = data.draw(st.integers(21, len(encoded) - 1))
    encoded[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(InvalidBatchError, match="CRC32C"):
        decode_batch(encoded)


@settings(max_examples=40, deadline=None)
@given(records=record_lists(), codec=st.sampled_from(list(Compression)))
def test_aiokafka_reads_what_we_write(records: list[Record], codec: Compression) -> None:
    encoded = encode_batch(records, base_offset=100, base_timestamp=BASE_TS, compression=codec)
    theirs = DefaultRecordBatch(encoded)
    assert theirs.validate_crc()
    assert theirs.compression_type == int(codec)
    got = [(r.offset, r.timestamp, r.key, r.value, list(r.headers)) for r in theirs]
    assert got == [
        (100 + r.offset_delta, BASE_TS + r.timestamp_delta, r.key, r.value, list(r.headers))
        for r in records
    ]


@settings(max_examples=40, deadline=None)
@given(
    items=st.lists(st.tuples(maybe_bytes, maybe_bytes, headers), min_size=1, max_size=8),
    codec=st.sampled_from(list(Compression)),
)
def test_we_read_what_aiokafka_writes(
    items: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes | None], ...]]],
    codec: Compression,
) -> None:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i, (key, value, hdrs) in enumerate(items):
        assert builder.append(i, timestamp=BASE_TS + i, key=key, value=value, headers=list(hdrs))
    decoded = decode_batch(bytes(builder.build()))
    assert decoded.header.compression is codec
    assert [
        (decoded.offset(r), decoded.timestamp(r), r.key, r.value, r.headers)
        for r in decoded.records
    ] == [(i, BASE_TS + i, key, value, hdrs) for i, (key, value, hdrs) in enumerate(items)]


def test_log_append_time_overrides_record_timestamps() -> None:
    encoded = encode_batch(
        [Record(value=b"a"), Record(value=b"b", offset_delta=1, timestamp_delta=3)],
        base_timestamp=10,
        max_timestamp=999,
        log_append_time=True,
    )
    decoded = decode_batch(encoded)
    assert decoded.header.log_append_time
    assert [decoded.timestamp(r) for r in decoded.records] == [999, 999]
    assert find_timestamp(encoded, 0, 500, min_offset=0) == (0, 999)
    assert find_timestamp(encoded, 0, 500, min_offset=1) == (1, 999)
    assert find_timestamp(encoded, 0, 1000, min_offset=0) is None


def test_find_timestamp_uses_record_timestamps() -> None:
    encoded = encode_batch(
        [
            Record(value=b"%d" % i, offset_delta=i, timestamp_delta=t)
            for i, t in enumerate([5, 1, 9])
        ],
        base_offset=40,
        base_timestamp=100,
    )
    assert find_timestamp(encoded, 0, 0, min_offset=0) == (40, 105)
    assert find_timestamp(encoded, 0, 106, min_offset=0) == (42, 109)
    assert find_timestamp(encoded, 0, 101, min_offset=41) == (41, 101)
    assert find_timestamp(encoded, 0, 110, min_offset=0) is None
    assert find_timestamp(encoded, 0, 0, min_offset=43) is None


def test_empty_batches_keep_their_offset_span() -> None:
    encoded = encode_batch(
        [], last_offset_delta=4, producer_id=7, base_sequence=10, max_timestamp=3
    )
    decoded = decode_batch(encoded)
    assert decoded.records == ()
    assert (decoded.header.last_offset_delta, decoded.header.last_sequence) == (4, 14)
    with pytest.raises(ValueError, match="last_offset_delta"):
        encode_batch([])


def test_build_batch_and_iter_decoded() -> None:
    data = build_batch([(b"k", b"v"), (None, None)], timestamp_ms=7) + build_batch(
        [(b"x", b"y")], headers=(("h", None),), compression=Compression.GZIP
    )
    batches = list(iter_decoded(data))
    assert [r.key for b in batches for r in b.records] == [b"k", None, b"x"]
    assert batches[0].records[1].value is None
    assert batches[1].records[0].headers == (("h", None),)
    assert batches[0].timestamp(batches[0].records[1]) == 7


def _with_body(body: bytes, *, count: int, attributes: int = 0) -> bytes:
    """A batch around a hand-made records section, with a correct CRC."""
    out = bytearray(encode_batch([Record()]))[:61]
    struct.pack_into(">i", out, 8, 49 + len(body))
    struct.pack_into(">h", out, 21, attributes)
    struct.pack_into(">i", out, 57, count)
    out += body
    struct.pack_into(">I", out, 17, crc32c.crc32c(bytes(out[21:])))
    return bytes(out)


@pytest.mark.parametrize(
    ("body", "count", "attributes", "message"),
    [
        (b"", 1, 0, "ends inside a varint"),
        (b"\x0a\x00\x00", 1, 0, "declares length 5"),
        (b"\x02\x00", 1, 0, "ends inside a varint"),
        (b"\x0c\x00\x00\x00\x10ab", 1, 0, "overruns"),
        (b"\x0a\x00\x00\x00\x01\x01\x00\x00", 1, 0, "fields differ"),
        (b"\x0e\x00\x00\x00\x01\x01\x02\x01\x00", 1, 0, "null key"),
        (b"\x0e\x00\x00\x00\x01\x01\x02\x02\xff\x01", 1, 0, "not UTF-8"),
        (b"\x0c\x00\x00\x00\x01\x01\x00\xff", 1, 0, "after its 1 records"),
        (b"\x08\x00\x00\x00\x01\x01\x00", 1, 6, "codec 6"),
        (b"\x08\x00\x00\x00\x01\x01\x00", 1, 1, "gzip"),
    ],
)
def test_malformed_records_are_invalid_batches(
    body: bytes, count: int, attributes: int, message: str
) -> None:
    with pytest.raises(InvalidBatchError, match=message):
        decode_batch(_with_body(body, count=count, attributes=attributes))


def test_truncated_and_wrong_magic_batches() -> None:
    with pytest.raises(InvalidBatchError, match="truncated"):
        decode_batch(GOLDEN[:-1])
    wrong = bytearray(GOLDEN)
    wrong[16] = 1
    with pytest.raises(InvalidBatchError, match="magic 1"):
        decode_batch(wrong)
    # Without verification a bad CRC goes unnoticed (compaction re-reads its own data).
    flipped = bytearray(GOLDEN)
    flipped[-2] ^= 1
    assert decode_batch(flipped, verify=False).records[1].value == b"value3"
