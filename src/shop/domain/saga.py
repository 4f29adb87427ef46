"""The order saga: a state machine written as a transition table (pure, no I/O).

The saga orchestrates one order through the other services. It reserves stock first
and asks for payment only once the goods are set aside (never hold a customer's money
for goods the shop cannot send), then confirms, ships, and captures the payment when
the shipment leaves (card rules: capture when you ship)::

    OrderPlaced -> reserving --StockReserved--> authorizing --PaymentAuthorized--> shipping
                      |                            |                                  |
                 StockRejected                PaymentDeclined                ShipmentDispatched
                 or Timeout                   or Timeout                              |
                      v                            v                                  v
                  cancelled  <---------------------+                              capturing
                                                                                      |
                                                                               PaymentCaptured
                                                                                      v
                                                                                   shipped

Each row of :data:`TRANSITIONS` names the next state and the actions (commands and
status events) to publish. A cancellation's actions are exactly the compensations of
the steps already requested: a timeout while ``reserving`` releases stock (the
reservation may have happened after all), one while ``authorizing`` also voids the
payment. Commands for one order share a key, so a compensation reaches its service
after the command it undoes; the services also remember released and voided orders,
so a command that arrives late (after a retry) is refused rather than applied.

A trigger with no row for the current state is a duplicate or a late reply (for
instance ``StockReserved`` after a timeout cancelled the order): it changes nothing.
Only the steps before the confirmation time out. Once confirmed, the shop has
committed to the order; if shipping or payments are down, their commands wait in
Kafka and the saga waits with them.

>>> from shop.events import OrderLine, OrderPlaced, StockReserved
>>> placed = OrderPlaced(order_id="o-1", customer_id="c-1", total_cents=1900,
...     lines=(OrderLine(sku="MUG-ENAMEL", quantity=1, unit_price_cents=1900),),
...     placed_at_ms=0)
>>> step = start(placed, now_ms=5, timeouts=SagaTimeouts())
>>> step.saga.status, [type(e).__name__ for _, e in step.publish]
(<Status.RESERVING: 'reserving'>, ['ReserveStock'])
>>> step = advance(step.saga, StockReserved(order_id="o-1", lines=()), now_ms=9,
...     timeouts=SagaTimeouts())
>>> step.saga.status, [type(e).__name__ for _, e in step.publish]
(<Status.AUTHORIZING: 'authorizing'>, ['AuthorizePayment'])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from rivulet import Event
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
    StockLine,
    StockRejected,
    StockReserved,
    VoidPayment,
)

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Action",
    "Reply",
    "Rule",
    "Saga",
    "SagaTimeouts",
    "Status",
    "Step",
    "Timeout",
    "advance",
    "start",
]


class Status(StrEnum):
    """Where an order's saga stands; named after what it waits for."""

    RESERVING = "reserving"
    AUTHORIZING = "authorizing"
    SHIPPING = "shipping"
    CAPTURING = "capturing"
    SHIPPED = "shipped"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.SHIPPED, Status.CANCELLED})


class Action(StrEnum):
    """Something a transition publishes."""

    RESERVE_STOCK = "reserve-stock"
    RELEASE_STOCK = "release-stock"
    AUTHORIZE_PAYMENT = "authorize-payment"
    VOID_PAYMENT = "void-payment"
    CONFIRM = "confirm"
    CREATE_SHIPMENT = "create-shipment"
    CAPTURE_PAYMENT = "capture-payment"
    SHIP = "ship"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Timeout:
    """Trigger: the saga's deadline passed (fired by the saga service's timer)."""

    order_id: str


Reply = (
    StockReserved
    | StockRejected
    | PaymentAuthorized
    | PaymentDeclined
    | ShipmentDispatched
    | PaymentCaptured
)
"""The replies of the other services that move a saga."""
Trigger = Reply | Timeout


@dataclass(frozen=True, slots=True)
class SagaTimeouts:
    """How long each step may take before the order is cancelled, in ms."""

    reserve_ms: int = 30_000
    authorize_ms: int = 30_000

    def deadline(self, status: Status, now_ms: int) -> int | None:
        """When a saga entering ``status`` now times out (``None``: it does not)."""
        if status is Status.RESERVING:
            return now_ms + self.reserve_ms
        if status is Status.AUTHORIZING:
            return now_ms + self.authorize_ms
        return None


@dataclass(frozen=True, slots=True)
class Saga:
    """One order's saga: what the order is and where it stands."""

    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...]
    total_cents: int
    placed_at_ms: int
    status: Status
    updated_at_ms: int
    deadline_ms: int | None = None
    reason: str | None = None
    authorization_id: str | None = None
    shipment_id: str | None = None

    @property
    def terminal(self) -> bool:
        """Shipped or cancelled: nothing more happens to the order."""
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the transition table."""

    next: Status
    actions: tuple[Action, ...]
    #: Why the order is cancelled (for rows leading to ``cancelled``).
    reason: str | None = None


TRANSITIONS: Mapping[tuple[Status, str], Rule] = MappingProxyType(
    {
        (Status.RESERVING, "StockReserved"): Rule(Status.AUTHORIZING, (Action.AUTHORIZE_PAYMENT,)),
        (Status.RESERVING, "StockRejected"): Rule(
            Status.CANCELLED, (Action.CANCEL,), "out of stock"
        ),
        (Status.RESERVING, "Timeout"): Rule(
            Status.CANCELLED,
            (Action.RELEASE_STOCK, Action.CANCEL),
            "timed out waiting for inventory",
        ),
        (Status.AUTHORIZING, "PaymentAuthorized"): Rule(
            Status.SHIPPING, (Action.CONFIRM, Action.CREATE_SHIPMENT)
        ),
        (Status.AUTHORIZING, "PaymentDeclined"): Rule(
            Status.CANCELLED, (Action.RELEASE_STOCK, Action.CANCEL), "payment declined"
        ),
        (Status.AUTHORIZING, "Timeout"): Rule(
            Status.CANCELLED,
            (Action.VOID_PAYMENT, Action.RELEASE_STOCK, Action.CANCEL),
            "timed out waiting for payments",
        ),
        (Status.SHIPPING, "ShipmentDispatched"): Rule(Status.CAPTURING, (Action.CAPTURE_PAYMENT,)),
        (Status.CAPTURING, "PaymentCaptured"): Rule(Status.SHIPPED, (Action.SHIP,)),
    }
)
"""``(state, trigger type) -> Rule``; a missing row means "ignore the trigger"."""


@dataclass(frozen=True, slots=True)
class Step:
    """The saga after a transition and what to publish: ``(topic, event)``, keyed by order."""

    saga: Saga
    publish: tuple[tuple[str, Event], ...]


def start(order: OrderPlaced, *, now_ms: int, timeouts: SagaTimeouts) -> Step:
    """The saga of a newly placed order: reserve its stock."""
    saga = Saga(
        order_id=order.order_id,
        customer_id=order.customer_id,
        lines=order.lines,
        total_cents=order.total_cents,
        placed_at_ms=order.placed_at_ms,
        status=Status.RESERVING,
        updated_at_ms=now_ms,
        deadline_ms=timeouts.deadline(Status.RESERVING, now_ms),
    )
    return Step(saga, (_ACTIONS[Action.RESERVE_STOCK](saga, now_ms),))


def advance(saga: Saga, trigger: Trigger, *, now_ms: int, timeouts: SagaTimeouts) -> Step | None:
    """Apply ``trigger``; ``None`` when it changes nothing (duplicate, late, not yet due)."""
    if trigger.order_id != saga.order_id:
        raise ValueError(f"trigger for order {trigger.order_id} given to saga {saga.order_id}")
    if isinstance(trigger, Timeout) and (saga.deadline_ms is None or now_ms < saga.deadline_ms):
        return None
    rule = TRANSITIONS.get((saga.status, type(trigger).__name__))
    if rule is None:
        return None
    reason = _reason(rule, trigger)
    saga = dataclasses.replace(
        saga,
        status=rule.next,
        updated_at_ms=now_ms,
        deadline_ms=timeouts.deadline(rule.next, now_ms),
        reason=reason if reason is not None else saga.reason,
        authorization_id=(
            trigger.authorization_id
            if isinstance(trigger, PaymentAuthorized)
            else saga.authorization_id
        ),
        shipment_id=(
            trigger.shipment_id if isinstance(trigger, ShipmentDispatched) else saga.shipment_id
        ),
    )
    return Step(saga, tuple(_ACTIONS[action](saga, now_ms) for action in rule.actions))


def _reason(rule: Rule, trigger: Trigger) -> str | None:
    if rule.reason is None:
        return None
    if isinstance(trigger, StockRejected) and trigger.short_skus:
        return f"{rule.reason}: {', '.join(trigger.short_skus)}"
    if isinstance(trigger, PaymentDeclined):
        return f"{rule.reason}: {trigger.reason}"
    return rule.reason


def _stock_lines(saga: Saga) -> tuple[StockLine, ...]:
    return tuple(StockLine(sku=line.sku, quantity=line.quantity) for line in saga.lines)


def _cancel_reason(saga: Saga) -> str:
    return saga.reason or "cancelled"


_ACTIONS: Mapping[Action, Callable[[Saga, int], tuple[str, Event]]] = MappingProxyType(
    {
        Action.RESERVE_STOCK: lambda s, _now: (
            INVENTORY_COMMANDS,
            ReserveStock(order_id=s.order_id, lines=_stock_lines(s)),
        ),
        Action.RELEASE_STOCK: lambda s, _now: (
            INVENTORY_COMMANDS,
            ReleaseStock(order_id=s.order_id, reason=_cancel_reason(s)),
        ),
        Action.AUTHORIZE_PAYMENT: lambda s, _now: (
            PAYMENT_COMMANDS,
            AuthorizePayment(
                order_id=s.order_id, customer_id=s.customer_id, amount_cents=s.total_cents
            ),
        ),
        Action.VOID_PAYMENT: lambda s, _now: (
            PAYMENT_COMMANDS,
            VoidPayment(order_id=s.order_id, reason=_cancel_reason(s)),
        ),
        Action.CONFIRM: lambda s, now: (
            ORDER_STATUS,
            OrderConfirmed(order_id=s.order_id, at_ms=now),
        ),
        Action.CREATE_SHIPMENT: lambda s, _now: (
            SHIPPING_COMMANDS,
            CreateShipment(order_id=s.order_id, customer_id=s.customer_id, lines=_stock_lines(s)),
        ),
        Action.CAPTURE_PAYMENT: lambda s, _now: (
            PAYMENT_COMMANDS,
            CapturePayment(order_id=s.order_id, amount_cents=s.total_cents),
        ),
        Action.SHIP: lambda s, now: (
            ORDER_STATUS,
            OrderShipped(
                order_id=s.order_id,
                shipment_id=s.shipment_id or "",
                total_cents=s.total_cents,
                placed_at_ms=s.placed_at_ms,
                at_ms=now,
            ),
        ),
        Action.CANCEL: lambda s, now: (
            ORDER_STATUS,
            OrderCancelled(
                order_id=s.order_id,
                reason=_cancel_reason(s),
                placed_at_ms=s.placed_at_ms,
                at_ms=now,
            ),
        ),
    }
)
