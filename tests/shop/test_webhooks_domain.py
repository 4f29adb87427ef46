"""Webhook signing (Standard Webhooks style), verification and idempotency keys."""

from __future__ import annotations

from shop.domain.webhooks import (
    IDEMPOTENCY_KEY,
    SIGNATURE,
    TIMESTAMP,
    WEBHOOK_ID,
    Subscription,
    delivery_id,
    sign,
    verify,
)

BODY = b'{"type":"OrderShipped","order_id":"o-1"}'
NOW = 1_700_000_000


def test_signed_headers_verify_and_carry_the_idempotency_key() -> None:
    headers = sign("whd_1", BODY, secret="k", now_s=NOW)
    assert headers[WEBHOOK_ID] == headers[IDEMPOTENCY_KEY] == "whd_1"
    assert headers[TIMESTAMP] == str(NOW)
    assert headers[SIGNATURE].startswith("v1,")
    assert verify(headers, BODY, secret="k", now_s=NOW)


def test_tampering_a_wrong_secret_or_a_stale_timestamp_fail() -> None:
    headers = sign("whd_1", BODY, secret="k", now_s=NOW)
    assert not verify(headers, BODY + b" ", secret="k", now_s=NOW)
    assert not verify(headers, BODY, secret="other", now_s=NOW)
    assert not verify({**headers, WEBHOOK_ID: "whd_2"}, BODY, secret="k", now_s=NOW)
    assert not verify(headers, BODY, secret="k", now_s=NOW + 301)
    assert not verify({**headers, TIMESTAMP: "soon"}, BODY, secret="k", now_s=NOW)
    assert not verify({}, BODY, secret="k", now_s=NOW)


def test_any_of_several_signatures_may_match_during_secret_rotation() -> None:
    old = sign("whd_1", BODY, secret="old", now_s=NOW)
    new = sign("whd_1", BODY, secret="new", now_s=NOW)
    both = {**new, SIGNATURE: f"{old[SIGNATURE]} {new[SIGNATURE]}"}
    assert verify(both, BODY, secret="old", now_s=NOW)
    assert verify(both, BODY, secret="new", now_s=NOW)


def test_delivery_ids_are_stable_per_event_and_subscriber() -> None:
    assert delivery_id("s", "e") == delivery_id("s", "e")
    assert len({delivery_id("s", "e"), delivery_id("s", "f"), delivery_id("t", "e")}) == 3


def test_subscriptions_choose_event_types() -> None:
    sub = Subscription("s", "http://x", "k", frozenset({"OrderShipped"}))
    assert sub.wants("OrderShipped")
    assert not sub.wants("OrderCancelled")
    assert Subscription("s", "http://x", "k", frozenset({"*"})).wants("OrderCancelled")
