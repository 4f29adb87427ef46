"""Payments: a simulated card provider, and the per-order ledger that never charges twice.

**The provider** (:class:`ProviderSimulator`) answers authorize, void and capture
calls after a configurable latency; a configurable share of authorizations is
declined and a share of calls fails transiently. Transient failures come in the two
kinds that make idempotency keys necessary: the call failed before the provider did
anything (``before``), or the provider did it and the answer was lost (``after``,
a timeout). Every outcome is a pure function of the seed, the order and the attempt,
so runs are reproducible and a restarted service decides the same way.

**Idempotency at the provider**: each call carries the key ``<order>:<operation>``;
the provider stores its answer under that key and returns the stored answer to a
repeated call (:func:`provider_answer`), like real payment APIs do. A retry after a
lost answer therefore gets the original answer, and the money moves once.

**The ledger** (:func:`plan` and :func:`complete`) is the service's own record of
each order's payment. A command either needs a provider call, or is answered from
the ledger: a repeated authorization gets the earlier result, a void before any
authorization leaves a tombstone that refuses a late authorization, a capture is
only possible once and only of an authorized, unvoided payment.

>>> sim = ProviderSimulator(ProviderConfig(decline_rate=0.0, transient_failure_rate=0.0), seed=1)
>>> call = sim.call(Operation.AUTHORIZE, "o-1", amount_cents=500, attempt=1)
>>> call.answer.approved, call.failure
(True, None)
>>> step = plan(None, AuthorizePayment(order_id="o-1", customer_id="c", amount_cents=500))
>>> step
NeedsProvider(operation=<Operation.AUTHORIZE: 'authorize'>, amount_cents=500)
>>> payment, reply = complete(None, step, call.answer, order_id="o-1", now_ms=0)
>>> payment.status, type(reply).__name__
(<PaymentStatus.AUTHORIZED: 'authorized'>, 'PaymentAuthorized')
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from shop.events import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentEvent,
    PaymentVoided,
    VoidPayment,
)

__all__ = [
    "DECLINE_REASONS",
    "Answered",
    "Call",
    "IdempotencyKeyReuseError",
    "NeedsProvider",
    "Operation",
    "Payment",
    "PaymentCommand",
    "PaymentRuleError",
    "PaymentStatus",
    "ProviderAnswer",
    "ProviderConfig",
    "ProviderSimulator",
    "complete",
    "idempotency_key",
    "plan",
    "provider_answer",
]

PaymentCommand = AuthorizePayment | VoidPayment | CapturePayment

DECLINE_REASONS = ("insufficient funds", "card expired", "suspected fraud", "do not honor")


class Operation(StrEnum):
    """A provider API call."""

    AUTHORIZE = "authorize"
    VOID = "void"
    CAPTURE = "capture"


class PaymentStatus(StrEnum):
    """Where an order's payment stands in the ledger."""

    AUTHORIZED = "authorized"
    DECLINED = "declined"
    VOIDED = "voided"
    CAPTURED = "captured"


class PaymentRuleError(ValueError):
    """A command the ledger must refuse (capture of a voided payment, ...): a bug upstream."""


class IdempotencyKeyReuseError(ValueError):
    """A provider call reused an idempotency key with different parameters."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """How the simulated provider behaves."""

    #: Share of authorizations declined.
    decline_rate: float = 0.05
    #: Share of calls failing transiently (half before, half after the provider acted).
    transient_failure_rate: float = 0.02
    #: Latency of every call: ``latency_ms`` plus up to ``latency_jitter_ms`` more.
    latency_ms: int = 5
    latency_jitter_ms: int = 10

    def __post_init__(self) -> None:
        for name in ("decline_rate", "transient_failure_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.latency_ms < 0 or self.latency_jitter_ms < 0:
            raise ValueError("latencies must not be negative")


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """What the provider answered (stored under the call's idempotency key)."""

    operation: Operation
    amount_cents: int
    approved: bool
    reference: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Call:
    """One simulated call: how long it takes, its answer, and whether it fails."""

    latency_ms: int
    answer: ProviderAnswer
    #: ``before``: nothing happened; ``after``: it happened but the answer was lost.
    failure: Literal["before", "after"] | None


def idempotency_key(order_id: str, operation: Operation) -> str:
    """The key of an order's call (one authorization, one void, one capture per order)."""
    return f"{order_id}:{operation.value}"


class ProviderSimulator:
    """A card provider whose every decision is a pure function of seed, order and attempt."""

    def __init__(self, config: ProviderConfig, *, seed: int | str) -> None:
        self.config = config
        self.seed = seed

    def _rng(self, *parts: object) -> random.Random:
        # String seeds are hashed with SHA-512, so the stream is the same in every process.
        return random.Random(":".join(map(str, (self.seed, *parts))))  # noqa: S311 - a simulation

    def call(self, operation: Operation, order_id: str, *, amount_cents: int, attempt: int) -> Call:
        """The outcome of call number ``attempt`` (1-based) for ``operation`` on the order."""
        config = self.config
        timing = self._rng(order_id, operation.value, attempt)
        latency = config.latency_ms + round(timing.random() * config.latency_jitter_ms)
        failure: Literal["before", "after"] | None = None
        if timing.random() < config.transient_failure_rate:
            failure = "before" if timing.random() < 0.5 else "after"
        # The decision itself does not depend on the attempt: retrying a decline is futile.
        decision = self._rng(order_id, operation.value)
        approved, reason = True, ""
        if operation is Operation.AUTHORIZE and decision.random() < config.decline_rate:
            approved, reason = False, decision.choice(DECLINE_REASONS)
        reference = f"{operation.value[:3]}_{decision.getrandbits(48):012x}"
        return Call(
            latency, ProviderAnswer(operation, amount_cents, approved, reference, reason), failure
        )


def provider_answer(stored: ProviderAnswer | None, fresh: ProviderAnswer) -> ProviderAnswer:
    """The answer to give for a key: the stored one when the key was seen before."""
    if stored is None:
        return fresh
    if stored.operation is not fresh.operation or stored.amount_cents != fresh.amount_cents:
        raise IdempotencyKeyReuseError(
            f"idempotency key reused for {fresh.operation.value} of {fresh.amount_cents} "
            f"after {stored.operation.value} of {stored.amount_cents}"
        )
    return stored


@dataclass(frozen=True, slots=True)
class Payment:
    """The ledger's record of one order's payment."""

    order_id: str
    status: PaymentStatus
    amount_cents: int = 0
    authorization_id: str = ""
    captured_cents: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class NeedsProvider:
    """The command needs this provider call; then :func:`complete`."""

    operation: Operation
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Answered:
    """The ledger answers the command itself (``reply`` may be ``None``: nothing to say)."""

    payment: Payment | None
    reply: PaymentEvent | None


def _repeat(payment: Payment, now_ms: int) -> PaymentEvent:
    # The answer a repeated command gets: the ledger's current truth.
    if payment.status is PaymentStatus.AUTHORIZED:
        return PaymentAuthorized(
            order_id=payment.order_id,
            authorization_id=payment.authorization_id,
            amount_cents=payment.amount_cents,
        )
    if payment.status is PaymentStatus.CAPTURED:
        return PaymentCaptured(
            order_id=payment.order_id, amount_cents=payment.captured_cents, at_ms=now_ms
        )
    if payment.status is PaymentStatus.DECLINED:
        return PaymentDeclined(order_id=payment.order_id, reason=payment.reason)
    return PaymentDeclined(order_id=payment.order_id, reason="order cancelled")


def plan(
    payment: Payment | None, command: PaymentCommand, *, now_ms: int = 0
) -> NeedsProvider | Answered:
    """What to do with ``command`` given the order's ledger record."""
    if isinstance(command, AuthorizePayment):
        if payment is None:
            return NeedsProvider(Operation.AUTHORIZE, command.amount_cents)
        return Answered(payment, _repeat(payment, now_ms))
    if isinstance(command, VoidPayment):
        if payment is None:
            tombstone = Payment(command.order_id, PaymentStatus.VOIDED, reason=command.reason)
            return Answered(tombstone, PaymentVoided(order_id=command.order_id))
        if payment.status is PaymentStatus.AUTHORIZED:
            return NeedsProvider(Operation.VOID, payment.amount_cents)
        if payment.status is PaymentStatus.CAPTURED:
            raise PaymentRuleError(f"order {command.order_id}: cannot void a captured payment")
        return Answered(payment, None)
    if payment is None or payment.status in (PaymentStatus.DECLINED, PaymentStatus.VOIDED):
        state = "no payment" if payment is None else f"a {payment.status.value} payment"
        raise PaymentRuleError(f"order {command.order_id}: cannot capture {state}")
    if payment.status is PaymentStatus.CAPTURED:
        return Answered(payment, _repeat(payment, now_ms))
    if command.amount_cents > payment.amount_cents:
        raise PaymentRuleError(
            f"order {command.order_id}: capture of {command.amount_cents} exceeds the "
            f"authorized {payment.amount_cents}"
        )
    return NeedsProvider(Operation.CAPTURE, command.amount_cents)


def complete(
    payment: Payment | None,
    needs: NeedsProvider,
    answer: ProviderAnswer,
    *,
    order_id: str,
    now_ms: int,
) -> tuple[Payment, PaymentEvent]:
    """The ledger record and the reply after the provider answered ``needs``."""
    if needs.operation is Operation.AUTHORIZE:
        if not answer.approved:
            declined = Payment(
                order_id, PaymentStatus.DECLINED, needs.amount_cents, reason=answer.reason
            )
            return declined, PaymentDeclined(order_id=order_id, reason=answer.reason)
        authorized = Payment(
            order_id,
            PaymentStatus.AUTHORIZED,
            needs.amount_cents,
            authorization_id=answer.reference,
        )
        return authorized, _repeat(authorized, now_ms)
    assert payment is not None, "void and capture are planned from an authorized payment"
    if needs.operation is Operation.VOID:
        return (
            dataclasses.replace(payment, status=PaymentStatus.VOIDED),
            PaymentVoided(order_id=order_id),
        )
    captured = dataclasses.replace(
        payment, status=PaymentStatus.CAPTURED, captured_cents=needs.amount_cents
    )
    return captured, _repeat(captured, now_ms)
