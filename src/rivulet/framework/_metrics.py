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

Counting happens on every record, so the values live in plain dictionaries, updated
without locks on the event loop thread, and are turned into metric families only when
Prometheus scrapes (a custom collector): prometheus-client's own counters take a
lock per increment, which cost more than the rest of the bookkeeping of a record.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Metrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# name -> (help, label names after "app")
_COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rivulet_records_consumed": ("Records read from topics", ("group", "topic")),
    "rivulet_records_handled": (
        "Records whose handler succeeded", ("group", "topic", "handler"),
    ),
    "rivulet_records_duplicate": (
        "Redelivered events an idempotent handler had handled", ("group", "topic"),
    ),
    "rivulet_handler_failures": (
        "Handler calls that raised (each retry counts)", ("group", "topic", "handler"),
    ),
    "rivulet_records_retried": ("Records sent to a retry topic", ("group", "topic")),
    "rivulet_records_dead_lettered": (
        "Records sent to a dead-letter topic", ("group", "topic", "reason"),
    ),
    "rivulet_records_skipped": (
        "Records not for this group, or of a skipped type", ("group", "topic", "reason"),
    ),
    "rivulet_published": (
        "Records handed to the producer (handlers, outbox relay, forwards)", ("topic",),
    ),
}  # fmt: skip
_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "rivulet_records_in_flight": ("Records fetched and not yet complete", ("group",)),
    "rivulet_consumer_lag": (
        "High watermark minus the consumer's position", ("group", "topic", "partition"),
    ),
    "rivulet_outbox_backlog": ("Outbox rows waiting for the relay", ()),
}  # fmt: skip


class _Gauge:
    """``set`` on one labelled gauge (the outbox backlog)."""

    __slots__ = ("_key", "_values")

    def __init__(self, values: dict[tuple[str, ...], float], key: tuple[str, ...]) -> None:
        self._values = values
        self._key = key

    def set(self, value: float) -> None:
        self._values[self._key] = value


class Metrics:
    """The app's metrics; :meth:`render` gives the exposition text."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._counters: dict[tuple[str, ...], float] = {}
        self._gauges: dict[tuple[str, ...], float] = {}
        # (group, handler) -> [bucket counts..., +Inf count], and the sums
        # (group, topic, handler) -> [bucket counts..., +Inf count, sum of seconds]: one
        # lookup per handled record; the handled counter is the sum of the buckets.
        self._handled: dict[tuple[str, str, str], list[float]] = {}
        self.outbox_backlog = _Gauge(self._gauges, ("rivulet_outbox_backlog",))
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ----------------------------------------------------------------- updates

    def _add(self, key: tuple[str, ...], amount: float = 1) -> None:
        counters = self._counters
        counters[key] = counters.get(key, 0) + amount

    def consumed(self, group: str, topic: str, count: int = 1) -> None:
        self._add(("rivulet_records_consumed", group, topic), count)

    def handled(self, group: str, topic: str, handler: str, seconds: float) -> None:
        key = (group, topic, handler)
        cell = self._handled.get(key)
        if cell is None:
            cell = self._handled[key] = [0] * (len(_BUCKETS) + 2)
        cell[bisect_left(_BUCKETS, seconds)] += 1
        cell[-1] += seconds

    def duplicate(self, group: str, topic: str) -> None:
        self._add(("rivulet_records_duplicate", group, topic))

    def handler_failed(self, group: str, topic: str, handler: str) -> None:
        self._add(("rivulet_handler_failures", group, topic, handler))

    def retried(self, group: str, topic: str) -> None:
        self._add(("rivulet_records_retried", group, topic))

    def dead_lettered(self, group: str, topic: str, reason: str) -> None:
        self._add(("rivulet_records_dead_lettered", group, topic, reason))

    def skipped(self, group: str, topic: str, reason: str) -> None:
        self._add(("rivulet_records_skipped", group, topic, reason))

    def published(self, topic: str, count: int = 1) -> None:
        self._add(("rivulet_published", topic), count)

    def in_flight(self, group: str, count: int) -> None:
        self._gauges[("rivulet_records_in_flight", group)] = count

    def lag(self, group: str, topic: str, partition: int, value: int) -> None:
        self._gauges[("rivulet_consumer_lag", group, topic, str(partition))] = value

    def forget_lag(self, group: str, topic: str, partition: int) -> None:
        self._gauges.pop(("rivulet_consumer_lag", group, topic, str(partition)), None)

    # ----------------------------------------------------------------- exposition

    def collect(self) -> Iterator[Metric]:
        """Metric families for prometheus-client (called at scrape time)."""
        handled = list(self._handled.items())
        counters = list(self._counters.items())
        counters += [(("rivulet_records_handled", *key), sum(cell[:-1])) for key, cell in handled]
        for name, (text, labels) in _COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=("app", *labels))
            for key, value in counters:
                if key[0] == name:
                    family.add_metric((self.app, *key[1:]), value)
            yield family
        for name, (text, labels) in _GAUGES.items():
            gauge = GaugeMetricFamily(name, text, labels=("app", *labels))
            for key, value in list(self._gauges.items()):
                if key[0] == name:
                    gauge.add_metric((self.app, *key[1:]), value)
            yield gauge
        histogram = HistogramMetricFamily(
            "rivulet_handler_duration_seconds",
            "Handling time per record, retries included",
            labels=("app", "group", "handler"),
        )
        # The histogram is per (group, handler): a handler's topics are summed.
        per_handler: dict[tuple[str, str], list[float]] = {}
        for (group, _topic, handler), cell in handled:
            total = per_handler.setdefault((group, handler), [0] * len(cell))
            for index, value in enumerate(cell):
                total[index] += value
        for (group, handler), cell in per_handler.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*map(str, _BUCKETS), "+Inf"), cell[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            histogram.add_metric((self.app, group, handler), buckets, cell[-1])
        yield histogram

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
