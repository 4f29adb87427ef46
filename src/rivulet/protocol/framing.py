"""Size-prefixed Kafka frames, sans I/O.

Every Kafka request and response is a 4-byte big-endian length followed by that
many bytes. :class:`FrameDecoder` takes bytes as they arrive, in any split, and
returns whole frames; it enforces ``socket.request.max.bytes`` before buffering a
frame so a bad length prefix cannot make the broker allocate gigabytes.

The decoder owns the memory bytes are received into, so a socket can read
straight into it (``recv_into``, as :class:`asyncio.BufferedProtocol` does):
:meth:`FrameDecoder.get_buffer` says where the next bytes go and
:meth:`FrameDecoder.buffer_updated` how many arrived. Small frames share one
receive buffer and are copied out of it; a large frame (a produce request of
megabytes) gets a buffer of its own once its length is known, the socket fills
that directly, and it is handed over as is. Large frames are thus never copied
after the kernel's copy, which matters because copying fresh memory is as
expensive as the write that stores it.
"""

from __future__ import annotations

import struct

from rivulet.protocol.errors import FrameTooLargeError, MalformedRequestError

__all__ = ["SIZE_PREFIX", "FrameDecoder", "frame"]

_SIZE = struct.Struct(">i")
SIZE_PREFIX = 4

_RECEIVE_BUFFER_BYTES = 128 * 1024
"""The shared buffer: what one read may bring at most when no large frame is due."""
_OWN_BUFFER_BYTES = 32 * 1024
"""Frames at least this large are received into a buffer of their own."""


class FrameDecoder:
    """Split a byte stream into frames: receive into :meth:`get_buffer` (or :meth:`feed`).

    Frames come out as ``bytearray`` objects the caller owns: nothing else
    refers to them, so they may be changed in place.
    """

    __slots__ = ("_buf", "_end", "_frame", "_frame_filled", "_max_frame_bytes", "_start")

    def __init__(self, max_frame_bytes: int) -> None:
        self._max_frame_bytes = max_frame_bytes
        self._buf = bytearray(_RECEIVE_BUFFER_BYTES)
        self._start = 0  # unconsumed bytes are self._buf[self._start : self._end]
        self._end = 0
        self._frame: bytearray | None = None  # a large frame being received in place
        self._frame_filled = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        if self._frame is not None:
            return SIZE_PREFIX + self._frame_filled
        return self._end - self._start

    def get_buffer(self) -> memoryview:
        """Where the next received bytes should be written (never empty).

        Pass how many were written to :meth:`buffer_updated` before calling this again.
        """
        if self._frame is not None:
            return memoryview(self._frame)[self._frame_filled :]
        if self._end == len(self._buf):
            # Full: move the partial frame (smaller than _OWN_BUFFER_BYTES) to the front.
            pending = self._end - self._start
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        return memoryview(self._buf)[self._end :]

    def buffer_updated(self, nbytes: int) -> list[bytearray]:
        """``nbytes`` were written to the last :meth:`get_buffer`; return the frames completed.

        Raises :class:`FrameTooLargeError` or :class:`MalformedRequestError` when a
        length prefix is out of bounds; the stream cannot be resynchronised after
        that, so the caller should close the connection.
        """
        if self._frame is not None:
            self._frame_filled += nbytes
            if self._frame_filled < len(self._frame):
                return []
            done, self._frame = self._frame, None
            return [done]
        self._end += nbytes
        frames: list[bytearray] = []
        buf, pos, end = self._buf, self._start, self._end
        while end - pos >= SIZE_PREFIX:
            (size,) = _SIZE.unpack_from(buf, pos)
            if size < 0:
                raise MalformedRequestError(f"negative frame size {size}")
            if size > self._max_frame_bytes:
                raise FrameTooLargeError(
                    f"request of {size} bytes exceeds socket.request.max.bytes "
                    f"({self._max_frame_bytes})"
                )
            start = pos + SIZE_PREFIX
            have = end - start
            if have >= size:
                frames.append(buf[start : start + size])
                pos = start + size
            elif size >= _OWN_BUFFER_BYTES:
                own = bytearray(size)
                own[:have] = memoryview(buf)[start:end]
                self._frame, self._frame_filled = own, have
                pos = end
                break
            else:
                break
        if pos == end:
            pos = end = 0
        self._start, self._end = pos, end
        return frames

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytearray]:
        """Add received bytes; return every frame now complete, oldest first.

        The same as receiving ``data`` through :meth:`get_buffer`, for callers
        that already hold the bytes.
        """
        frames: list[bytearray] = []
        with memoryview(data) as view:
            fed = 0
            while fed < len(view):
                with self.get_buffer() as target:
                    count = min(len(target), len(view) - fed)
                    target[:count] = view[fed : fed + count]
                fed += count
                frames += self.buffer_updated(count)
        return frames


def frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``payload`` with its length."""
    return _SIZE.pack(len(payload)) + bytes(payload)
