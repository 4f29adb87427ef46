"""Lag-based scaling decisions: the policy of the KEDA ScaledObject, runnable locally.

On Kubernetes, KEDA's Kafka scaler measures each trigger's consumer lag and the
HorizontalPodAutoscaler turns it into a replica count. ``rivulet up --autoscale``
applies the same rule to local processes, with the same parameters, taken from the
same :class:`ScalingRule` the ScaledObject is rendered from:

1. Per trigger (consumer group and topic): lag per partition is the latest offset
   minus the committed one (no commit yet: the latest offset, as with
   ``offsetResetPolicy: earliest``); the total is floored at 0 and capped at
   ``partitions x lag_threshold`` (KEDA without ``allowIdleConsumers``).
2. The HPA's proposal per trigger: ``ceil(total / lag_threshold)``, unless
   ``total / (lag_threshold x current)`` is within 10 % of 1, then ``current``.
   The largest proposal wins; it is clamped to ``[min_replicas, max_replicas]``, and
   ``max_replicas`` is never above the partition count.
3. Stabilisation (the HPA's ``behavior``): scale up at most to the lowest proposal
   of the last ``scale_up_window_s``, down at most to the highest proposal of the
   last ``scale_down_window_s``, so a short dip in lag does not kill replicas.

Not mirrored: the HPA's rate-limiting policies (by default they allow doubling
every 15 s, more than a laptop's few processes need) and scaling to zero (the
rendered ScaledObjects keep at least one replica).

The logic is pure: the caller measures lags (:func:`total_lag` helps) and passes
them in with the current replica count; the clock is injected.

>>> rule = ScalingRule("inventory", (LagTrigger("inventory", "orders", 6),),
...                    min_replicas=1, max_replicas=6, lag_threshold=100,
...                    scale_down_window_s=60)
>>> now = [0.0]
>>> scaler = Autoscaler(rule, clock=lambda: now[0])
>>> scaler.decide({("inventory", "orders"): 450}, current=1).desired
5
>>> now[0] = 10.0
>>> scaler.decide({("inventory", "orders"): 0}, current=5).desired  # within the window
5
>>> now[0] = 71.0
>>> scaler.decide({("inventory", "orders"): 0}, current=5).desired
1
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from rivulet.deploy._errors import DeployError
from rivulet.deploy._model import Service
from rivulet.deploy._topics import TopicPlan

__all__ = [
    "Autoscaler",
    "Decision",
    "LagTrigger",
    "ScalingRule",
    "TriggerReading",
    "scaling_rule",
    "total_lag",
]

_log = logging.getLogger("rivulet.autoscale")

#: The HPA's default tolerance (``--horizontal-pod-autoscaler-tolerance``).
HPA_TOLERANCE = 0.1


@dataclass(frozen=True, slots=True)
class LagTrigger:
    """One KEDA Kafka trigger: a consumer group's lag on one topic."""

    group: str
    topic: str
    partitions: int


@dataclass(frozen=True, slots=True)
class TriggerReading:
    """What one trigger measured and proposed."""

    trigger: LagTrigger
    #: Total lag as measured (None: not measured this time).
    lag: int | None
    #: The lag the proposal used (capped at partitions x threshold).
    metric: int | None
    proposal: int


@dataclass(frozen=True, slots=True)
class ScalingRule:
    """Everything a ScaledObject says about when to scale a service."""

    service: str
    triggers: tuple[LagTrigger, ...]
    min_replicas: int
    max_replicas: int
    lag_threshold: int
    scale_down_window_s: int = 120
    scale_up_window_s: int = 0
    polling_interval_s: int = 15
    tolerance: float = HPA_TOLERANCE

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise DeployError(
                f"{self.service}: scaling needs 1 <= min_replicas <= max_replicas, not "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        if self.lag_threshold < 1:
            raise DeployError(f"{self.service}: lag_threshold must be at least 1")
        for trigger in self.triggers:
            if self.max_replicas > trigger.partitions:
                raise DeployError(
                    f"{self.service}: max_replicas {self.max_replicas} exceeds the "
                    f"{trigger.partitions} partitions of {trigger.topic!r}: the extra "
                    "consumers would sit idle"
                )

    def propose(
        self, lags: Mapping[tuple[str, str], int], current: int
    ) -> tuple[int, tuple[TriggerReading, ...]]:
        """The HPA's unstabilised proposal for these lags (keyed by (group, topic))."""
        current = max(current, 1)
        readings = []
        for trigger in self.triggers:
            lag = lags.get((trigger.group, trigger.topic))
            if lag is None:
                # An unmeasured metric holds the current count, as the HPA does.
                readings.append(TriggerReading(trigger, None, None, current))
                continue
            metric = min(max(lag, 0), trigger.partitions * self.lag_threshold)
            ratio = metric / (self.lag_threshold * current)
            proposal = (
                current
                if abs(1.0 - ratio) <= self.tolerance
                else math.ceil(metric / self.lag_threshold)
            )
            readings.append(TriggerReading(trigger, lag, metric, proposal))
        wanted = max((r.proposal for r in readings), default=self.min_replicas)
        return min(max(wanted, self.min_replicas), self.max_replicas), tuple(readings)


def scaling_rule(service: Service, topics: Mapping[str, TopicPlan]) -> ScalingRule | None:
    """The rule of a consuming service (None when it consumes nothing).

    One trigger per consumer group and main topic; retry topics are left out because
    their records wait on purpose, so their lag measures delay, not missing capacity.
    ``max_replicas`` is lowered to the smallest partition count among the triggers.
    """
    triggers = []
    for info in service.topology.topics:
        if info.role != "events":
            continue
        for group in info.consumed_by:
            plan = topics.get(info.name)
            if plan is None:
                raise DeployError(f"topic {info.name!r} of {service.name} has no plan")
            triggers.append(LagTrigger(group, info.name, plan.partitions))
    if not triggers:
        return None
    scaling = service.options.scaling
    ceiling = min(scaling.max_replicas, *(t.partitions for t in triggers))
    return ScalingRule(
        service=service.name,
        triggers=tuple(sorted(triggers, key=lambda t: (t.group, t.topic))),
        min_replicas=min(scaling.min_replicas, ceiling),
        max_replicas=ceiling,
        lag_threshold=scaling.lag_threshold,
        scale_down_window_s=scaling.scale_down_window_s,
        scale_up_window_s=scaling.scale_up_window_s,
        polling_interval_s=scaling.polling_interval_s,
    )


def total_lag(committed: Mapping[int, int | None], latest: Mapping[int, int]) -> int:
    """A trigger's lag: per partition latest minus committed offset, summed, floored at 0.

    A partition without a committed offset counts its whole latest offset (the
    framework's consumers start from the earliest offset).

    >>> total_lag({0: 90, 1: None}, {0: 100, 1: 30})
    40
    """
    total = 0
    for partition, end in latest.items():
        position = committed.get(partition)
        total += end - (position if position is not None and position >= 0 else 0)
    return max(total, 0)


@dataclass(frozen=True, slots=True)
class Decision:
    """One scaling decision and why."""

    at: float
    service: str
    current: int
    #: The proposal of this measurement alone.
    proposal: int
    #: What to run now, after stabilisation.
    desired: int
    readings: tuple[TriggerReading, ...]

    @property
    def action(self) -> str:
        """``scale up``, ``scale down`` or ``hold``."""
        if self.desired > self.current:
            return "scale up"
        if self.desired < self.current:
            return "scale down"
        return "hold"

    def describe(self) -> str:
        """One log line: the lags, the proposal and the decision."""
        lags = ", ".join(
            f"{r.trigger.group}@{r.trigger.topic}="
            + ("?" if r.lag is None else str(r.lag))
            + ("" if r.lag is None or r.metric == r.lag else f" (capped {r.metric})")
            for r in self.readings
        )
        return (
            f"{self.service}: lag {lags or 'none'} -> proposal {self.proposal}, "
            f"replicas {self.current} -> {self.desired} ({self.action})"
        )


class Autoscaler:
    """Stabilised decisions for one service; call :meth:`decide` every polling interval."""

    def __init__(
        self,
        rule: ScalingRule,
        *,
        clock: Callable[[], float],
        logger: logging.Logger | None = None,
    ) -> None:
        self.rule = rule
        self._clock = clock
        self._log = logger or _log
        self._history: deque[tuple[float, int]] = deque()

    def decide(self, lags: Mapping[tuple[str, str], int], current: int) -> Decision:
        """The replica count to run now, given lags keyed by (group, topic)."""
        now = self._clock()
        proposal, readings = self.rule.propose(lags, current)
        self._history.append((now, proposal))
        horizon = max(self.rule.scale_down_window_s, self.rule.scale_up_window_s)
        while self._history and self._history[0][0] < now - horizon:
            self._history.popleft()
        up_limit = min(self._window(now, self.rule.scale_up_window_s))
        down_limit = max(self._window(now, self.rule.scale_down_window_s))
        desired = max(current, self.rule.min_replicas)
        desired = max(desired, up_limit)
        desired = min(desired, down_limit, self.rule.max_replicas)
        decision = Decision(now, self.rule.service, current, proposal, desired, readings)
        level = logging.INFO if decision.desired != current else logging.DEBUG
        self._log.log(level, "autoscale %s", decision.describe())
        return decision

    def _window(self, now: float, seconds: float) -> Iterable[int]:
        return [p for at, p in self._history if at >= now - seconds]
