"""Metrics, health and readiness over HTTP; OpenTelemetry spans; structured logs."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from rivulet import App, Context, Event, RetryPolicy, Settings
from rivulet.framework._ids import TraceParent
from rivulet.framework._logging import JsonFormatter, configure_logging
from rivulet.framework.testing import KafkaHarness


class OrderPlaced(Event):
    order_id: str


class StockReserved(Event):
    order_id: str


def fetch(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_metrics_health_readiness_and_topology_endpoint(kafka: KafkaHarness) -> None:
    app = App("inventory")

    @app.handler("orders", retry=RetryPolicy(attempts=1))
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        if event.order_id == "bad":
            raise ValueError("no such order")
        await ctx.publish("inventory", StockReserved(order_id=event.order_id), key=event.order_id)

    async with kafka.run(app, http_listen="127.0.0.1:0") as runtime:
        assert runtime.http_address is not None
        port = runtime.http_address[1]
        await kafka.publish("orders", OrderPlaced(order_id="good"), key="good")
        await kafka.publish("orders", OrderPlaced(order_id="bad"), key="bad")
        await kafka.records("orders-dlt", count=1)
        await kafka.records("inventory", count=1)
        status, metrics = await asyncio.to_thread(fetch, port, "/metrics")
        assert status == 200
        for line in [
            'rivulet_records_consumed_total{app="inventory",group="inventory",topic="orders"} 2.0',
            (
                'rivulet_records_handled_total{app="inventory",group="inventory",handler='
                '"test_metrics_health_readiness_and_topology_endpoint.reserve",topic="orders"} 1.0'
            ),
            (
                'rivulet_records_dead_lettered_total{app="inventory",group="inventory",'
                'reason="handler-error",topic="orders"} 1.0'
            ),
            'rivulet_published_total{app="inventory",topic="inventory"} 1.0',
            'rivulet_published_total{app="inventory",topic="orders-dlt"} 1.0',
            'rivulet_outbox_backlog{app="inventory"} 0.0',
        ]:
            assert line in metrics, line
        assert "rivulet_handler_duration_seconds_bucket" in metrics
        assert await asyncio.to_thread(fetch, port, "/healthz") == (200, "ok\n")
        assert await asyncio.to_thread(fetch, port, "/readyz") == (200, "ready\n")
        status, body = await asyncio.to_thread(fetch, port, "/topology")
        assert json.loads(body)["groups"] == ["inventory"]
        assert (await asyncio.to_thread(fetch, port, "/nope"))[0] == 404
        await kafka.until(lambda: "rivulet_consumer_lag" in runtime.metrics.render().decode(),
                          timeout_s=10, what="the lag gauge")  # fmt: skip


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_spans_follow_an_event_across_services(
    kafka: KafkaHarness, spans: InMemorySpanExporter
) -> None:
    inventory, shipping = App("inventory"), App("shipping")

    @inventory.handler("orders")
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish("inventory", StockReserved(order_id=event.order_id), key=event.order_id)

    @shipping.handler("inventory")
    async def ship(event: StockReserved) -> None:
        pass

    async with kafka.run(inventory), kafka.run(shipping):
        await kafka.publish("orders", OrderPlaced(order_id="o-1"), key="o-1")
        [placed] = await kafka.records("orders", count=1)
        await kafka.until(lambda: len(spans.get_finished_spans()) >= 2, what="two spans")
    first, second = sorted(spans.get_finished_spans(), key=lambda s: s.start_time or 0)
    origin = TraceParent.parse(dict(placed.headers)["traceparent"].decode())  # type: ignore[union-attr]
    assert origin is not None
    assert first.name == "process orders"
    assert first.kind is SpanKind.CONSUMER
    assert first.context is not None
    assert second.context is not None
    assert format(first.context.trace_id, "032x") == origin.trace_id
    assert first.parent is not None
    assert format(first.parent.span_id, "016x") == origin.span_id
    assert second.name == "process inventory"
    assert second.context.trace_id == first.context.trace_id
    assert second.parent is not None
    assert second.parent.span_id == first.context.span_id
    assert first.attributes is not None
    assert first.attributes["messaging.consumer.group.name"] == "inventory"
    assert first.attributes["messaging.kafka.message.key"] == "o-1"


def test_json_logs_carry_the_correlation_id() -> None:
    formatter = JsonFormatter()
    logger = logging.getLogger("rivulet.test")
    adapter = logging.LoggerAdapter(logger, {"correlation_id": "c-1", "event_id": "e-1"})
    record = logger.makeRecord(
        "rivulet.test", logging.INFO, __file__, 1, "reserved %s", ("o-1",), None,
        extra=adapter.extra,
    )  # fmt: skip
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "reserved o-1"
    assert entry["correlation_id"] == "c-1"
    assert entry["event_id"] == "e-1"
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("Z")


def test_configure_logging_installs_the_chosen_format() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Settings(log_format="json", log_level="debug"))
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
        assert root.level == logging.DEBUG
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
