"""Topics of all services, merged, and their Strimzi ``KafkaTopic`` resources.

Partitions and configs come from ``app.topic(...)`` declarations; where no app
declares a topic, the defaults apply. Retry and dead-letter topics get as many
partitions as their main topic (as the framework creates them locally, and as
Spring does), so a record keeps its partition's ordering neighbours across hops.
Replicas and ``min.insync.replicas`` are the environment's, never the code's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rivulet.deploy._errors import DeployError
from rivulet.deploy._model import Service, TopicDefaults
from rivulet.framework import TopicInfo

__all__ = ["MIN_ISR", "TopicPlan", "kafka_topic", "plan_topics", "topic_name_of"]

MIN_ISR = "min.insync.replicas"
_RETRY = "-retry-"
_DLT = "-dlt"
_NOT_DNS = re.compile(r"[^a-z0-9.-]")


@dataclass(frozen=True, slots=True)
class TopicPlan:
    """One topic as the cluster should have it."""

    name: str
    role: str
    partitions: int
    config: Mapping[str, str]
    #: Apps whose topology names the topic.
    used_by: tuple[str, ...]


def plan_topics(services: Iterable[Service], defaults: TopicDefaults) -> tuple[TopicPlan, ...]:
    """Every topic any service touches, sorted by name."""
    seen: dict[str, list[tuple[str, TopicInfo]]] = {}
    for service in services:
        for info in service.topology.topics:
            seen.setdefault(info.name, []).append((service.topology.app, info))
    plans: dict[str, TopicPlan] = {}
    for name, uses in seen.items():
        roles = {info.role for _, info in uses}
        if len(roles) > 1:
            raise DeployError(f"topic {name!r} has different roles in different apps: {roles}")
        role = roles.pop()
        plans[name] = TopicPlan(
            name=name,
            role=role,
            partitions=_partitions(name, uses, defaults),
            config=_config(name, role, uses, defaults),
            used_by=tuple(dict.fromkeys(app for app, _ in uses)),
        )
    for name, plan in plans.items():
        if plan.role == "events":
            continue
        main = _main_topic(name, plan.role)
        declared = [info.partitions for _, info in seen[name] if info.partitions is not None]
        if declared:
            raise DeployError(
                f"topic {name!r} is a {plan.role} topic: it takes the partitions of "
                f"{main!r}; declare them there"
            )
        if main in plans:
            plans[name] = TopicPlan(
                name, plan.role, plans[main].partitions, plan.config, plan.used_by
            )
    return tuple(plans[name] for name in sorted(plans))


def kafka_topic(
    plan: TopicPlan, *, cluster: str, defaults: TopicDefaults, labels: Mapping[str, str]
) -> dict[str, Any]:
    """The ``KafkaTopic`` resource of ``plan``."""
    name, renamed = _resource_name(plan.name)
    spec: dict[str, Any] = {}
    if renamed:
        spec["topicName"] = plan.name
    spec["partitions"] = plan.partitions
    spec["replicas"] = defaults.replicas
    spec["config"] = {**plan.config, MIN_ISR: str(defaults.min_insync_replicas)}
    return {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {
            "name": name,
            "labels": {
                "strimzi.io/cluster": cluster,
                **labels,
                "rivulet.dev/topic-role": plan.role,
            },
        },
        "spec": spec,
    }


def topic_name_of(resource: Mapping[str, Any]) -> str:
    """The Kafka topic a ``KafkaTopic`` resource creates."""
    name: str = resource["spec"].get("topicName") or resource["metadata"]["name"]
    return name


def _partitions(name: str, uses: list[tuple[str, TopicInfo]], defaults: TopicDefaults) -> int:
    declared = {(app, info.partitions) for app, info in uses if info.partitions is not None}
    counts = {count for _, count in declared}
    if len(counts) > 1:
        raise DeployError(
            f"topic {name!r}: apps declare different partition counts {sorted(declared)}; "
            "make their app.topic(...) declarations agree"
        )
    return counts.pop() if counts else defaults.partitions


def _config(
    name: str, role: str, uses: list[tuple[str, TopicInfo]], defaults: TopicDefaults
) -> dict[str, str]:
    config: dict[str, str] = {}
    if role == "retry":
        config["retention.ms"] = str(defaults.retry_retention_ms)
    elif role == "dead-letter":
        config["retention.ms"] = str(defaults.dead_letter_retention_ms)
    declared: dict[str, tuple[str, str]] = {}
    for app, info in uses:
        for key, value in info.config.items():
            if key == MIN_ISR:
                raise DeployError(
                    f"app {app!r} sets {MIN_ISR} on topic {name!r}; each environment sets it "
                    "(deploy/k8s overlays), remove it from app.topic(...)"
                )
            if key in declared and declared[key][1] != value:
                raise DeployError(
                    f"topic {name!r}: {key} is {declared[key][1]!r} in app {declared[key][0]!r} "
                    f"and {value!r} in app {app!r}; make them agree"
                )
            declared[key] = (app, str(value))
    config.update({key: value for key, (_, value) in declared.items()})
    return dict(sorted(config.items()))


def _main_topic(name: str, role: str) -> str:
    if role == "dead-letter":
        return name.removesuffix(_DLT)
    base, _, _ = name.rpartition(_RETRY)
    return base


def _resource_name(topic: str) -> tuple[str, bool]:
    """A valid resource name for ``topic``, and whether it differs from the topic name."""
    name = _NOT_DNS.sub("-", topic.lower()).strip(".-")[:200]
    if name == topic:
        return name, False
    # Two topics may map to one name ("Orders", "orders"): keep them apart.
    digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
    return f"{name or 'topic'}-{digest}", True
