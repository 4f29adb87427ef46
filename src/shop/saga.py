"""The order saga service: the orchestrator that drives every order to shipped or cancelled.

It persists each order's saga (:mod:`shop.domain.saga`) in its own database and moves
it on the replies of inventory, payments and shipping. Each move is one transaction
with the idempotent handler's processed-event record and the outbox rows of the
commands it sends, so a redelivered reply changes nothing and a crash loses nothing.

Timeouts: a timer scans for sagas whose deadline passed and moves them with a
``Timeout`` trigger, compensating and cancelling. The timer and the handlers may race
for the same saga (and several replicas may run): every update is conditional on the
version read, and the loser re-reads (a handler is retried, the timer looks again at
its next scan).

Run with ``rivulet run shop.saga:app``; ``GET /sagas/{order_id}`` and
``GET /sagas?status=`` on ``SHOP_HTTP`` (default 127.0.0.1:8081) show the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from rivulet import App, Context, Event, Transaction
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.saga import Saga, Status, Step, Timeout, advance, start
from shop.events import (
    INVENTORY,
    INVENTORY_COMMANDS,
    ORDER_STATUS,
    ORDERS,
    PAYMENT_COMMANDS,
    PAYMENTS,
    SHIPMENTS,
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
    PaymentVoided,
    ReleaseStock,
    ReserveStock,
    ShipmentCreated,
    ShipmentDispatched,
    StockRejected,
    StockReleased,
    StockReplenished,
    StockReserved,
    VoidPayment,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "ConcurrentUpdateError", "api", "app"]

DEFAULT_PORT = 8081
_log = logging.getLogger("shop.saga")

app = App(
    "order-saga",
    description="Orchestrates each order: reserve, pay, ship, or compensate.",
    serializers=serializers(),
)
for _topic in (ORDER_STATUS, INVENTORY_COMMANDS, PAYMENT_COMMANDS, SHIPPING_COMMANDS):
    declare_topic(app, _topic)
app.publishes(ORDER_STATUS, OrderCancelled)
app.publishes(INVENTORY_COMMANDS, ReleaseStock)
app.publishes(PAYMENT_COMMANDS, VoidPayment)

api = FastAPI(title="Rivulet shop: order saga", version="1.0.0")

_DDL = (
    """CREATE TABLE IF NOT EXISTS sagas (
        order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        version BIGINT NOT NULL,
        deadline_ms BIGINT,
        correlation_id TEXT NOT NULL,
        data TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sagas_by_deadline ON sagas (deadline_ms)",
    "CREATE INDEX IF NOT EXISTS sagas_by_status ON sagas (status)",
)


class ConcurrentUpdateError(RuntimeError):
    """Another transaction moved the saga since it was read (retried by the framework)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _encode(saga: Saga) -> str:
    return json.dumps(
        {
            "customer_id": saga.customer_id,
            "lines": [[x.sku, x.quantity, x.unit_price_cents] for x in saga.lines],
            "total_cents": saga.total_cents,
            "placed_at_ms": saga.placed_at_ms,
            "reason": saga.reason,
            "authorization_id": saga.authorization_id,
            "shipment_id": saga.shipment_id,
        }
    )


def _decode(order_id: str, status: str, deadline: int | None, data: str, updated: int) -> Saga:
    fields = json.loads(data)
    return Saga(
        order_id=order_id,
        customer_id=fields["customer_id"],
        lines=tuple(
            OrderLine(sku=s, quantity=q, unit_price_cents=p) for s, q, p in fields["lines"]
        ),
        total_cents=fields["total_cents"],
        placed_at_ms=fields["placed_at_ms"],
        status=Status(status),
        updated_at_ms=updated,
        deadline_ms=deadline,
        reason=fields["reason"],
        authorization_id=fields["authorization_id"],
        shipment_id=fields["shipment_id"],
    )


async def _load(tx: Transaction, order_id: str) -> tuple[Saga, int, str] | None:
    row = await tx.fetchone(
        "SELECT status, deadline_ms, data, updated_at_ms, version, correlation_id "
        "FROM sagas WHERE order_id = ?",
        (order_id,),
    )
    if row is None:
        return None
    status, deadline, data, updated, version, correlation = row
    return _decode(order_id, status, deadline, data, updated), int(version), correlation


async def _save(tx: Transaction, saga: Saga, version: int) -> None:
    changed = await tx.execute(
        "UPDATE sagas SET status = ?, deadline_ms = ?, data = ?, updated_at_ms = ?, "
        "version = version + 1 WHERE order_id = ? AND version = ?",
        (saga.status.value, saga.deadline_ms, _encode(saga), saga.updated_at_ms,
         saga.order_id, version),
    )  # fmt: skip
    if changed != 1:
        raise ConcurrentUpdateError(f"saga {saga.order_id} moved since version {version}")


async def _create_tables(settings: ShopSettings) -> None:
    async with app.transaction() as tx:
        for statement in _DDL:
            await tx.execute(statement)
    _timer.start(settings)


# ----------------------------------------------------------------------------- handlers


@app.handler(
    ORDERS,
    idempotent=True,
    concurrency=16,
    publishes={INVENTORY_COMMANDS: ReserveStock},
)
async def begin(event: OrderPlaced, ctx: Context) -> None:
    """A new order: create its saga and ask inventory for the stock."""
    tx = ctx.transaction
    if await _load(tx, event.order_id) is not None:
        return  # the same order published twice (an outbox row relayed again)
    step = start(event, now_ms=_now_ms(), timeouts=web.settings.timeouts)
    saga = step.saga
    await tx.execute(
        "INSERT INTO sagas (order_id, status, version, deadline_ms, correlation_id, data, "
        "updated_at_ms) VALUES (?, ?, 0, ?, ?, ?, ?)",
        (saga.order_id, saga.status.value, saga.deadline_ms, ctx.correlation_id,
         _encode(saga), saga.updated_at_ms),
    )  # fmt: skip
    for topic, command in step.publish:
        await ctx.publish(topic, command, key=saga.order_id)


Reply = (
    StockReserved
    | StockRejected
    | StockReleased
    | StockReplenished
    | PaymentAuthorized
    | PaymentDeclined
    | PaymentVoided
    | PaymentCaptured
    | ShipmentCreated
    | ShipmentDispatched
)
_MOVES = (
    StockReserved,
    StockRejected,
    PaymentAuthorized,
    PaymentDeclined,
    ShipmentDispatched,
    PaymentCaptured,
)


@app.handler(
    (INVENTORY, PAYMENTS, SHIPMENTS),
    idempotent=True,
    concurrency=16,
    publishes={
        ORDER_STATUS: (OrderConfirmed, OrderShipped, OrderCancelled),
        INVENTORY_COMMANDS: ReleaseStock,
        PAYMENT_COMMANDS: (AuthorizePayment, VoidPayment, CapturePayment),
        SHIPPING_COMMANDS: CreateShipment,
    },
)
async def on_reply(event: Reply, ctx: Context) -> None:
    """A service answered: move the order's saga by the transition table."""
    if not isinstance(event, _MOVES):
        return  # facts the saga does not wait for (releases, voids, restocking, creation)
    loaded = await _load(ctx.transaction, event.order_id)
    if loaded is None:
        ctx.logger.warning("%s for unknown order %s", type(event).__name__, event.order_id)
        return
    saga, version, _ = loaded
    step = advance(saga, event, now_ms=_now_ms(), timeouts=web.settings.timeouts)
    if step is not None:
        await _apply(ctx.transaction, step, version, ctx.publish)


class Publish(Protocol):
    """``ctx.publish`` or ``tx.publish`` with the order's correlation id."""

    async def __call__(self, topic: str, event: Event, *, key: str) -> str: ...


async def _apply(tx: Transaction, step: Step, version: int, publish: Publish) -> None:
    await _save(tx, step.saga, version)
    for topic, message in step.publish:
        await publish(topic, message, key=step.saga.order_id)


# ----------------------------------------------------------------------------- timeouts


class _TimeoutTimer:
    """Fires ``Timeout`` for sagas whose deadline passed, until the service stops."""

    batch = 200

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, settings: ShopSettings) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(settings), name="saga-timeouts"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, settings: ShopSettings) -> None:
        while True:
            try:
                fired = await self.scan(settings)
            except Exception:  # noqa: BLE001 - a failed scan is retried at the next one
                _log.exception("saga timeout scan failed")
                fired = 0
            if fired < self.batch:
                await asyncio.sleep(settings.timeout_scan_interval_s)

    async def scan(self, settings: ShopSettings) -> int:
        """Time out every saga whose deadline passed (up to a batch); returns how many."""
        now = _now_ms()
        async with app.transaction() as tx:
            due = await tx.fetchall(
                "SELECT order_id FROM sagas WHERE deadline_ms IS NOT NULL AND deadline_ms <= ? "
                "ORDER BY deadline_ms LIMIT ?",
                (now, self.batch),
            )
        fired = 0
        for (order_id,) in due:
            async with app.transaction() as tx:
                loaded = await _load(tx, order_id)
                if loaded is None:
                    continue
                saga, version, correlation = loaded
                step = advance(saga, Timeout(order_id), now_ms=now, timeouts=settings.timeouts)
                if step is None:
                    continue
                try:
                    await _apply(tx, step, version, _continuing(tx, correlation))
                except ConcurrentUpdateError:
                    continue  # a reply moved it first; the next scan looks again
                _log.info("order %s: %s", order_id, step.saga.reason)
                fired += 1
        return fired


def _continuing(tx: Transaction, correlation_id: str) -> Publish:
    # Events the timer publishes continue the order's flow (its correlation id).
    async def publish(topic: str, event: Event, *, key: str) -> str:
        return await tx.publish(topic, event, key=key, correlation_id=correlation_id)

    return publish


_timer = _TimeoutTimer()
web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_create_tables)
app.on_shutdown(_timer.stop)


# ----------------------------------------------------------------------------- API


@api.get("/sagas/{order_id}")
async def get_saga(order_id: str) -> Any:
    """One order's saga."""
    async with app.transaction() as tx:
        loaded = await _load(tx, order_id)
    if loaded is None:
        return JSONResponse(status_code=404, content={"detail": f"no saga for order {order_id}"})
    saga, version, correlation = loaded
    return {
        "order_id": saga.order_id,
        "status": saga.status.value,
        "reason": saga.reason,
        "deadline_ms": saga.deadline_ms,
        "version": version,
        "correlation_id": correlation,
        "updated_at_ms": saga.updated_at_ms,
    }


@api.get("/sagas")
async def count_sagas() -> dict[str, int]:
    """Sagas per state."""
    async with app.transaction() as tx:
        rows = await tx.fetchall("SELECT status, COUNT(*) FROM sagas GROUP BY status")
    counts = {status.value: 0 for status in Status}
    counts.update({status: int(n) for status, n in rows})
    return counts
