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
    out: list[bytes] = []
    for i in range(len(stream)):
        out += decoder.feed(stream[i : i + 1])
    assert out == messages
    assert decoder.buffered == 0


@given(payloads, st.data())
def test_any_split(messages: list[bytes], data: st.DataObject) -> None:
    decoder = FrameDecoder(1024)
    stream = b"".join(frame(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    out: list[bytes] = []
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
