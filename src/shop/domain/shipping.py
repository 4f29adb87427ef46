"""Shipping: one shipment per confirmed order, created then dispatched (pure).

>>> events = ship(None, CreateShipment(order_id="o-1", customer_id="c", lines=()), now_ms=7)
>>> [type(e).__name__ for e in events]
['ShipmentCreated', 'ShipmentDispatched']
>>> ship(shipment_id("o-1"), CreateShipment(order_id="o-1", customer_id="c", lines=()), now_ms=8)
()
"""

from __future__ import annotations

import hashlib

from shop.events import CreateShipment, ShipmentCreated, ShipmentDispatched, ShipmentEvent

__all__ = ["ship", "shipment_id"]


def shipment_id(order_id: str) -> str:
    """The id of the order's shipment: derived from the order, so there can be only one."""
    return "shp_" + hashlib.sha256(order_id.encode()).hexdigest()[:20]


def ship(
    existing: str | None, command: CreateShipment, *, now_ms: int
) -> tuple[ShipmentEvent, ...]:
    """The events of shipping an order; nothing when it already has its shipment."""
    if existing is not None:
        return ()
    shipment = shipment_id(command.order_id)
    return (
        ShipmentCreated(order_id=command.order_id, shipment_id=shipment),
        ShipmentDispatched(order_id=command.order_id, shipment_id=shipment, at_ms=now_ms),
    )
