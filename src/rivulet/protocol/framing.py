"""Size-prefixed Kafka frames, sans I/O.

Every Kafka request and response is a 4-byte big-endian length followed by that
many bytes. :class:`FrameDecoder` takes bytes as they arrive, in any split, and
returns whole frames; it enforces ``socket.request.max.bytes`` before buffering a
frame so a bad length prefix cannot make the broker allocate gigabytes.
"""

from __future__ import annotations

import struct

from rivulet.protocol.errors import FrameTooLargeError, MalformedRequestError

_SIZE = struct.Struct(">i")
SIZE_PREFIX = 4


class FrameDecoder:
    """Split a byte stream into frames. Feed bytes; collect frames."""

    __slots__ = ("_buffer", "_max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return every frame now complete, oldest first.

        Raises :class:`FrameTooLargeError` or :class:`MalformedRequestError` when a
        length prefix is out of bounds; the stream cannot be resynchronised after
        that, so the caller should close the connection.
        """
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        # Slicing a memory view copies a frame once; slicing the bytearray and
        # converting would copy it twice. The view must go before `del` resizes.
        with memoryview(buf) as view:
            while end - pos >= SIZE_PREFIX:
                (size,) = _SIZE.unpack_from(view, pos)
                if size < 0:
                    raise MalformedRequestError(f"negative frame size {size}")
                if size > self._max_frame_bytes:
                    raise FrameTooLargeError(
                        f"request of {size} bytes exceeds socket.request.max.bytes "
                        f"({self._max_frame_bytes})"
                    )
                if end - pos - SIZE_PREFIX < size:
                    break
                start = pos + SIZE_PREFIX
                frames.append(bytes(view[start : start + size]))
                pos = start + size
        if pos:
            del buf[:pos]
        return frames


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``payload`` with its length."""
    return _SIZE.pack(len(payload)) + bytes(payload)
