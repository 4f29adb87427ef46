"""The local scaling policy: KEDA's lag arithmetic and the HPA's stabilisation."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.deploy import DeployConfig, DeployError, Service, render, scaling_rules
from rivulet.deploy.autoscale import Autoscaler, LagTrigger, ScalingRule, total_lag

ORDERS = ("inventory", "orders")


def rule(**changes: object) -> ScalingRule:
    values: dict[str, object] = {
        "service": "inventory",
        "triggers": (LagTrigger("inventory", "orders", 6),),
        "min_replicas": 1,
        "max_replicas": 6,
        "lag_threshold": 100,
        "scale_down_window_s": 60,
        "scale_up_window_s": 0,
    }
    values.update(changes)
    return ScalingRule(**values)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_desired_is_lag_over_threshold_rounded_up() -> None:
    r = rule()
    assert r.propose({ORDERS: 0}, current=1)[0] == 1
    assert r.propose({ORDERS: 120}, current=1)[0] == 2
    assert r.propose({ORDERS: 250}, current=1)[0] == 3
    # 105 / 100 is within the HPA's 10 % tolerance of the current single replica.
    assert r.propose({ORDERS: 105}, current=1)[0] == 1


def test_capped_at_partitions_and_max_replicas() -> None:
    assert rule().propose({ORDERS: 10**9}, current=1)[0] == 6
    capped = rule(max_replicas=4, triggers=(LagTrigger("inventory", "orders", 4),))
    proposal, readings = capped.propose({ORDERS: 10**9}, current=1)
    assert proposal == 4
    assert readings[0].metric == 4 * 100  # KEDA caps the metric at partitions x threshold


def test_within_tolerance_keeps_the_current_count() -> None:
    # 310 / (100 x 3) = 1.03: inside the HPA's 10 % band, no change.
    assert rule().propose({ORDERS: 310}, current=3)[0] == 3
    # 350 / 300 = 1.17: outside, ceil(3.5) = 4.
    assert rule().propose({ORDERS: 350}, current=3)[0] == 4


def test_largest_trigger_wins_and_unmeasured_holds() -> None:
    two = rule(
        triggers=(LagTrigger("inventory", "orders", 6), LagTrigger("audit", "payments", 6)),
    )
    assert two.propose({ORDERS: 100, ("audit", "payments"): 450}, current=1)[0] == 5
    # A trigger without a measurement proposes the current count, as the HPA does.
    assert two.propose({ORDERS: 0}, current=3)[0] == 3


def test_negative_lag_counts_as_zero() -> None:
    assert rule().propose({ORDERS: -50}, current=2)[0] == 1


def test_max_replicas_above_partitions_is_refused() -> None:
    with pytest.raises(DeployError, match="partitions"):
        rule(max_replicas=8)


def test_scales_a_lagging_service_up_at_once_and_down_after_the_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    scaler = Autoscaler(rule(), clock=clock)
    caplog.set_level(logging.DEBUG, logger="rivulet.autoscale")
    replicas = 1
    timeline = []
    # A burst of 550 records, then consumers catch up (lag 0) from t+30 s on.
    for t, lag in [(0, 550), (15, 400), (30, 0), (45, 0), (60, 0), (75, 0), (90, 0), (105, 0)]:
        clock.now = 1000.0 + t
        decision = scaler.decide({ORDERS: lag}, replicas)
        replicas = decision.desired
        timeline.append((t, replicas))
    assert timeline == [
        (0, 6), (15, 6), (30, 6), (45, 6), (60, 6),
        # The 400-lag proposal (4) of t=15 leaves the 60 s window after t=75.
        (75, 4), (90, 1), (105, 1),
    ]  # fmt: skip
    changes = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert changes == [
        "autoscale inventory: lag inventory@orders=550 -> proposal 6, replicas 1 -> 6 (scale up)",
        "autoscale inventory: lag inventory@orders=0 -> proposal 1, replicas 6 -> 4 (scale down)",
        "autoscale inventory: lag inventory@orders=0 -> proposal 1, replicas 4 -> 1 (scale down)",
    ]
    holds = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(holds) == len(timeline) - 3


def test_scale_up_window_takes_the_lowest_recent_proposal() -> None:
    clock = Clock()
    scaler = Autoscaler(rule(scale_up_window_s=30), clock=clock)
    assert scaler.decide({ORDERS: 0}, 1).desired == 1
    clock.now += 15
    # A spike proposes 6, but the lowest proposal of the last 30 s is 1.
    assert scaler.decide({ORDERS: 600}, 1).desired == 1
    clock.now += 20
    assert scaler.decide({ORDERS: 600}, 1).desired == 6


def test_decision_explains_capped_lag() -> None:
    r = rule(max_replicas=2, triggers=(LagTrigger("inventory", "orders", 2),))
    decision = Autoscaler(r, clock=Clock()).decide({ORDERS: 900}, 1)
    assert decision.describe() == (
        "inventory: lag inventory@orders=900 (capped 200) -> proposal 2, replicas 1 -> 2 (scale up)"
    )
    assert decision.action == "scale up"


@given(
    lag=st.integers(min_value=-10, max_value=10**7),
    current=st.integers(min_value=1, max_value=10),
    partitions=st.integers(min_value=1, max_value=12),
    threshold=st.integers(min_value=1, max_value=1000),
)
def test_proposals_stay_within_bounds(
    lag: int, current: int, partitions: int, threshold: int
) -> None:
    r = rule(
        triggers=(LagTrigger("inventory", "orders", partitions),),
        max_replicas=partitions,
        lag_threshold=threshold,
    )
    proposal, _ = r.propose({ORDERS: lag}, current)
    assert 1 <= proposal <= partitions
    if lag > threshold * partitions * 2:
        assert proposal == partitions


def test_total_lag_counts_uncommitted_partitions_from_the_start() -> None:
    assert total_lag({0: 10, 1: 5}, {0: 15, 1: 5}) == 5
    assert total_lag({}, {0: 7, 1: 3}) == 10
    assert total_lag({0: -1001}, {0: 7}) == 7  # librdkafka's OFFSET_INVALID
    assert total_lag({0: 20}, {0: 10}) == 0


def test_rules_match_the_rendered_scaled_objects(
    config: DeployConfig, services: list[Service]
) -> None:
    """One source for both: the ScaledObject says what the local autoscaler does."""
    rules = scaling_rules(config, services)

    scaled = {
        d["metadata"]["name"]: d["spec"]
        for d in render(config, services).documents()
        if d["kind"] == "ScaledObject"
    }
    assert set(rules) == set(scaled)
    for name, r in rules.items():
        spec = scaled[name]
        assert (r.min_replicas, r.max_replicas) == (
            spec["minReplicaCount"],
            spec["maxReplicaCount"],
        )
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert r.scale_down_window_s == behavior["scaleDown"]["stabilizationWindowSeconds"]
        assert r.scale_up_window_s == behavior["scaleUp"]["stabilizationWindowSeconds"]
        assert r.polling_interval_s == spec["pollingInterval"]
        assert {(t.group, t.topic) for t in r.triggers} == {
            (t["metadata"]["consumerGroup"], t["metadata"]["topic"]) for t in spec["triggers"]
        }
        assert {str(r.lag_threshold)} == {t["metadata"]["lagThreshold"] for t in spec["triggers"]}
