"""The projection's fold: any order of arrival and any redelivery give the same facts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet import Event
from shop.domain.analytics import OrderFacts, merge, minute_of, percentile
from shop.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentAuthorized,
    PaymentCaptured,
    StockReplenished,
)

PLACED = OrderPlaced(
    order_id="o-1",
    customer_id="c",
    lines=(
        OrderLine(sku="CAP-LOGO", quantity=1, unit_price_cents=2400),
        OrderLine(sku="MUG-ENAMEL", quantity=2, unit_price_cents=1600),
    ),
    total_cents=5600,
    placed_at_ms=1_000,
)
CONFIRMED = OrderConfirmed(order_id="o-1", at_ms=2_000)
CAPTURED = PaymentCaptured(order_id="o-1", amount_cents=5600, at_ms=3_000)
SHIPPED = OrderShipped(
    order_id="o-1", shipment_id="s", total_cents=5600, placed_at_ms=1_000, at_ms=3_500
)
AUTHORIZED = PaymentAuthorized(order_id="o-1", authorization_id="a", amount_cents=5600)


def fold(events: list[Event]) -> OrderFacts | None:
    facts = None
    for event in events:
        facts = merge(facts, event)
    return facts


def test_a_shipped_order() -> None:
    facts = fold([PLACED, CONFIRMED, AUTHORIZED, CAPTURED, SHIPPED])
    assert facts is not None
    assert facts.status == "shipped"
    assert facts.lines == (("CAP-LOGO", 1), ("MUG-ENAMEL", 2))
    assert (facts.total_cents, facts.captured_cents, facts.captured_at_ms) == (5600, 5600, 3_000)
    assert facts.latency_ms == 2_500


def test_states_progress_and_cancellation_wins() -> None:
    assert fold([PLACED]).status == "placed"  # type: ignore[union-attr]
    assert fold([PLACED, CONFIRMED]).status == "confirmed"  # type: ignore[union-attr]
    assert fold([CONFIRMED]).status == "confirmed"  # type: ignore[union-attr]
    assert fold([CAPTURED]).status == "pending"  # type: ignore[union-attr]
    cancelled = OrderCancelled(order_id="o-1", reason="r", placed_at_ms=1_000, at_ms=9_000)
    facts = fold([PLACED, cancelled])
    assert facts is not None
    assert (facts.status, facts.cancel_reason, facts.latency_ms) == ("cancelled", "r", 8_000)


def test_events_about_no_order_are_ignored() -> None:
    assert merge(None, StockReplenished(sku="X", quantity=1)) is None
    facts = fold([PLACED])
    assert merge(facts, AUTHORIZED) == facts


@settings(max_examples=200, deadline=None)
@given(st.permutations([PLACED, CONFIRMED, CAPTURED, SHIPPED, AUTHORIZED]), st.data())
def test_merge_is_commutative_and_idempotent(events: list[Event], data: st.DataObject) -> None:
    repeated = data.draw(st.lists(st.sampled_from(events), max_size=5))
    assert fold(list(events) + repeated) == fold([PLACED, CONFIRMED, AUTHORIZED, CAPTURED, SHIPPED])


def test_windows_and_percentiles() -> None:
    assert minute_of(59_999) == 0
    assert minute_of(60_000) == 60_000
    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert percentile([], 50) is None
    assert percentile([7], 1) == 7
