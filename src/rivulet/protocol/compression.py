"""Record batch compression codecs, sans I/O.

A compressed v2 batch compresses its records section (everything after the
61-byte header) as one unit, with the codec named in attributes bits 0-2. The
formats are the ones Kafka clients write:

* gzip: an RFC 1952 stream.
* snappy: Java clients write xerial's framing (the 8-byte magic ``\\x82SNAPPY\\x00``,
  two big-endian int32 versions, then blocks of a big-endian int32 length and a
  raw snappy block); librdkafka writes one raw snappy block. Both are read;
  xerial framing is written, since every client can read it.
* lz4: the LZ4 frame format (magic ``04 22 4d 18``) with independent blocks.
* zstd: a zstd frame.

The codecs themselves come from ``cramjam``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import cramjam

from rivulet.protocol.batch import Compression
from rivulet.protocol.errors import InvalidBatchError

__all__ = ["compress", "decompress"]

_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = struct.Struct(">8sii")
_XERIAL_VERSION = 1
_XERIAL_BLOCK = 32 * 1024  # the xerial library's default block size, as Java clients use
_INT32 = struct.Struct(">i")

Buffer = bytes | bytearray | memoryview


def _snappy_compress(data: Buffer) -> bytes:
    out = bytearray(_XERIAL_HEADER.pack(_XERIAL_MAGIC, _XERIAL_VERSION, _XERIAL_VERSION))
    view = memoryview(data)
    # At least one block: a bare header reads as raw snappy to some decoders.
    for start in range(0, max(len(view), 1), _XERIAL_BLOCK):
        block = bytes(cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK]))
        out += _INT32.pack(len(block))
        out += block
    return bytes(out)


def _snappy_decompress(data: Buffer) -> bytes:
    view = memoryview(data)
    if bytes(view[:8]) != _XERIAL_MAGIC:
        return bytes(cramjam.snappy.decompress_raw(view))
    out = bytearray()
    pos = _XERIAL_HEADER.size
    while pos < len(view):
        if pos + 4 > len(view):
            raise InvalidBatchError("xerial snappy data ends inside a block length")
        (length,) = _INT32.unpack_from(view, pos)
        pos += 4
        if length < 0 or pos + length > len(view):
            raise InvalidBatchError(f"xerial snappy block of {length} bytes overruns the data")
        out += cramjam.snappy.decompress_raw(view[pos : pos + length])
        pos += length
    return bytes(out)


_COMPRESS: dict[Compression, Callable[[Buffer], bytes]] = {
    Compression.GZIP: lambda d: bytes(cramjam.gzip.compress(d)),
    Compression.SNAPPY: _snappy_compress,
    Compression.LZ4: lambda d: bytes(cramjam.lz4.compress(d)),
    Compression.ZSTD: lambda d: bytes(cramjam.zstd.compress(d)),
}

_DECOMPRESS: dict[Compression, Callable[[Buffer], bytes]] = {
    Compression.GZIP: lambda d: bytes(cramjam.gzip.decompress(d)),
    Compression.SNAPPY: _snappy_decompress,
    Compression.LZ4: lambda d: bytes(cramjam.lz4.decompress(d)),
    Compression.ZSTD: lambda d: bytes(cramjam.zstd.decompress(d)),
}


def compress(codec: Compression, data: Buffer) -> bytes:
    """Compress a batch's records section with ``codec`` (``NONE`` returns a copy)."""
    if codec is Compression.NONE:
        return bytes(data)
    return _COMPRESS[codec](data)


def decompress(codec: Compression, data: Buffer) -> bytes:
    """Decompress a batch's records section.

    Raises :class:`InvalidBatchError` when the data is not valid for ``codec``.
    """
    if codec is Compression.NONE:
        return bytes(data)
    try:
        return _DECOMPRESS[codec](data)
    except InvalidBatchError:
        raise
    except Exception as exc:  # cramjam raises its own DecompressionError or ValueError
        raise InvalidBatchError(
            f"record batch data does not decompress as {codec.name.lower()}: {exc}"
        ) from exc
