"""The request/response codec: round trips for every API version the broker advertises."""

from __future__ import annotations

import datetime
import struct
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records, i64Timedelta

from rivulet.broker.handlers import HANDLERS
from rivulet.protocol.errors import MalformedRequestError
from rivulet.protocol.messages import (
    RequestHeader,
    UnsupportedRequestError,
    build,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
    request_class,
    response_class,
)

# kio leaves the record-set type to the user; any bytes are a valid record set here.
st.register_type_strategy(Records, st.binary(max_size=64).map(Records))
# kio's own strategy draws int64 durations its native reader cannot turn back into
# the same timedelta (exact only below 2**53 microseconds, about 285 years; it
# overflows near 2**63). Clients send -1 or durations of days.
_I64_MS = 2**53 // 1000
st.register_type_strategy(
    i64Timedelta,
    st.integers(-_I64_MS, _I64_MS).map(
        lambda ms: i64Timedelta.parse(datetime.timedelta(milliseconds=ms))
    ),
)

ADVERTISED = sorted(
    (h.api_key, version) for h in HANDLERS for version in range(h.min_version, h.max_version + 1)
)
_FEW = settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _id(case: tuple[int, int]) -> str:
    return f"key{case[0]}-v{case[1]}"


@pytest.mark.parametrize("case", ADVERTISED, ids=_id)
@_FEW
@given(data=st.data(), correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_request_round_trip(
    case: tuple[int, int], data: st.DataObject, correlation_id: int
) -> None:
    api_key, version = case
    cls = request_class(api_key, version)
    assert cls is not None
    body = data.draw(st.from_type(cls))
    client_id = data.draw(st.none() | st.text(max_size=20))
    frame = encode_request(api_key, version, correlation_id, client_id, body)
    assert struct.unpack_from(">i", frame)[0] == len(frame) - 4
    request = decode_request(frame[4:])
    assert request.header == RequestHeader(api_key, version, correlation_id, client_id)
    assert request.body == body


@pytest.mark.parametrize("case", ADVERTISED, ids=_id)
@_FEW
@given(data=st.data(), correlation_id=st.integers(-(2**31), 2**31 - 1))
def test_response_round_trip(
    case: tuple[int, int], data: st.DataObject, correlation_id: int
) -> None:
    api_key, version = case
    body = data.draw(st.from_type(response_class(api_key, version)))
    header = RequestHeader(api_key, version, correlation_id, "client")
    frame = encode_response(header, body)
    assert struct.unpack_from(">i", frame)[0] == len(frame) - 4
    assert decode_response(api_key, version, frame[4:]) == (correlation_id, body)


def test_api_versions_response_header_is_never_flexible() -> None:
    # Clients read ApiVersions before they know our versions: header v0, even for v3.
    frame = encode_response(
        RequestHeader(18, 3, 7, None), {"error_code": 0, "api_keys": [], "throttle_time": 0}
    )
    assert frame[4:8] == struct.pack(">i", 7)
    assert frame[8] == 0  # error code's high byte, not a tagged-field count
    assert decode_response(18, 3, frame[4:])[1].error_code is ErrorCode.none


def test_unknown_version_reports_parsed_header() -> None:
    frame = struct.pack(">hhih", 18, 99, 42, 3) + b"cli"
    with pytest.raises(UnsupportedRequestError) as info:
        decode_request(frame)
    assert info.value.header == RequestHeader(18, 99, 42, "cli")


def test_unknown_api_key_reports_parsed_header() -> None:
    with pytest.raises(UnsupportedRequestError) as info:
        decode_request(struct.pack(">hhih", 9999, 0, 1, -1))
    assert info.value.header.api_key == 9999


def test_trailing_bytes_are_ignored_as_kafka_does() -> None:
    # librdkafka 2.x's Metadata v13 request for all topics, captured: its null
    # topics array takes four bytes instead of one.
    frame = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")
    request = decode_request(frame)
    assert request.header == RequestHeader(3, 13, 3, "rdkafka")
    assert request.body.topics is None


@pytest.mark.parametrize("cut", [1, 5, 9, 11])
def test_truncated_requests_are_malformed(cut: int) -> None:
    topics = [{"name": "t", "topic_id": uuid.UUID(int=0)}]
    body = {"topics": topics, "include_topic_authorized_operations": False}
    frame = encode_request(3, 12, 1, "client", body)[4:]
    with pytest.raises(MalformedRequestError):
        decode_request(frame[:-cut])


def test_build_converts_plain_values() -> None:
    cls = response_class(19, 5)
    body: Any = build(
        cls,
        {
            "throttle_time": 250,
            "topics": [
                {
                    "name": "t",
                    "error_code": 36,
                    "error_message": None,
                    # a nullable array of structs
                    "configs": [
                        {
                            "name": "retention.ms",
                            "value": "1",
                            "read_only": False,
                            "config_source": 1,
                            "is_sensitive": False,
                        }
                    ],
                }
            ],
            "not_a_field": "ignored",
        },
    )
    assert body.throttle_time == datetime.timedelta(milliseconds=250)
    assert body.topics[0].error_code is ErrorCode.topic_already_exists
    assert body.topics[0].configs[0].name == "retention.ms"
    frame = encode_response(RequestHeader(19, 5, 1, None), body)
    assert decode_response(19, 5, frame[4:])[1] == body


def test_build_names_missing_required_field() -> None:
    with pytest.raises(KeyError, match="api_keys"):
        build(response_class(18, 0), {"error_code": 0})


def test_negative_timestamps_become_null() -> None:
    cls = response_class(0, 9)
    body: Any = build(
        cls,
        {
            "responses": [
                {
                    "name": "t",
                    "partition_responses": [
                        {
                            "index": 0,
                            "error_code": 0,
                            "base_offset": 3,
                            "log_append_time": -1,
                            "record_errors": [],
                        }
                    ],
                }
            ],
            "throttle_time": 0,
        },
    )
    frame = encode_response(RequestHeader(0, 9, 1, None), body)
    decoded = decode_response(0, 9, frame[4:])[1]
    assert decoded.responses[0].partition_responses[0].log_append_time is None
