"""Prometheus metrics of one running app, in a registry of its own.

=============================================  ===================================
Metric                                         Labels
=============================================  ===================================
``rivulet_records_consumed_total``             app, group, topic
``rivulet_records_handled_total``              app, group, topic, handler
``rivulet_records_duplicate_total``            app, group, topic (already processed: skipped)
``rivulet_handler_failures_total``             app, group, topic, handler
``rivulet_records_retried_total``              app, group, topic (sent to a retry topic)
``rivulet_records_dead_lettered_total``        app, group, topic, reason
``rivulet_records_skipped_total``              app, group, topic, reason
``rivulet_handler_duration_seconds``           app, group, handler (histogram)
``rivulet_records_in_flight``                  app, group
``rivulet_consumer_lag``                       app, group, topic, partition
``rivulet_published_total``                    app, topic
``rivulet_outbox_backlog``                     app
=============================================  ===================================

Label children are cached, so counting a record costs a dictionary lookup and an
increment.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The app's metrics; :meth:`render` gives the exposition text."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._consumed = Counter(
            "rivulet_records_consumed", "Records read from topics",
            ["app", "group", "topic"], registry=r,
        )  # fmt: skip
        self._handled = Counter(
            "rivulet_records_handled", "Records whose handler succeeded",
            ["app", "group", "topic", "handler"], registry=r,
        )  # fmt: skip
        self._duplicates = Counter(
            "rivulet_records_duplicate", "Redelivered events an idempotent handler had handled",
            ["app", "group", "topic"], registry=r,
        )  # fmt: skip
        self._failures = Counter(
            "rivulet_handler_failures", "Handler calls that raised (each retry counts)",
            ["app", "group", "topic", "handler"], registry=r,
        )  # fmt: skip
        self._retried = Counter(
            "rivulet_records_retried", "Records sent to a retry topic",
            ["app", "group", "topic"], registry=r,
        )  # fmt: skip
        self._dead = Counter(
            "rivulet_records_dead_lettered", "Records sent to a dead-letter topic",
            ["app", "group", "topic", "reason"], registry=r,
        )  # fmt: skip
        self._skipped = Counter(
            "rivulet_records_skipped", "Records not for this group, or of a skipped type",
            ["app", "group", "topic", "reason"], registry=r,
        )  # fmt: skip
        self._duration = Histogram(
            "rivulet_handler_duration_seconds", "Handling time per record, retries included",
            ["app", "group", "handler"], buckets=_BUCKETS, registry=r,
        )  # fmt: skip
        self._in_flight = Gauge(
            "rivulet_records_in_flight", "Records fetched and not yet complete",
            ["app", "group"], registry=r,
        )  # fmt: skip
        self._lag = Gauge(
            "rivulet_consumer_lag", "High watermark minus the consumer's position",
            ["app", "group", "topic", "partition"], registry=r,
        )  # fmt: skip
        self._published = Counter(
            "rivulet_published", "Records published (handlers, outbox relay, forwards)",
            ["app", "topic"], registry=r,
        )  # fmt: skip
        self.outbox_backlog = Gauge(
            "rivulet_outbox_backlog", "Outbox rows waiting for the relay", ["app"], registry=r
        ).labels(app)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = metric.labels(self.app, *labels)
            self._children[key] = child
        return child

    def consumed(self, group: str, topic: str, count: int = 1) -> None:
        self._child(self._consumed, group, topic).inc(count)

    def handled(self, group: str, topic: str, handler: str, seconds: float) -> None:
        self._child(self._handled, group, topic, handler).inc()
        self._child(self._duration, group, handler).observe(seconds)

    def duplicate(self, group: str, topic: str) -> None:
        self._child(self._duplicates, group, topic).inc()

    def handler_failed(self, group: str, topic: str, handler: str) -> None:
        self._child(self._failures, group, topic, handler).inc()

    def retried(self, group: str, topic: str) -> None:
        self._child(self._retried, group, topic).inc()

    def dead_lettered(self, group: str, topic: str, reason: str) -> None:
        self._child(self._dead, group, topic, reason).inc()

    def skipped(self, group: str, topic: str, reason: str) -> None:
        self._child(self._skipped, group, topic, reason).inc()

    def in_flight(self, group: str, count: int) -> None:
        self._child(self._in_flight, group).set(count)

    def lag(self, group: str, topic: str, partition: int, value: int) -> None:
        self._child(self._lag, group, topic, str(partition)).set(value)

    def forget_lag(self, group: str, topic: str, partition: int) -> None:
        key = (id(self._lag), group, topic, str(partition))
        if self._children.pop(key, None) is not None:
            self._lag.remove(self.app, group, topic, str(partition))

    def published(self, topic: str, count: int = 1) -> None:
        self._child(self._published, topic).inc(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
