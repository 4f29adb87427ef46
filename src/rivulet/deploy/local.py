"""The scaling policy for local processes: what ``rivulet up --autoscale`` calls.

:class:`LocalAutoscaler` holds one :class:`~rivulet.deploy.autoscale.Autoscaler` per
consuming app, with the rules the ScaledObjects are rendered from (same
``deploy/k8s/services.toml``, same topology), measures consumer lag the way KEDA's
Kafka scaler does (committed offsets of the group against the latest offsets), and
returns one decision per app. The supervisor owns the processes; it only has to
start or stop replicas to reach :attr:`Decision.desired`::

    scaler = LocalAutoscaler.for_apps(apps, bootstrap_servers=broker)
    while running:                                   # every scaler.interval_s
        decisions = scaler.poll(current={app: len(procs[app]) for app in scaler.rules})
        for app, decision in decisions.items():
            supervisor.scale(app, decision.desired)  # SIGTERM extras, start missing

``poll`` blocks on the network for up to a few seconds: call it from a thread
(``asyncio.to_thread``) in an event loop. Decisions are logged on the
``rivulet.autoscale`` logger: INFO when the count changes, DEBUG otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec

from rivulet.deploy._config import load_config
from rivulet.deploy._model import DeployConfig, Service
from rivulet.deploy._render import scaling_rules
from rivulet.deploy.autoscale import Autoscaler, Decision, LagTrigger, ScalingRule, total_lag
from rivulet.framework._loader import load_app

__all__ = ["DEFAULT_CONFIG", "LocalAutoscaler", "read_lags"]

#: Where ``rivulet k8s render`` and ``rivulet up --autoscale`` read service options.
DEFAULT_CONFIG = Path("deploy/k8s/services.toml")
_TIMEOUT_S = 5.0
_log = logging.getLogger("rivulet.autoscale")


class LocalAutoscaler:
    """Lag-driven replica counts for the consuming apps among ``rules`` (keyed MODULE:APP)."""

    def __init__(
        self,
        rules: Mapping[str, ScalingRule],
        *,
        bootstrap_servers: str,
        client_config: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.rules = dict(rules)
        self._scalers = {
            app: Autoscaler(rule, clock=clock, logger=logger) for app, rule in self.rules.items()
        }
        self._admin = AdminClient({**(client_config or {}), "bootstrap.servers": bootstrap_servers})

    @classmethod
    def for_apps(
        cls,
        apps: Sequence[str],
        *,
        bootstrap_servers: str,
        config: DeployConfig | Path | None = None,
        client_config: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        search_path: Path | None = None,
    ) -> LocalAutoscaler:
        """Rules for ``apps`` (MODULE:APP) as the cluster would scale them.

        ``config`` is a :class:`DeployConfig` or a services.toml path; by default
        ``deploy/k8s/services.toml`` when it exists, else the defaults. Apps that
        consume nothing get no rule (they run one process).
        """
        if config is None:
            config = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else DeployConfig()
        if isinstance(config, Path):
            config = load_config(config).config
        services = [
            Service(config.options_for(ref), load_app(ref, search_path=search_path).topology())
            for ref in apps
        ]
        by_name = scaling_rules(config, services)
        rules = {
            ref: by_name[svc.name]
            for ref, svc in zip(apps, services, strict=True)
            if svc.name in by_name
        }
        return cls(
            rules, bootstrap_servers=bootstrap_servers, client_config=client_config, clock=clock
        )

    @property
    def interval_s(self) -> float:
        """How often to poll: the shortest polling interval among the rules."""
        return float(min((r.polling_interval_s for r in self.rules.values()), default=15))

    def measure(self) -> dict[tuple[str, str], int]:
        """Current lag of every trigger, keyed (group, topic); unreachable ones are left out."""
        triggers = [t for rule in self.rules.values() for t in rule.triggers]
        return read_lags(self._admin, triggers)

    def decide(
        self, lags: Mapping[tuple[str, str], int], current: Mapping[str, int]
    ) -> dict[str, Decision]:
        """One decision per app with a rule, from measured lags and running counts."""
        return {
            app: scaler.decide(lags, current.get(app, 1)) for app, scaler in self._scalers.items()
        }

    def poll(self, current: Mapping[str, int]) -> dict[str, Decision]:
        """Measure, then decide."""
        return self.decide(self.measure(), current)


def read_lags(admin: Any, triggers: Sequence[LagTrigger]) -> dict[tuple[str, str], int]:
    """KEDA's lag per (group, topic): latest minus committed offsets, summed over partitions.

    A partition without a committed offset counts its whole latest offset (the
    framework's consumers start from the earliest). A trigger whose offsets cannot be
    read is missing from the result, so the policy holds its current count.
    """
    wanted = {(t.group, t.topic) for t in triggers}
    topics = sorted({topic for _, topic in wanted})
    try:
        metadata = admin.list_topics(timeout=_TIMEOUT_S).topics
    except KafkaException as exc:
        _log.warning("autoscale: cannot read topic metadata: %s", exc)
        return {}
    partitions = {
        topic: sorted(metadata[topic].partitions)
        for topic in topics
        if topic in metadata and metadata[topic].error is None
    }
    latest = _latest_offsets(admin, partitions)
    lags: dict[tuple[str, str], int] = {}
    for group, topic in sorted(wanted):
        if topic not in partitions or topic not in latest:
            continue
        committed = _committed_offsets(admin, group, topic, partitions[topic])
        if committed is not None:
            lags[(group, topic)] = total_lag(committed, latest[topic])
    return lags


def _latest_offsets(admin: Any, partitions: Mapping[str, list[int]]) -> dict[str, dict[int, int]]:
    request = {
        TopicPartition(topic, p): OffsetSpec.latest()  # type: ignore[no-untyped-call]
        for topic, numbers in partitions.items()
        for p in numbers
    }
    if not request:
        return {}
    found: dict[str, dict[int, int]] = {}
    failed: set[str] = set()
    for tp, future in admin.list_offsets(request, request_timeout=_TIMEOUT_S).items():
        try:
            found.setdefault(tp.topic, {})[tp.partition] = future.result().offset
        except KafkaException as exc:
            _log.warning("autoscale: no latest offset for %s[%d]: %s", tp.topic, tp.partition, exc)
            failed.add(tp.topic)
    return {topic: offsets for topic, offsets in found.items() if topic not in failed}


def _committed_offsets(
    admin: Any, group: str, topic: str, partitions: list[int]
) -> dict[int, int | None] | None:
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])]
    try:
        (future,) = admin.list_consumer_group_offsets(request, request_timeout=_TIMEOUT_S).values()
        result = future.result()
    except KafkaException as exc:
        _log.warning("autoscale: no committed offsets for group %s: %s", group, exc)
        return None
    committed: dict[int, int | None] = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            _log.warning("autoscale: group %s, %s[%d]: %s", group, topic, tp.partition, tp.error)
            return None
        committed[tp.partition] = tp.offset if tp.offset >= 0 else None
    return committed
