"""Retry and dead-letter decisions, backoff, and Spring-compatible forwarding headers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.framework import Backoff, NonRetriableError, RetryPolicy
from rivulet.framework._errors import ConfigurationError, InvalidPayloadError
from rivulet.framework._retry import (
    DeadLetter,
    RetryInPlace,
    SendToRetryTopic,
    addressed_group,
    attempt_of,
    backoff_remaining_ms,
    decode_int,
    encode_bigint,
    forward_headers,
    header_value,
    main_topic_of,
)
from rivulet.framework._wire import ConsumedRecord


@given(
    initial=st.integers(0, 10_000),
    multiplier=st.floats(1.0, 10.0),
    extra=st.integers(0, 100_000),
    retry=st.integers(1, 10_000),
    random01=st.floats(0.0, 1.0, exclude_max=True),
)
def test_backoff_is_capped_monotone_and_jitter_stays_below_the_ceiling(
    initial: int, multiplier: float, extra: int, retry: int, random01: float
) -> None:
    backoff = Backoff(initial_ms=initial, multiplier=multiplier, max_ms=initial + extra)
    ceiling = backoff.ceiling_ms(retry)
    assert initial <= ceiling <= backoff.max_ms or initial == 0
    assert backoff.ceiling_ms(retry + 1) >= ceiling
    assert 0 <= backoff.delay_ms(retry, random01) <= ceiling


def test_backoff_doubles_until_the_cap() -> None:
    backoff = Backoff(initial_ms=100, multiplier=2.0, max_ms=1_000)
    assert [backoff.ceiling_ms(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]
    assert backoff.delay_ms(2, 0.0) == 0
    assert backoff.delay_ms(2, 0.999) == 199


def test_invalid_policies_are_rejected_with_advice() -> None:
    with pytest.raises(ConfigurationError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigurationError, match="delays"):
        RetryPolicy(topics=(1000, 0))
    with pytest.raises(ConfigurationError, match="max_ms"):
        Backoff(initial_ms=10, max_ms=5)


def run_to_the_end(policy: RetryPolicy) -> tuple[int, list[str]]:
    """Follow a record that always fails: handler calls and topics it travels through."""
    calls, hop, attempt, topics = 0, 0, 1, []
    while True:
        calls += 1
        decision = policy.decide("orders", hop=hop, attempt=attempt, error=OSError(), random01=0.5)
        if isinstance(decision, RetryInPlace):
            attempt += 1
        elif isinstance(decision, SendToRetryTopic):
            topics.append(decision.topic)
            assert decision.attempt == hop + 2
            hop, attempt = hop + 1, 1
        else:
            topics.append(decision.topic)
            assert decision.reason == "handler-error"
            return calls, topics


@given(attempts=st.integers(1, 5), delays=st.lists(st.integers(1, 100_000), max_size=4))
def test_a_failing_record_is_tried_attempts_times_per_hop_then_dead_lettered(
    attempts: int, delays: list[int]
) -> None:
    policy = RetryPolicy(attempts=attempts, topics=tuple(delays))
    calls, topics = run_to_the_end(policy)
    assert calls == attempts * (1 + len(delays))
    assert topics == [f"orders-retry-{d}" for d in delays] + ["orders-dlt"]


def test_same_delays_share_one_retry_topic() -> None:
    policy = RetryPolicy(topics=(1000, 1000, 5000))
    assert policy.retry_topics("orders") == ("orders-retry-1000", "orders-retry-5000")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (NonRetriableError("no such sku"), "non-retriable"),
        (InvalidPayloadError("bad json"), "invalid-payload"),
        (KeyError("configured"), "non-retriable"),
    ],
)
def test_non_retriable_errors_skip_every_retry(error: BaseException, reason: str) -> None:
    policy = RetryPolicy(attempts=5, topics=(1000,), non_retriable=(KeyError,))
    decision = policy.decide("orders", hop=0, attempt=1, error=error, random01=0.5)
    assert decision == DeadLetter("orders-dlt", reason)


def record(
    headers: list[tuple[str, bytes | None]] | None = None, topic: str = "orders"
) -> ConsumedRecord:
    return ConsumedRecord(
        topic=topic,
        partition=2,
        offset=1234,
        timestamp_ms=1_714_564_800_123,
        key=b"o-1",
        value=b"{}",
        headers=headers or [("ce_id", b"e-1")],
    )


def fail(message: str) -> ValueError:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError(message) from inner
    except ValueError as exc:
        return exc


def test_retry_headers_use_springs_names_and_encodings() -> None:
    hop = SendToRetryTopic("orders-retry-1000", 1000, attempt=2)
    headers = forward_headers(record(), fail("boom"), group="inventory", decision=hop, now_ms=5_000)
    values = dict(headers)
    assert values["ce_id"] == b"e-1"
    assert values["kafka_dlt-original-topic"] == b"orders"
    assert values["kafka_dlt-original-partition"] == struct.pack(">i", 2)
    assert values["kafka_dlt-original-offset"] == struct.pack(">q", 1234)
    assert values["kafka_dlt-original-timestamp"] == struct.pack(">q", 1_714_564_800_123)
    assert values["kafka_dlt-original-timestamp-type"] == b"CreateTime"
    assert values["kafka_dlt-original-consumer-group"] == b"inventory"
    assert values["kafka_dlt-exception-fqcn"] == b"ValueError"
    assert values["kafka_dlt-exception-cause-fqcn"] == b"KeyError"
    assert values["kafka_dlt-exception-message"] == b"boom"
    assert b"raise ValueError(message) from inner" in values["kafka_dlt-exception-stacktrace"]
    assert values["retry_topic-attempts"] == struct.pack(">i", 2)
    # Java BigInteger.toByteArray(): 5000 + 1000 = 0x1770 fits in two bytes.
    assert values["retry_topic-backoff-timestamp"] == b"\x17\x70"
    assert decode_int(values["retry_topic-original-timestamp"]) == 1_714_564_800_123
    assert "rivulet_dlt-reason" not in values


def test_second_hop_keeps_the_origin_and_replaces_the_exception() -> None:
    first = forward_headers(
        record(),
        fail("first"),
        group="inventory",
        decision=SendToRetryTopic("orders-retry-1000", 1000, attempt=2),
        now_ms=5_000,
    )
    retried = ConsumedRecord(
        topic="orders-retry-1000",
        partition=0,
        offset=7,
        timestamp_ms=5_001,
        key=b"o-1",
        value=b"{}",
        headers=first,
    )
    assert main_topic_of(retried) == "orders"
    assert addressed_group(retried) == "inventory"
    assert attempt_of(retried) == 2
    assert backoff_remaining_ms(retried, now_ms=5_400) == 600
    assert backoff_remaining_ms(retried, now_ms=7_000) == 0

    dead = forward_headers(
        retried,
        RuntimeError("second"),
        group="inventory",
        decision=DeadLetter("orders-dlt", "handler-error"),
        now_ms=9_000,
    )
    names = [name for name, _ in dead]
    for unique in ["kafka_dlt-original-topic", "kafka_dlt-exception-fqcn", "retry_topic-attempts"]:
        assert names.count(unique) == 1, unique
    values = dict(dead)
    assert values["kafka_dlt-original-topic"] == b"orders"
    assert values["kafka_dlt-original-offset"] == struct.pack(">q", 1234)
    assert values["kafka_dlt-exception-fqcn"] == b"RuntimeError"
    assert values["kafka_dlt-exception-message"] == b"second"
    assert "kafka_dlt-exception-cause-fqcn" not in values
    assert values["retry_topic-attempts"] == struct.pack(">i", 2)
    assert values["rivulet_dlt-reason"] == b"handler-error"
    assert decode_int(values["retry_topic-original-timestamp"]) == 1_714_564_800_123


def dead_letter_headers(error: BaseException) -> dict[str, bytes]:
    decision = DeadLetter("orders-dlt", "handler-error")
    return dict(forward_headers(record(), error, group="g", decision=decision, now_ms=0))


def test_empty_message_is_omitted() -> None:
    headers = dead_letter_headers(LookupError())
    assert "kafka_dlt-exception-message" not in headers
    assert headers["kafka_dlt-exception-fqcn"] == b"LookupError"


def test_huge_messages_and_traces_are_truncated_keeping_both_ends() -> None:
    try:
        raise LookupError("start" + "x" * 40_000 + "end")
    except LookupError as exc:
        headers = dead_letter_headers(exc)
    message = headers["kafka_dlt-exception-message"]
    assert len(message) <= 4 * 1024
    assert message.startswith(b"startxxx")
    trace = headers["kafka_dlt-exception-stacktrace"]
    assert len(trace) <= 16 * 1024
    assert trace.startswith(b"Traceback")
    assert b"truncated by rivulet" in trace
    assert trace.endswith(b"xxxend\n")


@given(st.integers(-(2**63), 2**63 - 1))
def test_bigint_encoding_round_trips_minimally(value: int) -> None:
    raw = encode_bigint(value)
    assert decode_int(raw) == value
    assert len(raw) == 1 or decode_int(raw[1:]) != value


def test_spring_encodings_of_attempts_decode() -> None:
    assert attempt_of(record([("retry_topic-attempts", b"\x03")])) == 3
    assert attempt_of(record([("retry_topic-attempts", struct.pack(">i", 4))])) == 4
    assert attempt_of(record([])) == 1
    assert header_value([("a", b"1"), ("a", b"2")], "a") == b"2"


def test_main_topic_falls_back_to_the_retry_topic_name() -> None:
    assert main_topic_of(record([], topic="orders-retry-1000")) == "orders"
    assert main_topic_of(record([], topic="my-retry-topic")) == "my-retry-topic"
    assert addressed_group(record([])) is None
