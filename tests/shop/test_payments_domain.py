"""The payment simulator and ledger: determinism, idempotency keys, never charging twice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentVoided,
    VoidPayment,
)

AUTH = AuthorizePayment(order_id="o-1", customer_id="c", amount_cents=1000)
VOID = VoidPayment(order_id="o-1", reason="timeout")
CAPTURE = CapturePayment(order_id="o-1", amount_cents=1000)
APPROVE = ProviderAnswer(Operation.AUTHORIZE, 1000, approved=True, reference="aut_1")


def test_the_simulator_is_deterministic_per_seed_order_and_attempt() -> None:
    config = ProviderConfig(decline_rate=0.5, transient_failure_rate=0.5, latency_jitter_ms=50)
    a = ProviderSimulator(config, seed=3)
    b = ProviderSimulator(config, seed=3)
    calls = [(f"o-{n}", attempt) for n in range(50) for attempt in (1, 2)]
    assert [a.call(Operation.AUTHORIZE, o, amount_cents=1, attempt=t) for o, t in calls] == [
        b.call(Operation.AUTHORIZE, o, amount_cents=1, attempt=t) for o, t in calls
    ]
    other = ProviderSimulator(config, seed=4)
    assert [a.call(Operation.AUTHORIZE, o, amount_cents=1, attempt=1) for o, _ in calls] != [
        other.call(Operation.AUTHORIZE, o, amount_cents=1, attempt=1) for o, _ in calls
    ]


def test_a_decline_does_not_change_with_retries_but_transient_failures_do() -> None:
    sim = ProviderSimulator(ProviderConfig(decline_rate=0.3, transient_failure_rate=0.3), seed=1)
    for n in range(200):
        calls = [
            sim.call(Operation.AUTHORIZE, f"o-{n}", amount_cents=5, attempt=t) for t in (1, 2, 3)
        ]
        assert len({c.answer for c in calls}) == 1
    failures = [
        sim.call(Operation.CAPTURE, f"o-{n}", amount_cents=5, attempt=1).failure
        for n in range(2_000)
    ]
    assert 0.25 < sum(f is not None for f in failures) / len(failures) < 0.35
    assert {"before", "after"} <= set(failures)


def test_rates_follow_the_configuration() -> None:
    sim = ProviderSimulator(ProviderConfig(decline_rate=0.1, transient_failure_rate=0.0), seed=9)
    declined = sum(
        not sim.call(Operation.AUTHORIZE, f"o-{n}", amount_cents=5, attempt=1).answer.approved
        for n in range(5_000)
    )
    assert 400 < declined < 600
    assert all(
        sim.call(Operation.CAPTURE, f"o-{n}", amount_cents=5, attempt=1).answer.approved
        for n in range(200)
    ), "only authorizations are declined"


def test_latency_is_within_the_configured_range() -> None:
    sim = ProviderSimulator(ProviderConfig(latency_ms=20, latency_jitter_ms=5), seed=0)
    latencies = {
        sim.call(Operation.VOID, f"o-{n}", amount_cents=1, attempt=1).latency_ms for n in range(300)
    }
    assert min(latencies) >= 20
    assert max(latencies) <= 25


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="decline_rate"):
        ProviderConfig(decline_rate=1.5)


def test_the_provider_returns_the_stored_answer_for_a_repeated_key() -> None:
    other = ProviderAnswer(Operation.AUTHORIZE, 1000, approved=False, reference="aut_2", reason="x")
    assert provider_answer(APPROVE, other) is APPROVE
    assert provider_answer(None, other) is other
    with pytest.raises(IdempotencyKeyReuseError):
        provider_answer(APPROVE, ProviderAnswer(Operation.AUTHORIZE, 999, True, "aut_3"))
    assert idempotency_key("o-1", Operation.CAPTURE) == "o-1:capture"


def test_authorize_then_capture() -> None:
    needs = plan(None, AUTH)
    assert needs == NeedsProvider(Operation.AUTHORIZE, 1000)
    payment, reply = complete(None, needs, APPROVE, order_id="o-1", now_ms=5)
    assert reply == PaymentAuthorized(order_id="o-1", authorization_id="aut_1", amount_cents=1000)
    needs = plan(payment, CAPTURE)
    assert needs == NeedsProvider(Operation.CAPTURE, 1000)
    answer = ProviderAnswer(Operation.CAPTURE, 1000, True, "cap_1")
    payment, reply = complete(payment, needs, answer, order_id="o-1", now_ms=6)
    assert payment.status is PaymentStatus.CAPTURED
    assert payment.captured_cents == 1000
    assert reply == PaymentCaptured(order_id="o-1", amount_cents=1000, at_ms=6)


def test_repeated_commands_are_answered_from_the_ledger() -> None:
    authorized = Payment("o-1", PaymentStatus.AUTHORIZED, 1000, authorization_id="aut_1")
    answered = plan(authorized, AUTH)
    assert isinstance(answered, Answered)
    assert isinstance(answered.reply, PaymentAuthorized)
    captured = Payment("o-1", PaymentStatus.CAPTURED, 1000, "aut_1", captured_cents=1000)
    again = plan(captured, CAPTURE, now_ms=9)
    assert again == Answered(captured, PaymentCaptured(order_id="o-1", amount_cents=1000, at_ms=9))
    declined = Payment("o-1", PaymentStatus.DECLINED, 1000, reason="card expired")
    assert plan(declined, AUTH) == Answered(
        declined, PaymentDeclined(order_id="o-1", reason="card expired")
    )


def test_void_before_authorize_refuses_the_late_authorization() -> None:
    answered = plan(None, VOID)
    assert isinstance(answered, Answered)
    assert answered.reply == PaymentVoided(order_id="o-1")
    assert answered.payment is not None
    late = plan(answered.payment, AUTH)
    assert late == Answered(
        answered.payment, PaymentDeclined(order_id="o-1", reason="order cancelled")
    )


def test_capture_rules() -> None:
    with pytest.raises(PaymentRuleError, match="no payment"):
        plan(None, CAPTURE)
    with pytest.raises(PaymentRuleError, match="voided"):
        plan(Payment("o-1", PaymentStatus.VOIDED), CAPTURE)
    with pytest.raises(PaymentRuleError, match="exceeds"):
        plan(Payment("o-1", PaymentStatus.AUTHORIZED, 10), CAPTURE)
    with pytest.raises(PaymentRuleError, match="captured"):
        plan(Payment("o-1", PaymentStatus.CAPTURED, 1000, captured_cents=1000), VOID)


COMMANDS = st.lists(st.sampled_from([AUTH, VOID, CAPTURE]), max_size=10)


@settings(max_examples=300, deadline=None)
@given(COMMANDS, st.booleans())
def test_any_command_sequence_moves_money_at_most_once(
    commands: list[PaymentCommand], approve: bool
) -> None:
    payment: Payment | None = None
    captures = 0
    provider_calls: dict[Operation, int] = {}
    for command in commands:
        try:
            step = plan(payment, command, now_ms=1)
        except PaymentRuleError:
            continue  # dead-lettered by the service; the ledger is unchanged
        if isinstance(step, NeedsProvider):
            provider_calls[step.operation] = provider_calls.get(step.operation, 0) + 1
            answer = ProviderAnswer(
                step.operation,
                step.amount_cents,
                approve or step.operation is not Operation.AUTHORIZE,
                "ref",
            )
            payment, _ = complete(payment, step, answer, order_id="o-1", now_ms=1)
            captures += step.operation is Operation.CAPTURE
        else:
            payment = step.payment
    assert captures <= 1
    assert all(count <= 1 for count in provider_calls.values()), provider_calls
    if payment is not None and payment.status is PaymentStatus.VOIDED:
        assert captures == 0
    if captures:
        assert payment is not None
        assert payment.status is PaymentStatus.CAPTURED
