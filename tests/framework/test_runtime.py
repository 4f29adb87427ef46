"""The framework on the real embedded broker, over TCP: consume, handle, publish, commit.

Each test runs an app with the ``kafka`` fixture (an in-memory embedded broker).
"""

from __future__ import annotations

import asyncio
import random
import struct
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from rivulet import App, Backoff, Context, Event, RetryPolicy
from rivulet.framework._consumer import GroupConsumer
from rivulet.framework._retry import decode_int
from rivulet.framework._wire import ConsumedRecord
from rivulet.framework.testing import KafkaHarness
from tests._broker_process import broker_process


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


async def test_backpressure_bounds_in_flight_records(kafka: KafkaHarness) -> None:
    app = App("slow")
    handled = 0
    total = 400
    done = asyncio.Event()
    samples: list[int] = []
    consumers: list[GroupConsumer] = []

    @app.handler("steps", concurrency=4)
    async def slow(event: Step) -> None:
        nonlocal handled
        samples.extend(c.in_flight for c in consumers)
        await asyncio.sleep(0.002)
        handled += 1
        if handled == total:
            done.set()

    await kafka.publish_many("steps", [(Step(entity=str(n), seq=n), str(n)) for n in range(total)])
    async with kafka.run(app, max_in_flight=25) as runtime:
        consumers.extend(runtime.consumers)
        await asyncio.wait_for(done.wait(), 60)
    assert handled == total
    assert max(samples) <= 25
    assert max(samples) >= 20  # it did fill up: the bound, not the input, limited it


async def test_graceful_stop_commits_so_a_restart_continues_without_repeats(
    kafka: KafkaHarness,
) -> None:
    seen: list[int] = []
    first_half = asyncio.Event()

    def counting_app() -> App:
        app = App("once")

        @app.handler("steps")
        async def count(event: Step) -> None:
            seen.append(event.seq)
            if len(seen) == 50:
                first_half.set()

        return app

    await kafka.publish_many("steps", [(Step(entity="e", seq=n), "e") for n in range(50)])
    async with kafka.run(counting_app()):
        await asyncio.wait_for(first_half.wait(), 30)
    await kafka.publish_many("steps", [(Step(entity="e", seq=n), "e") for n in range(50, 100)])
    async with kafka.run(counting_app()):
        await kafka.until(lambda: len(seen) >= 100, what="the second half")
        await asyncio.sleep(0.2)  # anything redelivered would show up now
    assert seen == list(range(100))


async def test_partitions_move_between_members_of_a_group(kafka: KafkaHarness) -> None:
    seen: list[tuple[str, int]] = []
    events: list[tuple[str, str, list[tuple[str, int]]]] = []

    def member(name: str) -> App:
        app = App(f"member-{name}")

        @app.handler("steps", group="shared")
        async def handle(event: Step) -> None:
            seen.append((name, event.seq))

        @app.on_partitions_assigned
        async def assigned(group: str, partitions: list[tuple[str, int]]) -> None:
            events.append((name, "assigned", partitions))

        @app.on_partitions_revoked
        async def revoked(group: str, partitions: list[tuple[str, int]]) -> None:
            events.append((name, "revoked", partitions))

        return app

    async with KafkaHarness.start(kafka.data_dir, partitions=2) as two:
        await two.publish_many("steps", [(Step(entity=str(n), seq=n), str(n)) for n in range(40)])
        async with two.run(member("a")):
            async with two.run(member("b")):
                await two.until(lambda: len(seen) >= 40, what="the first 40")
            await two.publish_many(
                "steps", [(Step(entity=str(n), seq=n), str(n)) for n in range(40, 80)]
            )
            await two.until(lambda: len(seen) >= 80, what="all 80")
    assert sorted(seq for _, seq in seen) == list(range(80))  # each exactly once
    assert {name for name, seq in seen if seq >= 40} == {"a"}  # "a" took over "b"'s partition
    assert ("b", "revoked") in {(name, kind) for name, kind, _ in events}
    assert any(name == "a" and kind == "assigned" and len(p) == 2 for name, kind, p in events)


async def test_stuck_handlers_pause_the_partitions_until_work_completes(
    kafka: KafkaHarness,
) -> None:
    app = App("stuck")
    gate = asyncio.Event()
    handled = 0
    done = asyncio.Event()

    @app.handler("steps", concurrency=10)
    async def wait(event: Step) -> None:
        nonlocal handled
        await gate.wait()
        handled += 1
        if handled == 100:
            done.set()

    await kafka.publish_many("steps", [(Step(entity=str(n), seq=n), str(n)) for n in range(100)])
    async with kafka.run(app, max_in_flight=10) as runtime:
        [consumer] = runtime.consumers
        await kafka.until(lambda: bool(consumer.paused), what="the pause")
        assert consumer.paused == {("steps", 0)}
        assert consumer.in_flight == 10
        gate.set()
        await asyncio.wait_for(done.wait(), 30)
        assert not consumer.paused


class Report(Event):
    body: str


async def test_a_publish_the_broker_refuses_ends_in_the_dead_letter_topic(
    kafka: KafkaHarness,
) -> None:
    app = App("reporter")
    app.topic("reports", config={"max.message.bytes": "2000"})

    @app.handler("steps", publishes={"reports": Report})
    async def report(event: Step, ctx: Context) -> None:
        size = 5_000 if event.entity == "big" else 10
        await ctx.publish("reports", Report(body="x" * size), key=event.entity)

    async with kafka.run(app):
        await kafka.publish("steps", Step(entity="big", seq=0), key="big")
        await kafka.publish("steps", Step(entity="small", seq=1), key="small")
        [dead] = await kafka.records("steps-dlt", count=1)
        [after] = await kafka.events("reports", Report, count=1)
    headers = headers_of(dead)
    assert headers["rivulet_dlt-reason"] == b"publish-failed"
    assert headers["kafka_dlt-exception-fqcn"] == b"rivulet.framework._errors.PublishError"
    assert dead.key == b"big"
    assert after.body == "x" * 10


class _RecordingConsumer:
    """Wraps a group's confluent-kafka consumer and notes how it is called: each poll's
    timeout and whether a stop had already been requested when it began; each consume
    call's thread and how many handlers of the group were under way."""

    def __init__(self, consumer: GroupConsumer) -> None:
        self._group_consumer = consumer
        self._real = consumer._consumer
        self.polls: list[tuple[float, bool]] = []
        self.consumes: list[tuple[int, int]] = []
        consumer._consumer = self  # type: ignore[assignment]

    def poll(self, timeout: float) -> object:
        self.polls.append((timeout, self._group_consumer._halting))
        return self._real.poll(timeout)

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.consumes.append((threading.get_ident(), self._group_consumer.handling))
        messages: list[Any] = self._real.consume(num_messages, timeout)
        return messages

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


async def test_a_stop_does_not_wait_out_an_idle_poll(kafka: KafkaHarness) -> None:
    # An idle consumer waits for records in short polls and checks for a stop between
    # them, so a graceful stop is not held up by a whole idle wait.
    recorders: list[_RecordingConsumer] = []
    async with kafka.run(inventory()) as runtime:
        for consumer in runtime.consumers:
            await asyncio.wait_for(consumer.assigned.wait(), 30)
            recorders.append(_RecordingConsumer(consumer))
        await kafka.until(lambda: all(len(r.polls) >= 3 for r in recorders), what="idle polls")
    for recorder in recorders:
        assert all(timeout <= 0.01 for timeout, _ in recorder.polls)
        # Once the stop was requested, no further poll began. (One may: the stop can land
        # between the consumer thread's check of the flag and the recorder's read of it.)
        assert sum(halting for _, halting in recorder.polls) <= 1


async def test_a_handled_record_is_not_kept_while_its_publishes_are_confirmed(
    kafka: KafkaHarness,
) -> None:
    # Once its handler has returned, a record's value and headers are let go; only its
    # offset waits for the broker to confirm what the handler published. Records that
    # one worker handles back to back see their predecessors in that state: the
    # confirmations arrive only when the worker lets the event loop go.
    app = App("releasing")
    consumers: list[GroupConsumer] = []
    kept: list[bool] = []  # per handled-but-unconfirmed record seen: still holds it?
    handled = 0
    total = 300

    @app.handler("orders", publishes={"inventory": StockReserved})
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        nonlocal handled
        for consumer in consumers:
            for runner in consumer._runners.values():
                kept.extend(
                    delivery.record is not None
                    for delivery in runner.line._entries
                    if delivery.released and not delivery.done
                )
        await ctx.publish(
            "inventory", StockReserved(order_id=event.order_id, qty=event.qty), key=ctx.key
        )
        handled += 1

    async with kafka.run(app) as runtime:
        consumers.extend(runtime.consumers)
        orders = [(OrderPlaced(order_id=f"o-{n}", qty=n), f"o-{n}") for n in range(total)]
        await kafka.publish_many("orders", orders)
        await kafka.until(lambda: handled == total, what="every order handled")
    assert kept, "no handled record was seen waiting for its publishes' confirmation"
    assert not any(kept)


@pytest.fixture
async def outside(tmp_path: Path) -> AsyncIterator[KafkaHarness]:
    """A broker in a process of its own (topics with two partitions), not on the test's loop."""
    options = ("--partitions", "2", "--group-initial-rebalance-delay-ms", "0", "--in-memory")
    with broker_process(tmp_path / "broker", tmp_path / "broker.log", options) as (_, bootstrap):
        async with KafkaHarness.connect(bootstrap, tmp_path) as harness:
            yield harness


async def _fetches_while_handling(
    harness: KafkaHarness, app: App, total: int, handled: Callable[[], int]
) -> list[tuple[bool, int]]:
    """Run ``app`` (one group) over ``total`` orders; for each ``consume`` call, whether
    it was made on the loop thread and how many handlers were under way."""
    loop_thread = threading.get_ident()
    async with harness.run(app) as runtime:
        (consumer,) = runtime.consumers
        recorder = _RecordingConsumer(consumer)
        orders = [(OrderPlaced(order_id=f"o-{n}", qty=n), f"o-{n}") for n in range(total)]
        await harness.publish_many("orders", orders)
        await harness.until(lambda: handled() == total, what="every order handled")
    return [(thread == loop_thread, handling) for thread, handling in recorder.consumes]


async def test_records_are_fetched_on_the_loop_thread_only_while_no_handler_is_under_way(
    outside: KafkaHarness,
) -> None:
    # A fetch on the loop thread may meet a rebalance, which cannot wait there for a
    # handler suspended in the middle of its work; while one is, the consumer thread fetches.
    app = App("pausing")
    handled = 0
    total = 300

    @app.handler("orders")
    async def reserve(event: OrderPlaced) -> None:
        nonlocal handled
        if event.qty % 50 == 0:
            await asyncio.sleep(0.05)  # suspended: the loop runs on meanwhile
        handled += 1

    calls = await _fetches_while_handling(outside, app, total, lambda: handled)
    on_loop = [handling for on_loop_thread, handling in calls if on_loop_thread]
    assert on_loop, "no fetch was made on the loop thread"
    assert not any(on_loop), f"fetched on the loop thread during {max(on_loop)} handlers"


async def test_no_fetch_on_the_loop_thread_when_the_broker_is_served_on_it(
    kafka: KafkaHarness,
) -> None:
    # A rebalance met there would block the loop waiting for a broker that runs on it.
    app = App("beside-the-broker")
    handled = 0

    @app.handler("orders")
    async def reserve(event: OrderPlaced) -> None:
        nonlocal handled
        handled += 1

    calls = await _fetches_while_handling(kafka, app, 100, lambda: handled)
    assert calls, "the consumer thread fetched nothing"
    assert not any(on_loop_thread for on_loop_thread, _ in calls)


async def test_a_rebalance_met_on_the_loop_thread_repeats_nothing(
    outside: KafkaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Here the consumer thread never fetches, so every rebalance is met by a fetch on the
    # loop thread, where nothing can be awaited. The member giving up partitions must
    # still confirm what its handled records published and commit them, so that the new
    # owner repeats none of them.
    def idle_fetch(self: GroupConsumer, room: int) -> list[Any]:
        time.sleep(0.005)
        return []

    revokes = 0
    revoke_now = GroupConsumer._revoke_now

    def counted_revoke_now(
        self: GroupConsumer, keys: list[tuple[str, int]]
    ) -> list[confluent_kafka.TopicPartition]:
        nonlocal revokes
        revokes += 1
        return revoke_now(self, keys)

    monkeypatch.setattr(GroupConsumer, "_fetch", idle_fetch)
    monkeypatch.setattr(GroupConsumer, "_revoke_now", counted_revoke_now)
    seen: list[tuple[str, int]] = []

    def member(name: str) -> App:
        app = App(f"member-{name}")

        @app.handler("steps", group="shared", publishes={"done": Step})
        async def handle(event: Step, ctx: Context) -> None:
            seen.append((name, event.seq))
            busy_until = time.perf_counter() + 0.002  # busy without suspending
            while time.perf_counter() < busy_until:
                pass
            await ctx.publish("done", event, key=event.entity)

        return app

    published = 0

    async def feed(harness: KafkaHarness, count: int) -> None:
        nonlocal published
        numbers = range(published, published + count)
        published += count
        await harness.publish_many("steps", [(Step(entity=str(n), seq=n), str(n)) for n in numbers])

    async def keep_feeding(harness: KafkaHarness) -> None:
        while True:  # about 500 records a second, as fast as one member handles them
            await feed(harness, 10)
            await asyncio.sleep(0.02)

    # Records keep arriving, so the revoke comes while "a" is busy; its publishes wait
    # 200 ms in the producer, so the revoke finds some of them still unconfirmed.
    lingering = {**outside.settings().kafka, "linger.ms": "200"}
    await feed(outside, 200)
    async with outside.run(member("a"), kafka=lingering):
        await outside.until(lambda: len(seen) >= 50, what="the first records")
        feeder = asyncio.create_task(keep_feeding(outside))
        try:
            async with outside.run(member("b"), kafka=lingering):
                await outside.until(lambda: any(n == "b" for n, _ in seen), what="b's records")
        finally:
            feeder.cancel()
        await outside.until(lambda: len(seen) >= published, what="every record", timeout_s=60)
    assert revokes >= 1, "no rebalance was met on the loop thread"
    assert sorted(seq for _, seq in seen) == list(range(published))  # each exactly once
