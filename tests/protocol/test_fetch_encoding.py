"""The zero-copy Fetch response encoder agrees with kio's decoder for every version."""

from __future__ import annotations

import datetime
import struct
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.protocol.fetch import (
    MAX_VERSION,
    MIN_VERSION,
    FetchPartition,
    FetchTopic,
    encode_fetch_response,
)
from rivulet.protocol.messages import decode_response

int64 = st.integers(-(2**63), 2**63 - 1)


class Chunk:
    """An opaque chunk, as a file region would be: the encoder must pass it through."""

    def __init__(self, data: bytes) -> None:
        self.data = data


@st.composite
def partitions(draw: st.DrawFn) -> tuple[FetchPartition[Chunk], list[bytes]]:
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=3))
    aborted = draw(st.none() | st.lists(st.tuples(int64, int64), max_size=3))
    partition = FetchPartition(
        partition_index=draw(st.integers(0, 2**31 - 1)),
        error_code=draw(st.sampled_from([0, 1, 3])),
        high_watermark=draw(int64),
        last_stable_offset=draw(int64),
        log_start_offset=draw(int64),
        aborted_transactions=aborted,
        preferred_read_replica=draw(st.integers(-1, 5)),
        records=[Chunk(p) for p in pieces],
        records_size=sum(map(len, pieces)),
    )
    return partition, pieces


@st.composite
def topics(draw: st.DrawFn) -> list[tuple[FetchTopic[Chunk], list[list[bytes]]]]:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        parts = draw(st.lists(partitions(), max_size=3))
        topic = FetchTopic(
            name=draw(st.text(min_size=1, max_size=10)),
            topic_id=uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
            partitions=[p for p, _ in parts],
        )
        out.append((topic, [pieces for _, pieces in parts]))
    return out


@pytest.mark.parametrize("version", range(MIN_VERSION, MAX_VERSION + 1))
@settings(max_examples=25, deadline=None)
@given(
    data=topics(),
    correlation_id=st.integers(-(2**31), 2**31 - 1),
    throttle=st.integers(0, 2**31 - 1),
    error=st.sampled_from([0, 70]),
)
def test_matches_kio(
    version: int,
    data: list[tuple[FetchTopic[Chunk], list[list[bytes]]]],
    correlation_id: int,
    throttle: int,
    error: int,
) -> None:
    fetch_topics = [t for t, _ in data]
    pieces = encode_fetch_response(
        version, correlation_id, fetch_topics, throttle_time_ms=throttle, error_code=error
    )
    # Chunks come back as the very objects given, in order, never copied.
    given_chunks = [c for t in fetch_topics for p in t.partitions for c in p.records]
    assert [p for p in pieces if isinstance(p, Chunk)] == given_chunks
    wire = b"".join(p.data if isinstance(p, Chunk) else p for p in pieces)
    assert struct.unpack_from(">i", wire)[0] == len(wire) - 4

    got_id, body = decode_response(1, version, wire[4:])
    assert got_id == correlation_id
    assert body.throttle_time == datetime.timedelta(milliseconds=throttle)
    if version >= 7:
        assert body.error_code == error
        assert body.session_id == 0
    assert len(body.responses) == len(data)
    for response, (topic, records) in zip(body.responses, data, strict=True):
        if version >= 13:
            # kio reads the all-zero id as null, as Kafka means it
            assert response.topic_id == (topic.topic_id if topic.topic_id.int else None)
        else:
            assert response.topic == topic.name
        for got, want, want_records in zip(
            response.partitions, topic.partitions, records, strict=True
        ):
            assert got.partition_index == want.partition_index
            assert got.error_code == want.error_code
            assert got.high_watermark == want.high_watermark
            assert got.last_stable_offset == want.last_stable_offset
            if version >= 5:
                assert got.log_start_offset == want.log_start_offset
            if version >= 11:
                assert got.preferred_read_replica == want.preferred_read_replica
            if want.aborted_transactions is None:
                assert got.aborted_transactions is None
            else:
                assert [(a.producer_id, a.first_offset) for a in got.aborted_transactions] == list(
                    want.aborted_transactions
                )
            assert got.records == b"".join(want_records)


def test_version_outside_range_refused() -> None:
    with pytest.raises(ValueError, match="not supported"):
        encode_fetch_response(3, 1, [])
