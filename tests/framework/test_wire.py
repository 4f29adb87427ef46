"""The CloudEvents binary-mode codec and the JSON serializer."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.framework import Event
from rivulet.framework._errors import InvalidPayloadError, MalformedRecordError
from rivulet.framework._ids import TraceParent, parse_ce_time
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._wire import (
    ConsumedRecord,
    Headers,
    JsonSerializer,
    Serializer,
    decode_envelope,
)


class Line(Event):
    sku: str
    qty: int


class OrderPlaced(Event):
    order_id: str
    total: Decimal
    placed_at: datetime
    lines: list[Line]
    note: str | None = None
    score: float = 0.0


class Renamed(Event, event_type="shop.order-renamed.v2"):
    order_id: str


text = st.text(st.characters(codec="utf-8"), max_size=30)
ids = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
orders = st.builds(
    OrderPlaced,
    order_id=text,
    total=st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=10**9),
    placed_at=st.datetimes(timezones=st.just(UTC)),
    lines=st.lists(st.builds(Line, sku=text, qty=st.integers(-(2**63), 2**63 - 1)), max_size=4),
    note=st.none() | text,
    score=st.floats(allow_nan=False, allow_infinity=False),
)


def encoder(source: str, now_ms: int = 1_714_564_800_123) -> EventEncoder:
    return EventEncoder(
        source=source,
        serializers=[JsonSerializer()],
        clock_ms=lambda: now_ms,
        random_bits=random.Random(1).getrandbits,
    )


TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def consumed(record_headers: Headers, value: bytes | None) -> ConsumedRecord:
    return ConsumedRecord(
        topic="orders",
        partition=3,
        offset=42,
        timestamp_ms=1,
        key=b"k",
        value=value,
        headers=record_headers,
    )


@given(
    event=orders,
    source=text,
    event_id=st.none() | ids,
    correlation_id=st.none() | ids,
    causation_id=st.none() | ids,
    traceparent=st.none() | st.just(TRACE),
    key=st.none() | text | st.binary(max_size=8),
    now_ms=st.integers(0, 253402300799999),
)
def test_round_trip_through_a_kafka_record(
    event: OrderPlaced,
    source: str,
    event_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    traceparent: str | None,
    key: str | bytes | None,
    now_ms: int,
) -> None:
    built = encoder(source, now_ms).build(
        event,
        topic="orders",
        key=key,
        event_id=event_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        traceparent=traceparent,
    )
    record = built.record
    assert record.key == (key.encode() if isinstance(key, str) else key)
    decoded = decode_envelope(consumed(record.headers, record.value))
    assert decoded.id == built.event_id == (event_id or decoded.id)
    assert decoded.type == "OrderPlaced" == built.event_type
    assert decoded.source == source
    assert decoded.time is not None
    assert parse_ce_time(decoded.time) == now_ms
    assert decoded.content_type == "application/json"
    assert decoded.correlation_id == (correlation_id or built.event_id)
    assert decoded.causation_id == causation_id
    assert decoded.traceparent is not None
    assert TraceParent.parse(decoded.traceparent) is not None
    if traceparent is not None:
        assert decoded.traceparent == traceparent
    assert record.value is not None
    again = JsonSerializer().decode(record.value, OrderPlaced, topic="orders")
    assert again == event
    assert math.isclose(again.score, event.score) or again.score == event.score


def test_headers_are_the_cloudevents_kafka_binding() -> None:
    built = encoder("orders-service").build(
        Renamed(order_id="o-1"),
        topic="orders",
        key="o-1",
        event_id="e-1",
        correlation_id="c-1",
        causation_id="e-0",
        traceparent=TRACE,
        headers=[("x-tenant", b"acme")],
    )
    assert dict(built.record.headers) == {
        "ce_specversion": b"1.0",
        "ce_id": b"e-1",
        "ce_type": b"shop.order-renamed.v2",
        "ce_source": b"orders-service",
        "ce_time": b"2024-05-01T12:00:00.123Z",
        "content-type": b"application/json",
        "ce_correlationid": b"c-1",
        "ce_causationid": b"e-0",
        "traceparent": TRACE.encode(),
        "x-tenant": b"acme",
    }
    assert built.record.value == b'{"order_id":"o-1"}'


def test_a_new_event_starts_its_own_chain_and_trace() -> None:
    built = encoder("s").build(Renamed(order_id="o"), topic="t", key=None)
    headers = dict(built.record.headers)
    assert headers["ce_correlationid"] == headers["ce_id"] == built.event_id.encode()
    assert "ce_causationid" not in headers
    assert TraceParent.parse(headers["traceparent"].decode()) is not None


def test_records_of_plain_producers_get_a_stable_id() -> None:
    envelope = decode_envelope(consumed([], b"{}"))
    assert envelope.id == "orders-3-42"
    assert envelope.type is None
    assert envelope.content_type is None


def test_last_header_wins_and_other_headers_are_ignored() -> None:
    headers = [("ce_type", b"A"), ("ce_type", b"B"), ("other", b"\xff"), ("ce_id", None)]
    envelope = decode_envelope(consumed(headers, b"{}"))
    assert envelope.type == "B"
    assert envelope.id == "orders-3-42"


def test_non_utf8_cloudevents_header_is_malformed() -> None:
    with pytest.raises(MalformedRecordError, match="ce_type"):
        decode_envelope(consumed([("ce_type", b"\xff\xfe")], b"{}"))


def test_unsupported_spec_version_is_malformed() -> None:
    with pytest.raises(MalformedRecordError, match="spec version"):
        decode_envelope(consumed([("ce_specversion", b"0.3")], b"{}"))


@given(st.binary(max_size=64))
def test_any_bytes_either_decode_or_raise_invalid_payload(data: bytes) -> None:
    try:
        JsonSerializer().decode(data, Line, topic="t")
    except InvalidPayloadError as exc:
        message = str(exc)
    else:
        message = "Line"
    assert "Line" in message


def test_invalid_payload_message_names_the_fields() -> None:
    with pytest.raises(InvalidPayloadError) as info:
        JsonSerializer().decode(b'{"sku": 1}', Line, topic="t")
    message = str(info.value)
    assert "sku" in message
    assert "qty" in message
    assert info.value.reason == "invalid-payload"


def test_json_serializer_satisfies_the_protocol() -> None:
    assert isinstance(JsonSerializer(), Serializer)
