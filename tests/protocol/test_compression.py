"""Record batch codecs: round trips, and the exact framings Kafka clients write.

aiokafka's codec functions serve as an independent implementation: what it
writes we must read, and what we write it must read.
"""

from __future__ import annotations

import struct

import cramjam
import pytest
from aiokafka import codec as aiokafka_codec
from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.protocol.batch import Compression
from rivulet.protocol.compression import compress, decompress
from rivulet.protocol.errors import InvalidBatchError

CODECS = list(Compression)
COMPRESSED = CODECS[1:]

payloads = st.binary(max_size=5000) | st.builds(
    lambda unit, n: unit * n, st.binary(min_size=1, max_size=20), st.integers(1, 4000)
)


@settings(max_examples=60, deadline=None)
@given(codec=st.sampled_from(CODECS), data=payloads)
def test_round_trip(codec: Compression, data: bytes) -> None:
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name.lower())
def test_accepts_memoryviews_and_compresses_repetitive_data(codec: Compression) -> None:
    data = b"order-placed " * 1000
    packed = compress(codec, memoryview(data))
    assert len(packed) < len(data) // 5
    assert decompress(codec, memoryview(bytearray(packed))) == data


def test_none_is_a_copy() -> None:
    assert compress(Compression.NONE, b"abc") == b"abc"
    assert decompress(Compression.NONE, memoryview(b"abc")) == b"abc"


def test_snappy_writes_xerial_framing_in_32k_blocks() -> None:
    data = bytes(range(256)) * 300  # 76 800 bytes: three blocks
    packed = compress(Compression.SNAPPY, data)
    assert packed[:16] == b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
    position, blocks = 16, []
    while position < len(packed):
        (length,) = struct.unpack_from(">i", packed, position)
        blocks.append(
            bytes(cramjam.snappy.decompress_raw(packed[position + 4 : position + 4 + length]))
        )
        position += 4 + length
    assert [len(b) for b in blocks] == [32768, 32768, 11264]
    assert b"".join(blocks) == data


def test_snappy_reads_raw_blocks_as_librdkafka_writes_them() -> None:
    data = b"librdkafka writes one raw snappy block " * 50
    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data


@settings(max_examples=30, deadline=None)
@given(data=payloads)
def test_snappy_interoperates_with_aiokafka_both_framings(data: bytes) -> None:
    for xerial in (True, False):
        theirs = aiokafka_codec.snappy_encode(data, xerial_compatible=xerial)
        assert decompress(Compression.SNAPPY, bytes(theirs)) == data
    assert aiokafka_codec.snappy_decode(compress(Compression.SNAPPY, data)) == data


@settings(max_examples=30, deadline=None)
@given(data=payloads)
def test_gzip_lz4_zstd_interoperate_with_aiokafka(data: bytes) -> None:
    pairs = [
        (Compression.GZIP, aiokafka_codec.gzip_encode, aiokafka_codec.gzip_decode),
        (Compression.LZ4, aiokafka_codec.lz4_encode, aiokafka_codec.lz4_decode),
        (Compression.ZSTD, aiokafka_codec.zstd_encode, aiokafka_codec.zstd_decode),
    ]
    for codec, encode, decode in pairs:
        assert decompress(codec, bytes(encode(data))) == data
        assert bytes(decode(compress(codec, data))) == data


def test_lz4_writes_the_frame_format() -> None:
    assert compress(Compression.LZ4, b"x" * 100)[:4] == b"\x04\x22\x4d\x18"


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name.lower())
def test_garbage_is_an_invalid_batch(codec: Compression) -> None:
    with pytest.raises(InvalidBatchError, match=codec.name.lower()):
        decompress(codec, b"\x82SNAPPZ\x00 definitely not compressed data")


def test_a_truncated_xerial_stream_is_an_invalid_batch() -> None:
    packed = compress(Compression.SNAPPY, b"a" * 1000)
    with pytest.raises(InvalidBatchError, match="overruns"):
        decompress(Compression.SNAPPY, packed[:-3])
    with pytest.raises(InvalidBatchError, match="block length"):
        decompress(Compression.SNAPPY, packed[:18])
