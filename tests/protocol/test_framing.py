"""FrameDecoder: frames come out whole whatever the split, bad prefixes are refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.protocol.errors import FrameTooLargeError, MalformedRequestError
from rivulet.protocol.framing import FrameDecoder, frame

payloads = st.lists(st.binary(max_size=300), max_size=8)


def test_frame_prefixes_length() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"


@given(payloads)
def test_byte_at_a_time(messages: list[bytes]) -> None:
    decoder = FrameDecoder(1024)
    stream = b"".join(frame(m) for m in messages)
    out: list[bytearray] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == messages
    assert decoder.buffered == 0


@given(payloads, st.data())
def test_any_split(messages: list[bytes], data: st.DataObject) -> None:
    decoder = FrameDecoder(1024)
    stream = b"".join(frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    out: list[bytearray] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(memoryview(stream)[start:cut])
        start = cut
    assert out == messages


def test_partial_frame_is_buffered() -> None:
    decoder = FrameDecoder(100)
    assert decoder.feed(b"\x00\x00\x00\x05ab") == []
    assert decoder.buffered == 6
    assert decoder.feed(b"cde\x00") == [b"abcde"]
    assert decoder.buffered == 1


def test_oversized_frame_refused_before_buffering() -> None:
    decoder = FrameDecoder(100)
    with pytest.raises(FrameTooLargeError, match=r"socket\.request\.max\.bytes"):
        decoder.feed(struct.pack(">i", 101))


def test_frame_at_limit_accepted() -> None:
    decoder = FrameDecoder(4)
    assert decoder.feed(frame(b"abcd")) == [b"abcd"]


def test_negative_size_refused() -> None:
    with pytest.raises(MalformedRequestError):
        FrameDecoder(100).feed(struct.pack(">i", -1))


def _receive(decoder: FrameDecoder, stream: bytes, sizes: list[int]) -> list[bytearray]:
    """Receive ``stream`` the way a socket's ``recv_into`` would, at most ``sizes[i]`` a read."""
    out: list[bytearray] = []
    pos = 0
    reads = iter(sizes)
    while pos < len(stream):
        target = decoder.get_buffer()
        assert len(target) > 0
        count = min(len(target), next(reads, len(stream)), len(stream) - pos)
        target[:count] = stream[pos : pos + count]
        pos += count
        out += decoder.buffer_updated(count)
    return out


large_payloads = st.lists(
    st.one_of(st.binary(max_size=300), st.integers(30_000, 300_000).map(lambda n: b"\x07" * n)),
    max_size=5,
)


@given(large_payloads, st.lists(st.integers(1, 400_000), max_size=30))
def test_receiving_in_place_any_split(messages: list[bytes], sizes: list[int]) -> None:
    decoder = FrameDecoder(1_000_000)
    stream = b"".join(frame(m) for m in messages)
    assert _receive(decoder, stream, sizes) == messages
    assert decoder.buffered == 0


def test_large_frame_is_received_where_it_is_returned() -> None:
    decoder = FrameDecoder(1_000_000)
    payload = bytes(range(256)) * 1000
    stream = frame(payload) + frame(b"next")
    assert _receive(decoder, stream[:1000], []) == []
    assert decoder.buffered == 1000
    target = decoder.get_buffer()
    # The rest of the frame goes straight into the buffer that will be returned.
    assert len(target) == len(payload) - 996
    own = target.obj
    target[:] = stream[1000 : 4 + len(payload)]
    del target
    (got,) = decoder.buffer_updated(len(payload) - 996)
    assert got is own
    assert got == payload
    assert _receive(decoder, stream[4 + len(payload) :], []) == [b"next"]


def test_frames_are_mutable_and_independent() -> None:
    decoder = FrameDecoder(100)
    first, second = decoder.feed(frame(b"abc") + frame(b"def"))
    first[0:1] = b"x"
    assert first == b"xbc"
    assert second == b"def"
    assert decoder.feed(frame(b"ghi")) == [b"ghi"]
    assert first == b"xbc"


def test_oversized_frame_refused_when_received_in_place() -> None:
    decoder = FrameDecoder(100)
    target = decoder.get_buffer()
    target[:4] = struct.pack(">i", 101)
    del target
    with pytest.raises(FrameTooLargeError):
        decoder.buffer_updated(4)


@given(st.lists(st.integers(1, 200_000), max_size=30))
def test_small_frames_filling_the_shared_buffer(sizes: list[int]) -> None:
    # Frames just below the in-place size pile up in the shared buffer, which
    # must make room by moving a partial frame to its front.
    messages = [bytes([i]) * (30_000 + i) for i in range(12)]
    decoder = FrameDecoder(1_000_000)
    assert _receive(decoder, b"".join(frame(m) for m in messages), sizes) == messages
