"""The analytics projection's folding: per-order facts merged from four topics (pure).

The projection reads ``orders``, ``order-status``, ``payments`` and ``shipments``.
Kafka orders events within a partition, not across topics, so ``OrderShipped`` may
be read before the ``OrderPlaced`` of the same order. The projection therefore keeps
*facts* per order (when it was placed, confirmed, shipped, cancelled; what was
captured) and merges each event into them with :func:`merge`, which is commutative and
idempotent: any order of arrival, and any redelivery, gives the same row. Everything
the projection serves (orders by state, revenue per minute, top SKUs, saga latency
percentiles) is derived from those rows when asked.

>>> from shop.events import OrderLine, OrderPlaced, OrderShipped
>>> shipped = OrderShipped(order_id="o-1", shipment_id="s", total_cents=900,
...                        placed_at_ms=1_000, at_ms=4_000)
>>> facts = merge(None, shipped)
>>> facts.status, facts.latency_ms
('shipped', 3000)
>>> placed = OrderPlaced(order_id="o-1", customer_id="c", total_cents=900, placed_at_ms=1_000,
...     lines=(OrderLine(sku="CAP-LOGO", quantity=1, unit_price_cents=900),))
>>> merge(facts, placed) == merge(merge(None, placed), shipped)
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from rivulet import Event
from shop.events import (
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentCaptured,
)

__all__ = ["STATES", "OrderFacts", "merge", "minute_of", "percentile"]

STATES = ("pending", "placed", "confirmed", "shipped", "cancelled")
"""Order states as analytics sees them; ``pending``: only a payment was seen so far."""


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the projection knows about one order."""

    order_id: str
    placed_at_ms: int | None = None
    total_cents: int | None = None
    #: ``(sku, quantity)`` pairs, merged per SKU and sorted.
    lines: tuple[tuple[str, int], ...] = ()
    confirmed_at_ms: int | None = None
    shipped_at_ms: int | None = None
    cancelled_at_ms: int | None = None
    cancel_reason: str | None = None
    captured_cents: int = 0
    captured_at_ms: int | None = None

    @property
    def status(self) -> str:
        """The most advanced state the facts show."""
        if self.cancelled_at_ms is not None:
            return "cancelled"
        if self.shipped_at_ms is not None:
            return "shipped"
        if self.confirmed_at_ms is not None:
            return "confirmed"
        if self.placed_at_ms is not None:
            return "placed"
        return "pending"

    @property
    def latency_ms(self) -> int | None:
        """Time from placement to the terminal state, once both are known."""
        end = self.cancelled_at_ms if self.cancelled_at_ms is not None else self.shipped_at_ms
        if end is None or self.placed_at_ms is None:
            return None
        return end - self.placed_at_ms


def merge(facts: OrderFacts | None, event: Event) -> OrderFacts | None:
    """``facts`` with ``event`` merged in; ``None`` if the event says nothing about orders.

    Times keep the earliest value seen and amounts the value seen, so merging an event
    twice, or events in any order, gives the same facts.
    """
    order_id = getattr(event, "order_id", None)
    if not isinstance(order_id, str):
        return facts
    base = facts if facts is not None else OrderFacts(order_id)
    if isinstance(event, OrderPlaced):
        merged: dict[str, int] = {}
        for line in event.lines:
            merged[line.sku] = merged.get(line.sku, 0) + line.quantity
        return dataclasses.replace(
            base,
            placed_at_ms=_earliest(base.placed_at_ms, event.placed_at_ms),
            total_cents=event.total_cents,
            lines=tuple(sorted(merged.items())),
        )
    if isinstance(event, OrderConfirmed):
        return dataclasses.replace(
            base, confirmed_at_ms=_earliest(base.confirmed_at_ms, event.at_ms)
        )
    if isinstance(event, OrderShipped):
        return dataclasses.replace(
            base,
            shipped_at_ms=_earliest(base.shipped_at_ms, event.at_ms),
            placed_at_ms=_earliest(base.placed_at_ms, event.placed_at_ms),
        )
    if isinstance(event, OrderCancelled):
        return dataclasses.replace(
            base,
            cancelled_at_ms=_earliest(base.cancelled_at_ms, event.at_ms),
            cancel_reason=event.reason if base.cancel_reason is None else base.cancel_reason,
            placed_at_ms=_earliest(base.placed_at_ms, event.placed_at_ms),
        )
    if isinstance(event, PaymentCaptured):
        return dataclasses.replace(
            base,
            captured_cents=event.amount_cents,
            captured_at_ms=_earliest(base.captured_at_ms, event.at_ms),
        )
    return facts


def minute_of(epoch_ms: int) -> int:
    """The start of the one-minute tumbling window holding ``epoch_ms``.

    >>> minute_of(125_000)
    120000
    """
    return epoch_ms - epoch_ms % 60_000


def percentile(sorted_values: Sequence[int], q: float) -> int | None:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ascending values.

    >>> percentile([10, 20, 30, 40], 50), percentile([10, 20, 30, 40], 99)
    (20, 40)
    """
    if not sorted_values:
        return None
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {q}")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]
