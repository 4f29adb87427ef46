"""The orders service: the shop's HTTP API, and the order's status as the saga reports it.

``POST /orders`` prices the request against the catalog and writes the order and its
``OrderPlaced`` event in one database transaction (the transactional outbox): the
event is published if and only if the order was stored. An ``Idempotency-Key``
header makes a retried request return the order it already created.

Run it alone with ``rivulet run shop.orders:app`` (API on ``SHOP_HTTP``, default
127.0.0.1:8080, documented at ``/docs`` and ``/openapi.json``).

Bad requests get a 4xx with a body saying what is wrong: 400 for malformed JSON,
413 for a body over 64 KiB, 422 for an unknown SKU, a quantity out of range or a
missing field, 404 for an unknown order.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rivulet import App, Context, Transaction
from shop._web import LimitBodySize, WebService
from shop.config import ShopSettings
from shop.domain.orders import ORDER_STATES, next_status, price
from shop.events import (
    ORDER_STATUS,
    ORDERS,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "MAX_BODY_BYTES", "api", "app"]

DEFAULT_PORT = 8080
MAX_BODY_BYTES = 64 * 1024

app = App(
    "orders",
    description="Accepts orders over HTTP and tracks their status.",
    serializers=serializers(),
)
declare_topic(app, ORDERS)
app.publishes(ORDERS, OrderPlaced)

api = FastAPI(
    title="Rivulet shop: orders",
    version="1.0.0",
    description="Place orders and follow them through the saga to shipped or cancelled.",
)

_DDL = (
    """CREATE TABLE IF NOT EXISTS orders (
        order_id TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        status TEXT NOT NULL,
        reason TEXT,
        total_cents BIGINT NOT NULL,
        lines TEXT NOT NULL,
        placed_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        idempotency_key TEXT UNIQUE
    )""",
    "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, order_id)",
)
_COLUMNS = "order_id, customer_id, status, reason, total_cents, lines, placed_at_ms, updated_at_ms"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _new_order_id(now_ms: int) -> str:
    # Time-ordered (lists page by id) and unique across processes and restarts.
    return f"ord_{now_ms:012x}{secrets.token_hex(5)}"


async def _create_tables(_settings: ShopSettings) -> None:
    async with app.transaction() as tx:
        for statement in _DDL:
            await tx.execute(statement)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_create_tables)
api.add_middleware(LimitBodySize, max_bytes=MAX_BODY_BYTES)


# ----------------------------------------------------------------------------- API models


class LineRequest(BaseModel):
    """One line of an order request."""

    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=64, examples=["TEE-CLASSIC-BLK-M"])
    quantity: int = Field(gt=0, le=1_000, examples=[2])


class OrderRequest(BaseModel):
    """``POST /orders`` body."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(min_length=1, max_length=64, examples=["cus-00042"])
    lines: list[LineRequest] = Field(min_length=1, max_length=50)


class LineView(BaseModel):
    """A line of a stored order."""

    sku: str
    quantity: int
    unit_price_cents: int


class OrderView(BaseModel):
    """An order and where it stands."""

    order_id: str
    customer_id: str
    status: Literal["placed", "confirmed", "shipped", "cancelled"]
    reason: str | None
    total_cents: int
    lines: list[LineView]
    placed_at_ms: int
    updated_at_ms: int


class OrderPage(BaseModel):
    """A page of orders; pass ``next_after`` as ``after`` for the next page."""

    orders: list[OrderView]
    next_after: str | None


class Summary(BaseModel):
    """How many orders are in each state."""

    total: int
    by_status: dict[str, int]


def _view(row: tuple[Any, ...]) -> OrderView:
    order_id, customer, status, reason, total, lines, placed, updated = row
    return OrderView(
        order_id=order_id,
        customer_id=customer,
        status=status,
        reason=reason,
        total_cents=int(total),
        lines=[LineView(sku=s, quantity=q, unit_price_cents=p) for s, q, p in json.loads(lines)],
        placed_at_ms=int(placed),
        updated_at_ms=int(updated),
    )


@api.exception_handler(RequestValidationError)
async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return JSONResponse(
            status_code=400,
            content={"detail": "the request body is not valid JSON", "errors": _plain(errors)},
        )
    return JSONResponse(status_code=422, content={"detail": _plain(errors)})


def _plain(errors: Any) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
    ]


async def _find(tx: Transaction, where: str, params: tuple[Any, ...]) -> OrderView | None:
    row = await tx.fetchone(f"SELECT {_COLUMNS} FROM orders WHERE {where}", params)  # noqa: S608 - fixed SQL
    return None if row is None else _view(row)


@api.post(
    "/orders",
    status_code=201,
    response_model=OrderView,
    responses={
        200: {"model": OrderView, "description": "The order this Idempotency-Key created"},
        400: {"description": "Malformed JSON"},
        413: {"description": "Body over 64 KiB"},
        422: {"description": "Unknown SKU, bad quantity or missing field"},
    },
)
async def place_order(
    request: OrderRequest,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> Any:
    """Accept an order: store it and publish ``OrderPlaced`` in one transaction."""
    priced = price([(line.sku, line.quantity) for line in request.lines])
    if priced.problems:
        detail = [
            {"loc": ["body"], "msg": problem, "type": "value_error"} for problem in priced.problems
        ]
        return JSONResponse(status_code=422, content={"detail": detail})
    now = _now_ms()
    order_id = _new_order_id(now)
    lines = [[line.sku, line.quantity, line.unit_price_cents] for line in priced.lines]
    async with app.transaction() as tx:
        if idempotency_key is not None:
            existing = await _find(tx, "idempotency_key = ?", (idempotency_key,))
            if existing is not None:
                return JSONResponse(status_code=200, content=existing.model_dump())
        await tx.execute(
            "INSERT INTO orders (order_id, customer_id, status, total_cents, lines, "
            "placed_at_ms, updated_at_ms, idempotency_key) VALUES (?, ?, 'placed', ?, ?, ?, ?, ?)",
            (order_id, request.customer_id, priced.total_cents, json.dumps(lines), now, now,
             idempotency_key),
        )  # fmt: skip
        await tx.publish(
            ORDERS,
            OrderPlaced(
                order_id=order_id,
                customer_id=request.customer_id,
                lines=priced.lines,
                total_cents=priced.total_cents,
                placed_at_ms=now,
            ),
            key=order_id,
        )
    return OrderView(
        order_id=order_id,
        customer_id=request.customer_id,
        status="placed",
        reason=None,
        total_cents=priced.total_cents,
        lines=[LineView(**line.model_dump()) for line in priced.lines],
        placed_at_ms=now,
        updated_at_ms=now,
    )


@api.get("/orders/summary", response_model=Summary)
async def summary() -> Summary:
    """Orders per status."""
    async with app.transaction() as tx:
        rows = await tx.fetchall("SELECT status, COUNT(*) FROM orders GROUP BY status")
    by_status = dict.fromkeys(ORDER_STATES, 0)
    by_status.update({status: int(count) for status, count in rows})
    return Summary(total=sum(by_status.values()), by_status=by_status)


@api.get("/orders/{order_id}", response_model=OrderView, responses={404: {}})
async def get_order(order_id: str) -> Any:
    """One order."""
    async with app.transaction() as tx:
        found = await _find(tx, "order_id = ?", (order_id,))
    if found is None:
        return JSONResponse(status_code=404, content={"detail": f"no order {order_id}"})
    return found


@api.get("/orders", response_model=OrderPage)
async def list_orders(
    status: Literal["placed", "confirmed", "shipped", "cancelled"] | None = None,
    after: str = "",
    limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
) -> OrderPage:
    """Orders in id (= placement) order, optionally of one status, a page at a time."""
    where, params = "order_id > ?", [after]
    if status is not None:
        where += " AND status = ?"
        params.append(status)
    async with app.transaction() as tx:
        rows = await tx.fetchall(
            f"SELECT {_COLUMNS} FROM orders WHERE {where} ORDER BY order_id LIMIT ?",  # noqa: S608
            (*params, limit),
        )
    orders = [_view(row) for row in rows]
    return OrderPage(
        orders=orders, next_after=orders[-1].order_id if len(orders) == limit else None
    )


# ----------------------------------------------------------------------------- status


_REPORTED = {OrderConfirmed: "confirmed", OrderShipped: "shipped", OrderCancelled: "cancelled"}


@app.handler(ORDER_STATUS, idempotent=True, concurrency=16)
async def track_status(event: OrderConfirmed | OrderShipped | OrderCancelled, ctx: Context) -> None:
    """Record the status the saga reports (the most advanced one wins)."""
    tx = ctx.transaction
    row = await tx.fetchone("SELECT status FROM orders WHERE order_id = ?", (event.order_id,))
    if row is None:
        ctx.logger.warning("status %s for unknown order %s", type(event).__name__, event.order_id)
        return
    status = next_status(row[0], _REPORTED[type(event)])
    if status != row[0]:
        reason = event.reason if isinstance(event, OrderCancelled) else None
        await tx.execute(
            "UPDATE orders SET status = ?, reason = COALESCE(?, reason), updated_at_ms = ? "
            "WHERE order_id = ?",
            (status, reason, event.at_ms, event.order_id),
        )
