"""The payments service: the saga's payment commands against a simulated card provider.

Each command is planned against the service's ledger (:mod:`shop.domain.payments`):
either the ledger answers it (a repeated or late command), or it needs a provider call.
The provider call is made *outside* any database transaction (it takes time and must
not hold the database), with the idempotency key ``<order>:<operation>``; the
simulated provider stores its answer under that key (table ``provider_requests``,
standing for the provider's own records) and gives it again to a repeated call, so a
retry after a lost answer moves the money once. The ledger is then updated and the
reply published.

Transient provider failures raise :class:`ProviderUnavailableError`: the framework
retries in place with backoff, then through the retry topics
``payment-commands-retry-2000`` and ``-10000``, then dead-letters the command to
``payment-commands-dlt`` (and the saga's timeout compensates the order). Commands the
ledger must refuse (:class:`~shop.domain.payments.PaymentRuleError`) go straight to
the dead-letter topic.

Replies are published directly (not through the outbox) with ids derived from the
command's: a redelivered command answered again produces the same event ids, which
the saga's idempotent handler drops.

``GET /payments`` lists the ledger; ``GET /payments/summary`` totals it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI

from rivulet import App, Backoff, Context, RetryPolicy, Transaction
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.payments import (
    Answered,
    IdempotencyKeyReuseError,
    NeedsProvider,
    Operation,
    Payment,
    PaymentCommand,
    PaymentRuleError,
    PaymentStatus,
    ProviderAnswer,
    ProviderConfig,
    ProviderSimulator,
    complete,
    idempotency_key,
    plan,
    provider_answer,
)
from shop.events import (
    PAYMENT_COMMANDS,
    PAYMENTS,
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentVoided,
    VoidPayment,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "ProviderUnavailableError", "api", "app"]

DEFAULT_PORT = 8083

app = App(
    "payments",
    description="Authorizes, voids and captures payments, once per order.",
    serializers=serializers(),
)
declare_topic(app, PAYMENTS)

api = FastAPI(title="Rivulet shop: payments", version="1.0.0")

_DDL = (
    """CREATE TABLE IF NOT EXISTS payments (
        order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        amount_cents BIGINT NOT NULL,
        authorization_id TEXT NOT NULL,
        captured_cents BIGINT NOT NULL,
        reason TEXT NOT NULL,
        updated_at_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS provider_requests (
        idempotency_key TEXT PRIMARY KEY,
        operation TEXT NOT NULL,
        amount_cents BIGINT NOT NULL,
        approved BOOLEAN NOT NULL,
        reference TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL
    )""",
)


class ProviderUnavailableError(RuntimeError):
    """The simulated provider failed transiently (retried by the framework)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Provider:
    """The simulator plus the attempt count per call, which drives its transient failures."""

    def __init__(self) -> None:
        self.simulator = ProviderSimulator(ProviderConfig(), seed=42)
        self._attempts: dict[str, int] = {}

    async def call(self, order_id: str, needs: NeedsProvider) -> ProviderAnswer:
        key = idempotency_key(order_id, needs.operation)
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        call = self.simulator.call(
            needs.operation, order_id, amount_cents=needs.amount_cents, attempt=attempt
        )
        await asyncio.sleep(call.latency_ms / 1000)
        if call.failure == "before":
            raise ProviderUnavailableError(f"provider unreachable ({needs.operation.value})")
        async with app.transaction() as tx:
            stored = await _stored_answer(tx, key)
            answer = provider_answer(stored, call.answer)
            if stored is None:
                await tx.execute(
                    "INSERT INTO provider_requests (idempotency_key, operation, amount_cents, "
                    "approved, reference, reason, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, answer.operation.value, answer.amount_cents, answer.approved,
                     answer.reference, answer.reason, _now_ms()),
                )  # fmt: skip
        if call.failure == "after":
            raise ProviderUnavailableError(
                f"provider timed out ({needs.operation.value}); it may have acted: the "
                "retry reuses the idempotency key"
            )
        self._attempts.pop(key, None)
        return answer


async def _stored_answer(tx: Transaction, key: str) -> ProviderAnswer | None:
    row = await tx.fetchone(
        "SELECT operation, amount_cents, approved, reference, reason FROM provider_requests "
        "WHERE idempotency_key = ?",
        (key,),
    )
    if row is None:
        return None
    operation, amount, approved, reference, reason = row
    return ProviderAnswer(Operation(operation), int(amount), bool(approved), reference, reason)


async def _ledger(tx: Transaction, order_id: str) -> Payment | None:
    row = await tx.fetchone(
        "SELECT status, amount_cents, authorization_id, captured_cents, reason FROM payments "
        "WHERE order_id = ?",
        (order_id,),
    )
    if row is None:
        return None
    status, amount, authorization, captured, reason = row
    return Payment(
        order_id, PaymentStatus(status), int(amount), authorization, int(captured), reason
    )


async def _record(tx: Transaction, payment: Payment) -> None:
    await tx.execute(
        "INSERT INTO payments (order_id, status, amount_cents, authorization_id, captured_cents, "
        "reason, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE "
        "SET status = excluded.status, amount_cents = excluded.amount_cents, "
        "authorization_id = excluded.authorization_id, captured_cents = excluded.captured_cents, "
        "reason = excluded.reason, updated_at_ms = excluded.updated_at_ms",
        (payment.order_id, payment.status.value, payment.amount_cents, payment.authorization_id,
         payment.captured_cents, payment.reason, _now_ms()),
    )  # fmt: skip


provider = _Provider()


async def _start(settings: ShopSettings) -> None:
    provider.simulator = ProviderSimulator(settings.provider, seed=settings.seed)
    async with app.transaction() as tx:
        for statement in _DDL:
            await tx.execute(statement)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_start)


@app.handler(
    PAYMENT_COMMANDS,
    concurrency=32,
    retry=RetryPolicy(
        attempts=4,
        backoff=Backoff(initial_ms=50, multiplier=2.0, max_ms=1_000),
        topics=(2_000, 10_000),
        non_retriable=(PaymentRuleError, IdempotencyKeyReuseError),
    ),
    publishes={PAYMENTS: (PaymentAuthorized, PaymentDeclined, PaymentVoided, PaymentCaptured)},
)
async def handle(command: AuthorizePayment | VoidPayment | CapturePayment, ctx: Context) -> None:
    """Plan against the ledger, call the provider if needed, record, reply."""
    order_id = command.order_id
    async with app.transaction() as tx:
        payment = await _ledger(tx, order_id)
    step = plan(payment, command, now_ms=_now_ms())
    if isinstance(step, NeedsProvider):
        answer = await provider.call(order_id, step)
        async with app.transaction() as tx:
            if await _ledger(tx, order_id) != payment:
                raise ProviderUnavailableError(f"payment {order_id} changed meanwhile; retrying")
            payment, reply = complete(payment, step, answer, order_id=order_id, now_ms=_now_ms())
            await _record(tx, payment)
        await ctx.publish(PAYMENTS, reply, key=order_id)
        return
    await _answer(step, payment, command, ctx)


async def _answer(
    step: Answered, before: Payment | None, command: PaymentCommand, ctx: Context
) -> None:
    if step.payment is not None and step.payment != before:
        async with app.transaction() as tx:
            await _record(tx, step.payment)
    if step.reply is not None:
        await ctx.publish(PAYMENTS, step.reply, key=command.order_id)


# ----------------------------------------------------------------------------- API


@api.get("/payments")
async def payments() -> dict[str, Any]:
    """Every order's payment in the ledger, and the provider's captures."""
    async with app.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT order_id, status, amount_cents, captured_cents, reason FROM payments"
        )
        captures = await tx.fetchone(
            "SELECT COUNT(*), COALESCE(SUM(amount_cents), 0) FROM provider_requests "
            "WHERE operation = 'capture'"
        )
    assert captures is not None
    return {
        "payments": {
            order: {"status": status, "amount_cents": int(amount), "captured_cents": int(cap),
                    "reason": reason}
            for order, status, amount, cap, reason in rows
        },
        "provider_captures": {"count": int(captures[0]), "amount_cents": int(captures[1])},
    }  # fmt: skip


@api.get("/payments/summary")
async def summary() -> dict[str, Any]:
    """Payments per status and the total captured."""
    async with app.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT status, COUNT(*), COALESCE(SUM(captured_cents), 0) FROM payments "
            "GROUP BY status"
        )
    return {
        "by_status": {status: int(n) for status, n, _ in rows},
        "captured_cents": sum(int(cents) for _, _, cents in rows),
    }
