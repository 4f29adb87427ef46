"""The life of one record: routing, decoding, handling, retries, idempotency and parking.

No broker here: records are built as a producer would, outcomes are inspected.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from rivulet import App, Context, Event, NonRetriableError, RetryPolicy
from rivulet.framework._db import Database
from rivulet.framework._dispatch import build_routes
from rivulet.framework._outbox import Outbox
from rivulet.framework._processor import (
    REPLAY,
    REPLAY_LAST,
    Forwarded,
    Handled,
    Outcome,
    Persistence,
    Processor,
    Skipped,
)
from rivulet.framework._publishing import Built, EventEncoder
from rivulet.framework._retry import Backoff, decode_int, header_value
from rivulet.framework._store import FrameworkStore
from rivulet.framework._wire import ConsumedRecord, OutgoingRecord


class OrderPlaced(Event):
    order_id: str
    qty: int


class OrderCancelled(Event):
    order_id: str


class StockReserved(Event):
    order_id: str


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def __call__(self) -> int:
        return self.now


def encoder(clock: Clock, source: str = "test") -> EventEncoder:
    rng = random.Random(7)
    return EventEncoder(
        source=source,
        serializers=App("x").serializers,
        clock_ms=clock,
        random_bits=rng.getrandbits,
    )


def consumed(record: OutgoingRecord, offset: int = 0, partition: int = 0) -> ConsumedRecord:
    """What a consumer reads back after ``record`` was produced."""
    return ConsumedRecord(
        topic=record.topic,
        partition=partition,
        offset=offset,
        timestamp_ms=1_700_000_000_000,
        key=record.key,
        value=record.value,
        headers=list(record.headers),
    )


class Harness:
    """A processor for one group of an app, with a recording sink and fake sleep."""

    def __init__(
        self, app: App, group: str | None = None, persistence: Persistence | None = None
    ) -> None:
        self.clock = Clock()
        self.encoder = encoder(self.clock, source=app.name)
        self.sleeps: list[float] = []
        self.published: list[Built] = []
        routes = build_routes(app.handlers)[group or app.name]
        self.processor = Processor(
            routes,
            encoder=self.encoder,
            persistence=persistence,
            clock_ms=self.clock,
            random01=lambda: 0.5,
            sleep=self._sleep,
            default_timeout_s=5.0,
        )
        self.producer = encoder(self.clock, source="producer")

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    async def sink(self, built: Built) -> None:
        self.published.append(built)

    def record(
        self, topic: str, event: Event, key: str | None = "o-1", offset: int = 0
    ) -> ConsumedRecord:
        built = self.producer.build(event, topic=topic, key=key)
        return consumed(built.record, offset)

    async def process(self, record: ConsumedRecord) -> Outcome:
        return await self.processor.process(record, self.sink)


def headers_of(outcome: Outcome) -> dict[str, bytes]:
    assert isinstance(outcome, Forwarded)
    return dict(outcome.record.headers)


async def test_handler_gets_the_validated_event_and_publishes_with_lineage() -> None:
    app = App("inventory")
    seen: list[tuple[OrderPlaced, str]] = []

    @app.handler("orders")
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        seen.append((event, ctx.event_id))
        await ctx.publish("inventory", StockReserved(order_id=event.order_id), key=event.order_id)
        await ctx.publish("inventory", StockReserved(order_id="second"), key=event.order_id)

    h = Harness(app)
    record = h.record("orders", OrderPlaced(order_id="o-1", qty=2))
    assert await h.process(record) == Handled()
    consumed_id = header_value(record.headers, "ce_id")
    assert consumed_id is not None
    assert seen == [(OrderPlaced(order_id="o-1", qty=2), consumed_id.decode())]
    first, second = h.published
    headers = dict(first.record.headers)
    assert headers["ce_causationid"] == consumed_id
    assert headers["ce_correlationid"] == consumed_id  # the consumed event started the flow
    assert headers["ce_source"] == b"inventory"
    assert headers["ce_type"] == b"StockReserved"
    assert first.record.key == b"o-1"
    assert first.event_id != second.event_id
    incoming_trace = header_value(record.headers, "traceparent")
    assert incoming_trace is not None
    assert headers["traceparent"][:35] == incoming_trace[:35]  # same trace id

    # A redelivery republishes exactly the same ids, so consumers downstream dedupe.
    again = Harness(app)
    await again.process(record)
    assert [b.event_id for b in again.published] == [first.event_id, second.event_id]


async def test_one_topic_several_types_dispatch_by_ce_type() -> None:
    app = App("orders-view")
    calls: list[str] = []

    @app.handler("orders")
    async def placed(event: OrderPlaced) -> None:
        calls.append(f"placed {event.order_id}")

    @app.handler("orders")
    async def cancelled(event: OrderCancelled) -> None:
        calls.append(f"cancelled {event.order_id}")

    h = Harness(app)
    await h.process(h.record("orders", OrderCancelled(order_id="a")))
    await h.process(h.record("orders", OrderPlaced(order_id="b", qty=1)))
    assert calls == ["cancelled a", "placed b"]


async def test_a_union_annotation_takes_each_member_type() -> None:
    app = App("audit")
    calls: list[Event] = []

    @app.handler("orders")
    async def audit(event: OrderPlaced | OrderCancelled) -> None:
        calls.append(event)

    h = Harness(app)
    await h.process(h.record("orders", OrderCancelled(order_id="a")))
    await h.process(h.record("orders", OrderPlaced(order_id="b", qty=1)))
    assert calls == [OrderCancelled(order_id="a"), OrderPlaced(order_id="b", qty=1)]


def plain(
    topic: str, value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None
) -> ConsumedRecord:
    return ConsumedRecord(topic, 0, 5, 1, b"k", value, headers or [])


async def test_records_from_plain_producers_work_when_the_type_is_unambiguous() -> None:
    app = App("inventory")
    calls: list[OrderPlaced] = []

    @app.handler("orders")
    async def reserve(event: OrderPlaced) -> None:
        calls.append(event)

    h = Harness(app)
    assert await h.process(plain("orders", b'{"order_id": "o", "qty": 1}')) == Handled()
    assert calls == [OrderPlaced(order_id="o", qty=1)]


@pytest.mark.parametrize(
    ("value", "headers", "reason"),
    [
        (b"not json", [("ce_type", b"OrderPlaced")], b"invalid-payload"),
        (b'{"order_id": "o"}', [("ce_type", b"OrderPlaced")], b"invalid-payload"),
        (None, [("ce_type", b"OrderPlaced")], b"invalid-payload"),
        (b"{}", [("ce_type", b"\xff")], b"malformed"),
        (b"{}", [("ce_type", b"Refunded")], b"unknown-type"),
        (b"{}", [], b"malformed"),  # two types on the topic and no ce_type to choose
        (
            b"{}",
            [("ce_type", b"OrderPlaced"), ("content-type", b"application/xml")],
            b"invalid-payload",
        ),
    ],
)
async def test_bad_records_go_straight_to_the_dead_letter_topic(
    value: bytes | None, headers: list[tuple[str, bytes | None]], reason: bytes
) -> None:
    app = App("inventory")
    calls: list[Event] = []

    @app.handler("orders")
    async def placed(event: OrderPlaced) -> None:
        calls.append(event)

    @app.handler("orders")
    async def cancelled(event: OrderCancelled) -> None:
        calls.append(event)

    h = Harness(app)
    outcome = await h.process(plain("orders", value, headers))
    assert isinstance(outcome, Forwarded)
    assert outcome.dead_letter
    assert outcome.record.topic == "orders-dlt"
    assert outcome.record.value == value
    assert outcome.record.key == b"k"
    found = headers_of(outcome)
    assert found["rivulet_dlt-reason"] == reason
    assert found["kafka_dlt-original-offset"] == (5).to_bytes(8, "big")
    assert found["kafka_dlt-original-consumer-group"] == b"inventory"
    assert calls == []
    assert h.sleeps == []


async def test_unknown_types_can_be_skipped_deliberately() -> None:
    app = App("inventory")

    @app.handler("orders", unknown_types="skip")
    async def placed(event: OrderPlaced) -> None:
        pass

    h = Harness(app)
    assert await h.process(h.record("orders", OrderCancelled(order_id="a"))) == Skipped(
        "unhandled-type"
    )


def flaky(
    fail_times: int, error: Callable[[], Exception] = lambda: OSError("db down")
) -> tuple[Callable[[OrderPlaced], Awaitable[None]], list[int]]:
    calls = [0]

    async def handle(event: OrderPlaced) -> None:
        calls[0] += 1
        if calls[0] <= fail_times:
            raise error()

    return handle, calls


async def test_transient_failures_are_retried_in_place_with_jittered_backoff() -> None:
    app = App("inventory")
    handle, calls = flaky(2)
    policy = RetryPolicy(attempts=3, backoff=Backoff(initial_ms=100, multiplier=2.0, max_ms=1000))
    app.handler("orders", retry=policy)(handle)
    h = Harness(app)
    assert await h.process(h.record("orders", OrderPlaced(order_id="o", qty=1))) == Handled()
    assert calls == [3]
    assert h.sleeps == [0.05, 0.1]  # random01 = 0.5 of 100 ms, then of 200 ms


async def test_exhausted_records_hop_through_retry_topics_then_dead_letter() -> None:
    app = App("inventory")
    handle, calls = flaky(100)
    app.handler("orders", retry=RetryPolicy(attempts=2, topics=(1_000, 10_000)))(handle)
    h = Harness(app)
    record = h.record("orders", OrderPlaced(order_id="o", qty=1), offset=40)
    topics = []
    for hop in range(3):
        outcome = await h.process(record)
        assert isinstance(outcome, Forwarded)
        topics.append(outcome.record.topic)
        found = headers_of(outcome)
        assert found["kafka_dlt-original-topic"] == b"orders"
        assert found["kafka_dlt-original-offset"] == (40).to_bytes(8, "big")
        assert found["kafka_dlt-exception-fqcn"] == b"OSError"
        assert found["kafka_dlt-exception-message"] == b"db down"
        if hop < 2:
            assert not outcome.dead_letter
            assert decode_int(found["retry_topic-attempts"]) == hop + 2
            delay = (1_000, 10_000)[hop]
            assert decode_int(found["retry_topic-backoff-timestamp"]) == h.clock.now + delay
        else:
            assert outcome.dead_letter
            assert found["rivulet_dlt-reason"] == b"handler-error"
        # The forwarded record, as the group reads it back from the retry topic.
        record = consumed(outcome.record, offset=hop)
    assert topics == ["orders-retry-1000", "orders-retry-10000", "orders-dlt"]
    assert calls == [6]  # two calls on each of the three deliveries


async def test_retry_records_of_other_groups_are_skipped() -> None:
    app = App("inventory")
    handle, _calls = flaky(100)
    app.handler("orders", retry=RetryPolicy(attempts=1, topics=(1_000,)))(handle)
    other = App("payments")
    other_calls: list[OrderPlaced] = []

    @other.handler("orders", retry=RetryPolicy(topics=(1_000,)))
    async def charge(event: OrderPlaced) -> None:
        other_calls.append(event)

    h = Harness(app)
    outcome = await h.process(h.record("orders", OrderPlaced(order_id="o", qty=1)))
    assert isinstance(outcome, Forwarded)
    retried = consumed(outcome.record)
    assert await Harness(other).process(retried) == Skipped("other-group")
    assert other_calls == []


async def test_non_retriable_errors_skip_retries() -> None:
    app = App("inventory")
    handle, calls = flaky(1, lambda: NonRetriableError("unknown sku"))
    app.handler("orders", retry=RetryPolicy(attempts=5, topics=(1_000,)))(handle)
    h = Harness(app)
    outcome = await h.process(h.record("orders", OrderPlaced(order_id="o", qty=1)))
    assert isinstance(outcome, Forwarded)
    assert outcome.record.topic == "orders-dlt"
    assert headers_of(outcome)["rivulet_dlt-reason"] == b"non-retriable"
    assert calls == [1]
    assert h.sleeps == []


async def test_a_hung_handler_times_out_into_the_retry_path() -> None:
    app = App("inventory")

    @app.handler("orders", timeout_s=0.01, retry=RetryPolicy(attempts=1))
    async def hang(event: OrderPlaced) -> None:
        await asyncio.sleep(3600)

    h = Harness(app)
    outcome = await h.process(h.record("orders", OrderPlaced(order_id="o", qty=1)))
    assert isinstance(outcome, Forwarded)
    assert headers_of(outcome)["kafka_dlt-exception-fqcn"] == b"TimeoutError"


async def test_handling_records_does_not_ask_for_the_running_loop_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CPython's get_running_loop() makes a getpid() system call each time: the processor
    # looks the loop up once, not once per record (asyncio.current_task() without a loop
    # would). Both names are patched: asyncio's, and the one asyncio's own helpers call.
    lookups = 0
    real = asyncio.get_running_loop

    def counting() -> asyncio.AbstractEventLoop:
        nonlocal lookups
        lookups += 1
        return real()

    app = App("inventory")

    @app.handler("orders")
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.publish("inventory", StockReserved(order_id=event.order_id))

    h = Harness(app)
    records = [
        h.record("orders", OrderPlaced(order_id=f"o-{n}", qty=1), offset=n) for n in range(50)
    ]
    monkeypatch.setattr(asyncio, "get_running_loop", counting)
    monkeypatch.setattr(asyncio.events, "get_running_loop", counting)
    for record in records:
        assert await h.process(record) == Handled()
    assert len(h.published) == 50
    assert lookups <= 2  # the first record's, and perhaps the time-limit watchdog's sleep


async def test_context_outside_idempotent_handlers_has_no_transaction() -> None:
    app = App("inventory")
    errors: list[str] = []

    @app.handler("orders", retry=RetryPolicy(attempts=1))
    async def handle(event: OrderPlaced, ctx: Context) -> None:
        ctx.logger.info("handling")
        try:
            _ = ctx.transaction
        except Exception as exc:
            errors.append(str(exc))

    h = Harness(app)
    assert await h.process(h.record("orders", OrderPlaced(order_id="o", qty=1))) == Handled()
    assert "idempotent=True" in errors[0]


@pytest.fixture
async def persistence(database: Database) -> Persistence:
    store = FrameworkStore(database.dialect)
    async with database.transaction() as tx:
        await store.create_tables(tx)
        await tx.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, reserved INTEGER NOT NULL)")
        await tx.execute("INSERT INTO stock VALUES ('sku-1', 0)")
    return Persistence(database, store, Outbox(store, Clock()))


async def reserved(database: Database) -> int:
    async with database.transaction() as tx:
        row = await tx.fetchone("SELECT reserved FROM stock WHERE sku = 'sku-1'")
    assert row is not None
    return int(row[0])


async def outbox_rows(persistence: Persistence) -> list[str]:
    async with persistence.database.transaction() as tx:
        rows = await persistence.store.pending_outbox(tx, 100)
    return [row.type for row in rows]


async def test_idempotent_handler_changes_state_once_and_publishes_through_the_outbox(
    persistence: Persistence,
) -> None:
    app = App("inventory")
    fail = [True]

    @app.handler("orders", idempotent=True, retry=RetryPolicy(attempts=2, backoff=Backoff(0, 1, 0)))
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.transaction.execute(
            "UPDATE stock SET reserved = reserved + ? WHERE sku = 'sku-1'", (event.qty,)
        )
        await ctx.publish("inventory", StockReserved(order_id=event.order_id), key=event.order_id)
        if fail[0]:
            fail[0] = False
            raise OSError("crash after the state change and the publish")

    wakeup = persistence.outbox.subscribe()
    h = Harness(app, persistence=persistence)
    record = h.record("orders", OrderPlaced(order_id="o", qty=3))
    assert await h.process(record) == Handled()  # first call rolled back, second committed
    assert wakeup.is_set()
    assert await reserved(persistence.database) == 3
    assert await outbox_rows(persistence) == ["StockReserved"]
    assert h.published == []  # nothing went to the producer directly

    assert await h.process(record) == Handled(duplicate=True)  # redelivery
    assert await reserved(persistence.database) == 3
    assert await outbox_rows(persistence) == ["StockReserved"]


async def test_parked_keys_keep_later_events_behind_a_dead_letter(persistence: Persistence) -> None:
    app = App("inventory")
    failing: set[str] = {"bad"}
    handled: list[str] = []

    @app.handler("orders", park_failed_keys=True, retry=RetryPolicy(attempts=1))
    async def reserve(event: OrderPlaced) -> None:
        if event.order_id in failing:
            raise OSError(f"cannot handle {event.order_id}")
        handled.append(event.order_id)

    h = Harness(app, persistence=persistence)
    first = h.record("orders", OrderPlaced(order_id="bad", qty=1), key="A")
    outcome = await h.process(first)
    assert isinstance(outcome, Forwarded)
    assert headers_of(outcome)["rivulet_dlt-reason"] == b"handler-error"

    later = h.record("orders", OrderPlaced(order_id="later", qty=1), key="A", offset=1)
    parked = await h.process(later)
    assert isinstance(parked, Forwarded)
    assert parked.record.topic == "orders-dlt"
    assert headers_of(parked)["rivulet_dlt-reason"] == b"parked"
    assert (
        await h.process(h.record("orders", OrderPlaced(order_id="b", qty=1), key="B")) == Handled()
    )

    def replay(outcome: Outcome, batch: str, last: bool) -> ConsumedRecord:
        assert isinstance(outcome, Forwarded)
        headers = [
            (n, v)
            for n, v in outcome.record.headers
            if not n.startswith(("kafka_dlt-exception", "retry_topic", "rivulet_dlt"))
        ]
        headers.append((REPLAY, batch.encode()))
        if last:
            headers.append((REPLAY_LAST, b"1"))
        return consumed(OutgoingRecord("orders", outcome.record.key, outcome.record.value, headers))

    # Replay batch r1 while the cause persists: its first record fails again and the
    # second waits behind it; the key stays parked.
    again = await h.process(replay(outcome, "r1", last=False))
    assert isinstance(again, Forwarded)
    still = await h.process(replay(parked, "r1", last=True))
    assert isinstance(still, Forwarded)
    assert headers_of(still)["rivulet_dlt-reason"] == b"parked"
    assert (
        await h.process(h.record("orders", OrderPlaced(order_id="live", qty=1), key="A"))
        != Handled()
    )

    # Fixed: batch r2 goes through in order and releases the key.
    failing.clear()
    assert await h.process(replay(again, "r2", last=False)) == Handled()
    assert await h.process(replay(still, "r2", last=True)) == Handled()
    assert (
        await h.process(h.record("orders", OrderPlaced(order_id="after", qty=1), key="A"))
        == Handled()
    )
    assert handled == ["b", "bad", "later", "after"]

    # A processor started later (another replica) sees the same parking state.
    h.processor.forget_parking()
    async with persistence.database.transaction() as tx:
        assert await persistence.store.parked_keys(tx, "inventory", "orders") == {}
