"""The outbox relay: in order, after commit, nothing lost across crashes, one leader."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from rivulet import App, Event
from rivulet.framework._context import Transaction
from rivulet.framework._db import Database
from rivulet.framework._outbox import Outbox, OutboxRelay
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._store import FrameworkStore
from rivulet.framework._wire import OutgoingRecord


class OrderPlaced(Event):
    order_id: str


class Broker:
    """Records what the relay publishes; can be told to fail."""

    def __init__(self) -> None:
        self.records: list[OutgoingRecord] = []
        self.failures = 0

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unreachable")
        self.records.extend(records)

    def ids(self) -> list[bytes]:
        return [dict(r.headers)["ce_id"] for r in self.records]


@pytest.fixture
async def store(database: Database) -> FrameworkStore:
    store = FrameworkStore(database.dialect)
    async with database.transaction() as tx:
        await store.create_tables(tx)
    return store


_RNG = random.Random(3)  # one stream for the whole module: ids never repeat


def make_encoder() -> EventEncoder:
    return EventEncoder(
        source="orders",
        serializers=App("orders").serializers,
        clock_ms=lambda: 1_700_000_000_000,
        random_bits=_RNG.getrandbits,
    )


async def place(
    database: Database, outbox: Outbox, order_ids: list[str], *, fail: bool = False
) -> None:
    async with database.transaction() as sql:
        tx = Transaction(sql, encoder=make_encoder(), outbox=outbox.write)
        for order_id in order_ids:
            await tx.publish("orders", OrderPlaced(order_id=order_id), key=order_id)
        if fail:
            raise RuntimeError("request failed after publishing")


def relay(
    database: Database, store: FrameworkStore, broker: Broker, owner: str = "a"
) -> OutboxRelay:
    return OutboxRelay(
        database=database,
        store=store,
        publish=broker.publish,
        clock_ms=lambda: 1_700_000_000_000,
        owner=owner,
        batch_size=3,
    )


async def test_committed_rows_are_published_in_order_and_once(
    database: Database, store: FrameworkStore
) -> None:
    outbox = Outbox(store, lambda: 0)
    await place(database, outbox, ["o1", "o2", "o3", "o4"])
    with pytest.raises(RuntimeError):
        await place(database, outbox, ["rolled-back"], fail=True)
    broker = Broker()
    r = relay(database, store, broker)
    assert await r.backlog() == 4
    assert await r.relay_once() == 3
    assert await r.relay_once() == 1
    assert await r.relay_once() == 0
    assert [rec.key for rec in broker.records] == [b"o1", b"o2", b"o3", b"o4"]
    assert all(dict(rec.headers)["ce_type"] == b"OrderPlaced" for rec in broker.records)
    assert await r.backlog() == 0


async def test_a_failed_publish_leaves_rows_for_the_next_round(
    database: Database, store: FrameworkStore
) -> None:
    outbox = Outbox(store, lambda: 0)
    await place(database, outbox, ["o1", "o2"])
    broker = Broker()
    broker.failures = 1
    r = relay(database, store, broker)
    with pytest.raises(ConnectionError):
        await r.relay_once()
    assert await r.backlog() == 2
    assert await r.relay_once() == 2
    assert [rec.key for rec in broker.records] == [b"o1", b"o2"]


async def test_a_crash_between_publish_and_mark_republishes_the_same_ids(
    database: Database, store: FrameworkStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = Outbox(store, lambda: 0)
    await place(database, outbox, ["o1", "o2"])
    broker = Broker()

    async def crash(*args: object, **kwargs: object) -> None:
        raise SystemExit("killed after the broker confirmed")

    with monkeypatch.context() as patch:
        patch.setattr(store, "mark_sent", crash)
        with pytest.raises(SystemExit):
            await relay(database, store, broker).relay_once()
    first = broker.ids()
    # The process restarts: its relay takes the lease over once the old one expires.
    restarted = OutboxRelay(
        database=database,
        store=store,
        publish=broker.publish,
        clock_ms=lambda: 1_700_000_000_000 + 60_000,
        owner="b",
    )
    assert await restarted.relay_once() == 2
    assert broker.ids() == first + first  # duplicates carry the same ce_id: consumers dedupe


async def test_one_replica_relays_at_a_time(database: Database, store: FrameworkStore) -> None:
    outbox = Outbox(store, lambda: 0)
    await place(database, outbox, ["o1"])
    broker = Broker()
    leader, follower = relay(database, store, broker, "a"), relay(database, store, broker, "b")
    assert await leader.relay_once() == 1
    await place(database, outbox, ["o2"])
    assert await follower.relay_once() == 0  # the lease is held by "a"
    await leader.release()
    assert await follower.relay_once() == 1
    assert [rec.key for rec in broker.records] == [b"o1", b"o2"]


async def test_the_relay_wakes_on_commit_and_survives_failures(
    database: Database, store: FrameworkStore
) -> None:
    outbox = Outbox(store, lambda: 0)
    broker = Broker()
    broker.failures = 1
    r = relay(database, store, broker)
    wakeup = outbox.subscribe()
    task = asyncio.create_task(r.run(wakeup, poll_interval_s=0.05))
    try:
        await place(database, outbox, ["o1"])
        outbox.committed()
        for _ in range(200):
            if broker.records:
                break
            await asyncio.sleep(0.01)
        assert [rec.key for rec in broker.records] == [b"o1"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
