"""The notifications service: order status events delivered to HTTP subscribers as webhooks.

Two steps, so that one failing subscriber never holds back another:

1. **Fan-out** (``order-status`` -> ``webhooks``): for each subscriber that wants the
   event's type, a ``WebhookRequested`` is published through the outbox, in the
   idempotent handler's transaction. Its ``delivery_id`` is derived from the event id
   and the subscription, so it is the same however often the event arrives.
2. **Delivery** (``webhooks`` -> HTTP): the body is signed with the subscription's
   secret (HMAC-SHA256, Standard Webhooks headers, see :mod:`shop.domain.webhooks`)
   and POSTed with the ``delivery_id`` as ``idempotency-key``. A 2xx answer is
   recorded as delivered. A network error, 408, 429 or 5xx is retried in place with
   exponential backoff and jitter, then through ``webhooks-retry-1000`` and
   ``webhooks-retry-5000``, then the delivery goes to the dead-letter topic
   ``webhooks-dlt`` with the last error (inspect and replay with ``rivulet dlq``).
   Nine calls over about seven seconds: short, because this is a system you watch
   run; a production policy would retry for hours (longer ``topics`` delays).
   Any other 4xx means the endpoint refuses this delivery: it is dead-lettered at once.

Subscriptions are managed over HTTP: ``PUT /subscriptions/{id}`` (url, secret,
event types), ``GET /subscriptions``, ``DELETE /subscriptions/{id}``;
``GET /deliveries`` lists what was delivered.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rivulet import App, Backoff, Context, NonRetriableError, RetryPolicy, Transaction
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.webhooks import Subscription, delivery_id, sign
from shop.events import (
    ORDER_STATUS,
    WEBHOOKS,
    OrderCancelled,
    OrderConfirmed,
    OrderShipped,
    WebhookRequested,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "WebhookDeliveryError", "api", "app"]

DEFAULT_PORT = 8086

app = App(
    "notifications",
    description="Signed webhooks for order status events.",
    serializers=serializers(),
)
declare_topic(app, WEBHOOKS)

api = FastAPI(title="Rivulet shop: notifications", version="1.0.0")

_DDL = (
    """CREATE TABLE IF NOT EXISTS subscriptions (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        event_types TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        delivery_id TEXT PRIMARY KEY,
        subscription_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        order_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        last_error TEXT,
        updated_at_ms BIGINT NOT NULL
    )""",
)

_RETRIABLE_STATUS = frozenset({408, 425, 429})


class WebhookDeliveryError(RuntimeError):
    """The subscriber did not accept the delivery this time (retried)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Client:
    """One HTTP client for the service's life (connection reuse per subscriber host).

    aiohttp rather than httpx: deliveries are this service's hot path, and aiohttp's
    client takes a fraction of the CPU per request.
    """

    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None

    async def start(self, settings: ShopSettings) -> None:
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_s),
            connector=aiohttp.TCPConnector(limit=64),
        )

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None


client = _Client()


async def _start(settings: ShopSettings) -> None:
    async with app.transaction() as tx:
        for statement in _DDL:
            await tx.execute(statement)
    await client.start(settings)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_start)
app.on_shutdown(client.stop)


async def _subscriptions(tx: Transaction) -> list[Subscription]:
    rows = await tx.fetchall("SELECT id, url, secret, event_types FROM subscriptions ORDER BY id")
    return [
        Subscription(sid, url, secret, frozenset(json.loads(types)))
        for sid, url, secret, types in rows
    ]


@app.handler(ORDER_STATUS, idempotent=True, concurrency=16, publishes={WEBHOOKS: WebhookRequested})
async def fan_out(event: OrderConfirmed | OrderShipped | OrderCancelled, ctx: Context) -> None:
    """One ``WebhookRequested`` per subscriber that wants this event type."""
    event_type = type(event).__name__
    for subscription in await _subscriptions(ctx.transaction):
        if subscription.wants(event_type):
            request = WebhookRequested(
                delivery_id=delivery_id(subscription.id, ctx.event_id),
                subscription_id=subscription.id,
                event_id=ctx.event_id,
                event_type=event_type,
                order_id=event.order_id,
                payload=event.model_dump(mode="json"),
                requested_at_ms=_now_ms(),
            )
            await ctx.publish(WEBHOOKS, request, key=event.order_id)


@app.handler(
    WEBHOOKS,
    concurrency=32,
    retry=RetryPolicy(
        attempts=3,
        backoff=Backoff(initial_ms=100, multiplier=2.0, max_ms=1_000),
        topics=(1_000, 5_000),
    ),
)
async def deliver(request: WebhookRequested, ctx: Context) -> None:
    """POST the signed delivery; raise to retry, NonRetriableError to dead-letter."""
    async with app.transaction() as tx:
        row = await tx.fetchone(
            "SELECT id, url, secret, event_types FROM subscriptions WHERE id = ?",
            (request.subscription_id,),
        )
    if row is None:
        ctx.logger.info("subscription %s was deleted; dropping", request.subscription_id)
        return
    subscription = Subscription(row[0], row[1], row[2], frozenset(json.loads(row[3])))
    body = json.dumps(
        {
            "id": request.delivery_id,
            "type": request.event_type,
            "event_id": request.event_id,
            "order_id": request.order_id,
            "data": request.payload,
        },
        separators=(",", ":"),
    ).encode()
    headers = sign(request.delivery_id, body, secret=subscription.secret, now_s=_now_ms() // 1000)
    assert client.http is not None, "started with the service"
    try:
        async with client.http.post(
            subscription.url,
            data=body,
            headers={**headers, "content-type": "application/json"},
            allow_redirects=False,
        ) as response:
            status = response.status
            await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        await _attempted(request, f"{type(exc).__name__}: {exc}")
        raise WebhookDeliveryError(f"{subscription.url}: {type(exc).__name__}: {exc}") from exc
    if 200 <= status < 300:
        await _attempted(request, None)
        return
    error = f"HTTP {status} from {subscription.url}"
    await _attempted(request, error)
    if status >= 500 or status in _RETRIABLE_STATUS:
        raise WebhookDeliveryError(error)
    raise NonRetriableError(f"{error}: the endpoint refuses this delivery")


async def _attempted(request: WebhookRequested, error: str | None) -> None:
    async with app.transaction() as tx:
        await tx.execute(
            "INSERT INTO deliveries (delivery_id, subscription_id, event_type, order_id, status, "
            "attempts, last_error, updated_at_ms) VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
            "ON CONFLICT (delivery_id) DO UPDATE SET attempts = deliveries.attempts + 1, "
            "status = CASE WHEN deliveries.status = 'delivered' THEN 'delivered' "
            "ELSE excluded.status END, last_error = excluded.last_error, "
            "updated_at_ms = excluded.updated_at_ms",
            (request.delivery_id, request.subscription_id, request.event_type, request.order_id,
             "failing" if error else "delivered", error, _now_ms()),
        )  # fmt: skip


# ----------------------------------------------------------------------------- API


class SubscriptionRequest(BaseModel):
    """``PUT /subscriptions/{id}`` body."""

    url: str = Field(pattern=r"^https?://", max_length=2_000)
    secret: str = Field(min_length=8, max_length=200)
    event_types: list[str] = Field(
        default=["OrderConfirmed", "OrderShipped", "OrderCancelled"], min_length=1
    )


@api.put("/subscriptions/{subscription_id}", status_code=200)
async def subscribe(subscription_id: str, request: SubscriptionRequest) -> dict[str, Any]:
    """Create or replace a subscription."""
    async with app.transaction() as tx:
        await tx.execute(
            "INSERT INTO subscriptions (id, url, secret, event_types, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url, "
            "secret = excluded.secret, event_types = excluded.event_types",
            (subscription_id, request.url, request.secret, json.dumps(request.event_types),
             _now_ms()),
        )  # fmt: skip
    return {"id": subscription_id, "url": request.url, "event_types": request.event_types}


@api.get("/subscriptions")
async def list_subscriptions() -> list[dict[str, Any]]:
    """Every subscription (secrets left out)."""
    async with app.transaction() as tx:
        subscriptions = await _subscriptions(tx)
    return [{"id": s.id, "url": s.url, "event_types": sorted(s.event_types)} for s in subscriptions]


@api.delete("/subscriptions/{subscription_id}", status_code=204, response_model=None)
async def unsubscribe(subscription_id: str) -> JSONResponse | None:
    """Remove a subscription (pending deliveries to it are dropped)."""
    async with app.transaction() as tx:
        removed = await tx.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
    if removed == 0:
        return JSONResponse(
            status_code=404, content={"detail": f"no subscription {subscription_id}"}
        )
    return None


@api.get("/deliveries")
async def deliveries() -> dict[str, Any]:
    """Deliveries by status, and the ones not (yet) delivered."""
    async with app.transaction() as tx:
        counts = await tx.fetchall("SELECT status, COUNT(*) FROM deliveries GROUP BY status")
        failing = await tx.fetchall(
            "SELECT delivery_id, order_id, event_type, attempts, last_error FROM deliveries "
            "WHERE status <> 'delivered' ORDER BY updated_at_ms DESC LIMIT 100"
        )
    return {
        "by_status": {status: int(n) for status, n in counts},
        "failing": [
            {"delivery_id": d, "order_id": o, "event_type": t, "attempts": a, "last_error": e}
            for d, o, t, a, e in failing
        ],
    }
