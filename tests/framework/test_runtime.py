"""The framework on the real embedded broker, over TCP: consume, handle, publish, commit.

Each test runs an app with the ``kafka`` fixture (an in-memory embedded broker).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections import defaultdict

from rivulet import App, Backoff, Context, Event, RetryPolicy
from rivulet.framework._retry import decode_int
from rivulet.framework._wire import ConsumedRecord
from rivulet.framework.testing import KafkaHarness


class OrderPlaced(Event):
    order_id: str
    qty: int


class StockReserved(Event):
    order_id: str
    qty: int


def headers_of(record: ConsumedRecord) -> dict[str, bytes]:
    return {name: value for name, value in record.headers if value is not None}


def inventory() -> App:
    app = App("inventory")

    @app.handler("orders", publishes={"inventory": StockReserved})
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish(
            "inventory", StockReserved(order_id=event.order_id, qty=event.qty), key=event.order_id
        )

    return app


async def test_an_event_flows_through_a_handler(kafka: KafkaHarness) -> None:
    async with kafka.run(inventory()):
        sent = await kafka.publish("orders", OrderPlaced(order_id="o-1", qty=2), key="o-1")
        [record] = await kafka.records("inventory", count=1)
        [event] = await kafka.events("inventory", StockReserved, count=1)
    assert event == StockReserved(order_id="o-1", qty=2)
    headers = headers_of(record)
    assert headers["ce_causationid"] == sent.encode()
    assert headers["ce_correlationid"] == sent.encode()
    assert headers["ce_source"] == b"inventory"
    assert record.key == b"o-1"


class Step(Event):
    entity: str
    seq: int


async def test_concurrency_across_keys_keeps_per_key_order(kafka: KafkaHarness) -> None:
    app = App("ordering")
    seen: dict[str, list[int]] = defaultdict(list)
    running = 0
    most = 0
    rng = random.Random(5)

    @app.handler("steps", concurrency=8)
    async def step(event: Step) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(rng.random() * 0.004)
        seen[event.entity].append(event.seq)
        running -= 1
        if sum(map(len, seen.values())) == total:
            done.set()

    entities = [f"e{n}" for n in range(12)]
    total = 300
    done = asyncio.Event()
    async with kafka.run(app):
        await kafka.publish_many(
            "steps",
            [(Step(entity=entities[n % 12], seq=n), entities[n % 12]) for n in range(total)],
        )
        await asyncio.wait_for(done.wait(), 30)
    assert sum(map(len, seen.values())) == total
    for entity, seqs in seen.items():
        assert seqs == sorted(seqs), entity
    assert most > 1  # keys really ran concurrently


async def test_bad_records_are_dead_lettered_and_the_partition_keeps_moving(
    kafka: KafkaHarness,
) -> None:
    app = inventory()
    async with kafka.run(app):
        await kafka.publish_raw(
            "orders", b"{not json", key=b"k1", headers=[("ce_type", b"OrderPlaced")]
        )
        await kafka.publish_raw(
            "orders", b'{"order_id": "x"}', key=b"k2", headers=[("ce_type", b"OrderPlaced")]
        )
        await kafka.publish_raw("orders", b"{}", key=b"k3", headers=[("ce_type", b"Refund")])
        await kafka.publish_raw("orders", None, key=b"k4", headers=[("ce_type", b"OrderPlaced")])
        await kafka.publish("orders", OrderPlaced(order_id="good", qty=1), key="good")
        dead = await kafka.records("orders-dlt", count=4)
        [after] = await kafka.events("inventory", StockReserved, count=1)
    assert after.order_id == "good"
    reasons = [headers_of(r)["rivulet_dlt-reason"] for r in dead]
    assert sorted(reasons) == [
        b"invalid-payload",
        b"invalid-payload",
        b"invalid-payload",
        b"unknown-type",
    ]
    for record in dead:
        headers = headers_of(record)
        assert headers["kafka_dlt-original-topic"] == b"orders"
        assert headers["kafka_dlt-original-consumer-group"] == b"inventory"
        assert len(headers["kafka_dlt-original-offset"]) == 8
    assert [r.value for r in dead if r.key == b"k1"] == [b"{not json"]
    assert [r.value for r in dead if r.key == b"k4"] == [None]


async def test_retry_topics_wait_their_delay_then_dead_letter_with_spring_headers(
    kafka: KafkaHarness,
) -> None:
    app = App("payments")
    calls: list[tuple[str, float]] = []
    policy = RetryPolicy(attempts=2, backoff=Backoff(initial_ms=10, max_ms=10), topics=(300, 600))

    @app.handler("orders", retry=policy)
    async def charge(event: OrderPlaced, ctx: Context) -> None:
        calls.append((ctx.record.topic, time.time()))
        if event.order_id == "bad":
            raise ConnectionError("payment provider unavailable")

    async with kafka.run(app):
        await kafka.publish("orders", OrderPlaced(order_id="bad", qty=1), key="bad")
        await kafka.publish("orders", OrderPlaced(order_id="good", qty=1), key="good")
        [dead] = await kafka.records("orders-dlt", count=1)
        [hop1] = await kafka.records("orders-retry-300", count=1)
        [hop2] = await kafka.records("orders-retry-600", count=1)
    topics = [topic for topic, _ in calls]
    # two calls per delivery for "bad" (main, retry-300, retry-600), one for "good"
    assert topics.count("orders") == 3
    assert topics.count("orders-retry-300") == 2
    assert topics.count("orders-retry-600") == 2
    first_retry = next(t for topic, t in calls if topic == "orders-retry-300")
    due = decode_int(headers_of(hop1)["retry_topic-backoff-timestamp"])
    assert due is not None
    assert first_retry * 1000 >= due - 5  # held until due (5 ms of clock granularity)
    assert headers_of(hop1)["retry_topic-attempts"] == struct.pack(">i", 2)
    assert headers_of(hop2)["retry_topic-attempts"] == struct.pack(">i", 3)
    headers = headers_of(dead)
    assert headers["kafka_dlt-original-topic"] == b"orders"
    assert headers["kafka_dlt-exception-fqcn"] == b"ConnectionError"
    assert headers["kafka_dlt-exception-message"] == b"payment provider unavailable"
    assert headers["rivulet_dlt-reason"] == b"handler-error"
    assert b"payment provider unavailable" in headers["kafka_dlt-exception-stacktrace"]
    assert dead.value == hop1.value
