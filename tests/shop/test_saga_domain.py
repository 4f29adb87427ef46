"""The saga's transition table: every path, compensation, and robustness to late replies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet import Event
from shop.domain.saga import (
    TRANSITIONS,
    Saga,
    SagaTimeouts,
    Status,
    Step,
    Timeout,
    advance,
    start,
)
from shop.events import (
    INVENTORY_COMMANDS,
    ORDER_STATUS,
    PAYMENT_COMMANDS,
    SHIPPING_COMMANDS,
    AuthorizePayment,
    CapturePayment,
    CreateShipment,
    OrderCancelled,
    OrderConfirmed,
    OrderLine,
    OrderPlaced,
    OrderShipped,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    ReleaseStock,
    ReserveStock,
    ShipmentDispatched,
    StockRejected,
    StockReserved,
    VoidPayment,
)

TIMEOUTS = SagaTimeouts(reserve_ms=1_000, authorize_ms=2_000)
ORDER = OrderPlaced(
    order_id="o-1",
    customer_id="c-1",
    lines=(
        OrderLine(sku="MUG-ENAMEL", quantity=2, unit_price_cents=1600),
        OrderLine(sku="CAP-LOGO", quantity=1, unit_price_cents=2400),
    ),
    total_cents=5600,
    placed_at_ms=100,
)

RESERVED = StockReserved(order_id="o-1", lines=())
REJECTED = StockRejected(order_id="o-1", reason="out of stock", short_skus=("CAP-LOGO",))
AUTHORIZED = PaymentAuthorized(order_id="o-1", authorization_id="auth_1", amount_cents=5600)
DECLINED = PaymentDeclined(order_id="o-1", reason="card expired")
DISPATCHED = ShipmentDispatched(order_id="o-1", shipment_id="shp_1", at_ms=0)
CAPTURED = PaymentCaptured(order_id="o-1", amount_cents=5600, at_ms=0)
TIMEOUT = Timeout(order_id="o-1")


def kinds(step: Step) -> list[tuple[str, str]]:
    return [(topic, type(event).__name__) for topic, event in step.publish]


def run(*triggers: object, now_ms: int = 200) -> tuple[Saga, list[tuple[str, Event]]]:
    step = start(ORDER, now_ms=now_ms, timeouts=TIMEOUTS)
    saga, published = step.saga, list(step.publish)
    for trigger in triggers:
        moved = advance(saga, trigger, now_ms=now_ms, timeouts=TIMEOUTS)  # type: ignore[arg-type]
        if moved is not None:
            saga = moved.saga
            published.extend(moved.publish)
    return saga, published


def test_start_reserves_stock_with_the_orders_lines_and_a_deadline() -> None:
    step = start(ORDER, now_ms=200, timeouts=TIMEOUTS)
    assert step.saga.status is Status.RESERVING
    assert step.saga.deadline_ms == 1_200
    [(topic, command)] = step.publish
    assert topic == INVENTORY_COMMANDS
    assert isinstance(command, ReserveStock)
    assert [(line.sku, line.quantity) for line in command.lines] == [
        ("MUG-ENAMEL", 2),
        ("CAP-LOGO", 1),
    ]


def test_happy_path_confirms_ships_and_captures_the_order_total() -> None:
    saga, published = run(RESERVED, AUTHORIZED, DISPATCHED, CAPTURED)
    assert saga.status is Status.SHIPPED
    assert saga.terminal
    assert saga.deadline_ms is None
    assert saga.authorization_id == "auth_1"
    assert saga.shipment_id == "shp_1"
    assert [type(e).__name__ for _, e in published] == [
        "ReserveStock",
        "AuthorizePayment",
        "OrderConfirmed",
        "CreateShipment",
        "CapturePayment",
        "OrderShipped",
    ]
    by_type = {type(e): (topic, e) for topic, e in published}
    assert by_type[AuthorizePayment][0] == PAYMENT_COMMANDS
    assert by_type[AuthorizePayment][1].amount_cents == 5600  # type: ignore[attr-defined]
    assert by_type[CreateShipment][0] == SHIPPING_COMMANDS
    assert by_type[CapturePayment][1].amount_cents == 5600  # type: ignore[attr-defined]
    assert by_type[OrderConfirmed][0] == ORDER_STATUS
    shipped = by_type[OrderShipped][1]
    assert isinstance(shipped, OrderShipped)
    assert (shipped.shipment_id, shipped.total_cents, shipped.placed_at_ms) == ("shp_1", 5600, 100)


def test_out_of_stock_cancels_without_compensation() -> None:
    saga, published = run(REJECTED)
    assert saga.status is Status.CANCELLED
    assert saga.reason == "out of stock: CAP-LOGO"
    assert [type(e).__name__ for _, e in published] == ["ReserveStock", "OrderCancelled"]
    cancelled = published[-1][1]
    assert isinstance(cancelled, OrderCancelled)
    assert cancelled.reason == "out of stock: CAP-LOGO"


def test_declined_payment_releases_the_stock_then_cancels() -> None:
    saga, published = run(RESERVED, DECLINED)
    assert saga.status is Status.CANCELLED
    assert saga.reason == "payment declined: card expired"
    names = [type(e).__name__ for _, e in published]
    assert names == ["ReserveStock", "AuthorizePayment", "ReleaseStock", "OrderCancelled"]
    release = published[2][1]
    assert isinstance(release, ReleaseStock)
    assert release.reason == saga.reason


def test_timeout_while_reserving_releases_in_case_the_reservation_happened() -> None:
    step = start(ORDER, now_ms=0, timeouts=TIMEOUTS)
    assert advance(step.saga, TIMEOUT, now_ms=999, timeouts=TIMEOUTS) is None  # not yet due
    moved = advance(step.saga, TIMEOUT, now_ms=1_000, timeouts=TIMEOUTS)
    assert moved is not None
    assert moved.saga.status is Status.CANCELLED
    assert moved.saga.reason == "timed out waiting for inventory"
    assert kinds(moved) == [
        (INVENTORY_COMMANDS, "ReleaseStock"),
        (ORDER_STATUS, "OrderCancelled"),
    ]


def test_timeout_while_authorizing_voids_and_releases() -> None:
    step = start(ORDER, now_ms=0, timeouts=TIMEOUTS)
    reserved = advance(step.saga, RESERVED, now_ms=500, timeouts=TIMEOUTS)
    assert reserved is not None
    assert reserved.saga.deadline_ms == 2_500
    moved = advance(reserved.saga, TIMEOUT, now_ms=2_500, timeouts=TIMEOUTS)
    assert moved is not None
    assert kinds(moved) == [
        (PAYMENT_COMMANDS, "VoidPayment"),
        (INVENTORY_COMMANDS, "ReleaseStock"),
        (ORDER_STATUS, "OrderCancelled"),
    ]
    void = moved.publish[0][1]
    assert isinstance(void, VoidPayment)
    assert void.reason == "timed out waiting for payments"


def test_confirmed_orders_never_time_out() -> None:
    saga, _ = run(RESERVED, AUTHORIZED)
    assert saga.status is Status.SHIPPING
    assert saga.deadline_ms is None
    assert advance(saga, TIMEOUT, now_ms=10**12, timeouts=TIMEOUTS) is None


def test_late_replies_after_cancellation_change_nothing() -> None:
    moved = advance(
        start(ORDER, now_ms=0, timeouts=TIMEOUTS).saga, TIMEOUT, now_ms=5_000, timeouts=TIMEOUTS
    )
    assert moved is not None
    saga = moved.saga
    assert saga.status is Status.CANCELLED
    for late in (RESERVED, AUTHORIZED, DECLINED, DISPATCHED, CAPTURED, TIMEOUT):
        assert advance(saga, late, now_ms=9_000, timeouts=TIMEOUTS) is None


def test_a_trigger_for_another_order_is_a_bug() -> None:
    saga = start(ORDER, now_ms=0, timeouts=TIMEOUTS).saga
    with pytest.raises(ValueError, match="o-2"):
        advance(saga, StockReserved(order_id="o-2", lines=()), now_ms=0, timeouts=TIMEOUTS)


def test_every_cancellation_row_ends_in_a_cancel_event_and_only_cancellations_compensate() -> None:
    for (state, trigger), rule in TRANSITIONS.items():
        compensates = {"release-stock", "void-payment"} & {a.value for a in rule.actions}
        if rule.next is Status.CANCELLED:
            assert rule.actions[-1].value == "cancel", (state, trigger)
            assert rule.reason, (state, trigger)
        else:
            assert not compensates, (state, trigger)
        assert state not in (Status.SHIPPED, Status.CANCELLED), "terminal states have no rows"


REPLIES = st.sampled_from([RESERVED, REJECTED, AUTHORIZED, DECLINED, DISPATCHED, CAPTURED, TIMEOUT])


@settings(max_examples=300, deadline=None)
@given(st.lists(REPLIES, max_size=12), st.lists(st.integers(0, 5_000), min_size=12, max_size=12))
def test_any_sequence_of_replies_keeps_the_saga_consistent(
    triggers: list[object], times: list[int]
) -> None:
    step = start(ORDER, now_ms=0, timeouts=TIMEOUTS)
    saga = step.saga
    sent = [type(e).__name__ for _, e in step.publish]
    now = 0
    for trigger, dt in zip(triggers, times, strict=False):
        now += dt
        moved = advance(saga, trigger, now_ms=now, timeouts=TIMEOUTS)  # type: ignore[arg-type]
        if saga.terminal:
            assert moved is None, "a terminal saga never moves"
        if moved is not None:
            saga = moved.saga
            sent += [type(e).__name__ for _, e in moved.publish]
    # Each command at most once; a status event per state reached, at most once.
    for name in ("ReserveStock", "AuthorizePayment", "CreateShipment", "CapturePayment"):
        assert sent.count(name) <= 1, sent
    assert sent.count("OrderCancelled") + sent.count("OrderShipped") == int(saga.terminal)
    if saga.status is Status.CANCELLED:
        # Whatever was requested is compensated (or was refused by its service).
        if "AuthorizePayment" in sent and "PaymentDeclined" not in [
            type(t).__name__ for t in triggers
        ]:
            assert "VoidPayment" in sent
        if "ReserveStock" in sent and "CreateShipment" not in sent:
            rejected_first = sent.index("ReserveStock") + 1 == sent.index("OrderCancelled")
            assert "ReleaseStock" in sent or rejected_first
        assert "CapturePayment" not in sent, "a cancelled order is never captured"
    if "CapturePayment" in sent:
        assert "OrderConfirmed" in sent
        assert "VoidPayment" not in sent
