"""The Grafana dashboard queries metrics that exist."""

from __future__ import annotations

import json
import re

from prometheus_client.metrics_core import Metric

from rivulet.framework._metrics import Metrics
from tests.deploy._support import REPO

DASHBOARD = REPO / "deploy" / "k8s" / "base" / "observability" / "grafana-dashboard.json"
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
# Metrics from outside the framework: the Strimzi Kafka Exporter and kube-state-metrics.
_EXTERNAL = {"kafka_consumergroup_lag", "kube_deployment_status_replicas_available"}


def framework_series() -> set[str]:
    families: list[Metric] = list(Metrics("probe").registry.collect())
    return {f.name + suffix for f in families for suffix in _SUFFIXES[f.type]}


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_queried_metric_exists() -> None:
    known = framework_series()
    used = {
        name
        for expr in expressions()
        for name in re.findall(r"\b((?:rivulet|kafka|kube)_[a-z_]+)\b", expr)
    }
    assert used, "no metrics found in the dashboard"
    unknown = used - known - _EXTERNAL
    assert not unknown, f"the dashboard queries metrics nobody exports: {sorted(unknown)}"


def test_throughput_errors_dead_letters_and_lag_are_shown() -> None:
    text = " ".join(expressions())
    for series in (
        "rivulet_records_handled_total",
        "rivulet_handler_failures_total",
        "rivulet_records_dead_lettered_total",
        "rivulet_consumer_lag",
        "kafka_consumergroup_lag",
    ):
        assert series in text, series
    assert "sum by (consumergroup) (kafka_consumergroup_lag" in text  # lag per group
