"""The shipping service: one shipment per confirmed order, created then dispatched.

The shipment id is derived from the order id and the ``shipments`` table's primary key
is the order, so a repeated ``CreateShipment`` cannot make a second shipment; the
idempotent handler also drops a redelivered one. ``GET /shipments`` lists them.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI

from rivulet import App, Context
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.shipping import ship
from shop.events import (
    SHIPMENTS,
    SHIPPING_COMMANDS,
    CreateShipment,
    ShipmentCreated,
    ShipmentDispatched,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "api", "app"]

DEFAULT_PORT = 8084

app = App(
    "shipping",
    description="Creates and dispatches one shipment per confirmed order.",
    serializers=serializers(),
)
declare_topic(app, SHIPMENTS)

api = FastAPI(title="Rivulet shop: shipping", version="1.0.0")

_DDL = """CREATE TABLE IF NOT EXISTS shipments (
    order_id TEXT PRIMARY KEY,
    shipment_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    dispatched_at_ms BIGINT
)"""


async def _start(_settings: ShopSettings) -> None:
    async with app.transaction() as tx:
        await tx.execute(_DDL)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_start)


@app.handler(
    SHIPPING_COMMANDS,
    idempotent=True,
    concurrency=16,
    publishes={SHIPMENTS: (ShipmentCreated, ShipmentDispatched)},
)
async def create_shipment(command: CreateShipment, ctx: Context) -> None:
    """Ship the order unless it already has its shipment."""
    tx = ctx.transaction
    row = await tx.fetchone(
        "SELECT shipment_id FROM shipments WHERE order_id = ?", (command.order_id,)
    )
    now = time.time_ns() // 1_000_000
    events = ship(None if row is None else row[0], command, now_ms=now)
    for event in events:
        if isinstance(event, ShipmentCreated):
            await tx.execute(
                "INSERT INTO shipments (order_id, shipment_id, status, created_at_ms) "
                "VALUES (?, ?, 'created', ?)",
                (event.order_id, event.shipment_id, now),
            )
        else:
            await tx.execute(
                "UPDATE shipments SET status = 'dispatched', dispatched_at_ms = ? "
                "WHERE order_id = ?",
                (event.at_ms, event.order_id),
            )
        await ctx.publish(SHIPMENTS, event, key=command.order_id)


@api.get("/shipments")
async def shipments() -> dict[str, Any]:
    """Every shipment by order."""
    async with app.transaction() as tx:
        rows = await tx.fetchall("SELECT order_id, shipment_id, status FROM shipments")
    return {
        "shipments": {order: {"shipment_id": sid, "status": status} for order, sid, status in rows}
    }
