"""read_produce_request: the same request kio reads, with record sets left in the frame."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.static.primitive import Records

from rivulet.protocol.errors import MalformedRequestError
from rivulet.protocol.messages import decode_request, encode_request, request_class
from rivulet.protocol.produce import ProduceRequest, read_produce_request

st.register_type_strategy(Records, st.binary(max_size=64).map(Records))

VERSIONS = range(3, 12)
_FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(frame: bytes | bytearray) -> ProduceRequest:
    body = decode_request(frame, read_produce_request).body
    assert isinstance(body, ProduceRequest)
    return body


def _as_kio_fields(request: ProduceRequest) -> dict[str, Any]:
    return {
        "transactional_id": request.transactional_id,
        "acks": request.acks,
        "timeout_ms": request.timeout_ms,
        "topic_data": [
            (
                t.name,
                [
                    (p.index, None if p.records is None else bytes(p.records))
                    for p in t.partition_data
                ],
            )
            for t in request.topic_data
        ],
    }


@pytest.mark.parametrize("version", VERSIONS)
@_FEW
@given(data=st.data())
def test_reads_what_kio_reads(version: int, data: st.DataObject) -> None:
    cls = request_class(0, version)
    assert cls is not None
    body = data.draw(st.from_type(cls))
    frame = encode_request(0, version, 7, "client", body)[4:]
    assert _as_kio_fields(_read(frame)) == {
        "transactional_id": body.transactional_id,
        "acks": body.acks,
        "timeout_ms": body.timeout // datetime.timedelta(milliseconds=1),
        "topic_data": [
            (t.name, [(p.index, p.records) for p in t.partition_data]) for t in body.topic_data
        ],
    }


def _frame(version: int, records: bytes | None) -> bytes:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout": 1500,
        "topic_data": [{"name": "orders", "partition_data": [{"index": 2, "records": records}]}],
    }
    return encode_request(0, version, 1, None, body)[4:]


@pytest.mark.parametrize("version", [8, 9])
def test_records_are_a_writable_view_into_a_bytearray_frame(version: int) -> None:
    frame = bytearray(_frame(version, b"batch bytes"))
    records = _read(frame).topic_data[0].partition_data[0].records
    assert records is not None
    assert records.obj is frame
    records[0:5] = b"BATCH"
    assert b"BATCH bytes" in frame


@pytest.mark.parametrize("version", [8, 9])
def test_null_records(version: int) -> None:
    assert _read(_frame(version, None)).topic_data[0].partition_data[0].records is None


@pytest.mark.parametrize("version", [8, 9])
@pytest.mark.parametrize("cut", [1, 3, 8, 15])
def test_truncated_requests_are_malformed(version: int, cut: int) -> None:
    with pytest.raises(MalformedRequestError):
        _read(_frame(version, b"0123456789")[:-cut])


def test_negative_lengths_are_malformed() -> None:
    frame = bytearray(_frame(8, b"0123456789"))
    frame[-14:-10] = b"\xff\xff\xff\xfe"  # the records' int32 length: -2
    with pytest.raises(MalformedRequestError):
        _read(frame)
