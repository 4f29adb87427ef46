"""Event ids, CloudEvents time and W3C trace context."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rivulet.framework._ids import (
    TraceParent,
    derived_event_id,
    format_ce_time,
    new_event_id,
    parse_ce_time,
)

MS_RANGE = st.integers(min_value=0, max_value=253402300799999)  # up to year 9999


@given(now_ms=st.integers(min_value=0, max_value=(1 << 48) - 1), bits=st.integers(0, 1 << 80))
def test_new_event_id_is_a_uuid7_carrying_its_time(now_ms: int, bits: int) -> None:
    parsed = uuid.UUID(new_event_id(now_ms, bits))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert parsed.int >> 80 == now_ms


@given(st.lists(st.integers(min_value=0, max_value=(1 << 48) - 1), min_size=2, max_size=20))
def test_new_event_ids_sort_by_time(times: list[int]) -> None:
    ids = [new_event_id(t, 0xFFFF) for t in sorted(times)]
    assert ids == sorted(ids)


def test_derived_ids_are_stable_and_distinct() -> None:
    first = derived_event_id("inventory", "e-1", 0)
    assert first == derived_event_id("inventory", "e-1", 0)
    assert uuid.UUID(first).version == 5
    others = {
        derived_event_id("inventory", "e-1", 1),
        derived_event_id("payments", "e-1", 0),
        derived_event_id("inventory", "e-2", 0),
    }
    assert first not in others
    assert len(others) == 3


@given(MS_RANGE)
def test_ce_time_round_trips_and_matches_datetime(now_ms: int) -> None:
    text = format_ce_time(now_ms)
    expected = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=now_ms)
    assert text == expected.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now_ms % 1000:03d}Z"
    assert parse_ce_time(text) == now_ms


def test_parse_ce_time_handles_offsets_and_rejects_naive_or_garbage() -> None:
    assert parse_ce_time("2024-05-01T12:00:00Z") == 1714564800000
    assert parse_ce_time("2024-05-01T14:00:00.5+02:00") == 1714564800500
    assert parse_ce_time("2024-05-01T12:00:00") is None
    assert parse_ce_time("yesterday") is None


def test_traceparent_parse_child_and_invalid_values() -> None:
    text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    parent = TraceParent.parse(text)
    assert parent is not None
    assert parent.header() == text
    child = parent.child(0xABC)
    assert child.trace_id == parent.trace_id
    assert child.span_id == "0000000000000abc"
    for bad in [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        text + "-extra",
    ]:
        assert TraceParent.parse(bad) is None, bad


@given(st.integers(0, (1 << 128) - 1), st.integers(0, (1 << 64) - 1))
def test_new_traceparent_is_always_valid(trace_bits: int, span_bits: int) -> None:
    parent = TraceParent.new(trace_bits, span_bits)
    assert TraceParent.parse(parent.header()) == parent


# Bits with zero ids among them, which both forms must bump to valid ones.
TRACE_BITS = st.one_of(st.just(0), st.just(1 << 128), st.integers(0, (1 << 200) - 1))
SPAN_BITS = st.one_of(st.just(0), st.just(1 << 64), st.integers(0, (1 << 80) - 1))


@given(TRACE_BITS, SPAN_BITS)
def test_new_header_is_the_header_of_new(trace_bits: int, span_bits: int) -> None:
    assert TraceParent.new_header(trace_bits, span_bits) == (
        TraceParent.new(trace_bits, span_bits).header()
    )


HEX = "0123456789abcdef"
TRACEPARENTS = st.one_of(
    st.builds(
        "{}-{}-{}-{}".format,
        st.text(HEX, min_size=2, max_size=2),
        st.text(HEX, min_size=32, max_size=32) | st.just("0" * 32),
        st.text(HEX, min_size=16, max_size=16) | st.just("0" * 16),
        st.text(HEX, min_size=2, max_size=2),
    ),
    st.text(max_size=60),
)


@given(TRACEPARENTS, SPAN_BITS)
def test_child_header_is_the_header_of_parse_then_child(parent: str, span_bits: int) -> None:
    parsed = TraceParent.parse(parent)
    expected = None if parsed is None else parsed.child(span_bits).header()
    assert TraceParent.child_header(parent, span_bits) == expected


_DERIVED_NAMESPACE = uuid.UUID("6f1c1c2e-8d43-4f7a-9b0e-1f6a1c3c9a51")


@given(group=st.text(max_size=20), cause=st.text(max_size=40), index=st.integers(0, 1 << 40))
def test_derived_ids_are_uuid5_of_group_cause_and_index(group: str, cause: str, index: int) -> None:
    # Redelivered events must republish the very ids earlier releases minted: pin the scheme.
    expected = uuid.uuid5(_DERIVED_NAMESPACE, f"{group}\n{cause}\n{index}")
    assert derived_event_id(group, cause, index) == str(expected)
