"""The large-orders service: the stream-processing example.

Orders worth at least :data:`THRESHOLD_CENTS` are copied to ``large-orders`` (for a
fraud review or a sales team), keyed by order id like the source::

    app.stream(ORDERS, OrderPlaced).filter(is_large).to(LARGE_ORDERS)

The copies keep the order's correlation id and get ids derived from the original
event, so a redelivered order is copied with the same id.
"""

from __future__ import annotations

from rivulet import App
from shop.events import LARGE_ORDERS, ORDERS, OrderPlaced, declare_topic, serializers

__all__ = ["THRESHOLD_CENTS", "app", "is_large"]

THRESHOLD_CENTS = 100_000
"""1,000.00 in the shop's currency."""

app = App(
    "large-orders",
    description="Copies orders above a threshold to large-orders.",
    serializers=serializers(),
)
declare_topic(app, LARGE_ORDERS)


def is_large(order: OrderPlaced) -> bool:
    """Whether an order is worth a second look."""
    return order.total_cents >= THRESHOLD_CENTS


app.stream(ORDERS, OrderPlaced).filter(is_large).to(LARGE_ORDERS)
