"""Processed-event records, the outbox and parked keys, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from rivulet.framework._db import Database
from rivulet.framework._store import FrameworkStore
from rivulet.framework._wire import OutgoingRecord


@pytest.fixture
async def store(database: Database) -> FrameworkStore:
    store = FrameworkStore(database.dialect)
    for _ in range(2):  # creating twice is harmless (every start does it)
        async with database.transaction() as tx:
            await store.create_tables(tx)
    return store


async def test_a_claim_rolled_back_with_its_handler_can_be_made_again(
    database: Database, store: FrameworkStore
) -> None:
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, reserved INTEGER)")
        await tx.execute("INSERT INTO stock VALUES ('sku-1', 0)")

    async def handle(event_id: str, *, crash: bool = False) -> bool:
        async with database.transaction() as tx:
            if not await store.claim(tx, "inventory", event_id, now_ms=1):
                return False
            await tx.execute("UPDATE stock SET reserved = reserved + 1 WHERE sku = 'sku-1'")
            if crash:
                raise RuntimeError("crash after the state change")
        return True

    with pytest.raises(RuntimeError):
        await handle("e-1", crash=True)
    assert await handle("e-1")  # the crashed attempt left no trace
    assert not await handle("e-1")  # a redelivery changes nothing
    assert await handle("e-2")
    async with database.transaction() as tx:
        assert await tx.fetchone("SELECT reserved FROM stock") == (2,)
        # Claims are per group: another service handles the same event independently.
        assert await store.claim(tx, "payments", "e-1", now_ms=1)


async def test_processed_records_can_be_purged(database: Database, store: FrameworkStore) -> None:
    async with database.transaction() as tx:
        assert await store.claim(tx, "g", "old", now_ms=100)
        assert await store.claim(tx, "g", "new", now_ms=200)
        assert await store.purge_processed(tx, before_ms=150) == 1
        assert await store.claim(tx, "g", "old", now_ms=300)
        assert not await store.claim(tx, "g", "new", now_ms=300)


def outgoing(n: int, key: str | None = "o-1") -> OutgoingRecord:
    return OutgoingRecord(
        topic="orders",
        key=None if key is None else key.encode(),
        value=f'{{"n":{n}}}'.encode(),
        headers=[("ce_id", f"e-{n}".encode()), ("ce_type", b"OrderPlaced"), ("x", b"\xc3\xa9")],
    )


async def test_outbox_rows_appear_only_when_their_transaction_commits(
    database: Database, store: FrameworkStore
) -> None:

    async def failing_request() -> None:
        async with database.transaction() as tx:
            await store.add_outbox(tx, outgoing(0), event_id="e-0", event_type="T", now_ms=1)
            raise RuntimeError("request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    async with database.transaction() as tx:
        for n in (1, 2, 3):
            key = None if n == 2 else "o-1"
            await store.add_outbox(
                tx, outgoing(n, key), event_id=f"e-{n}", event_type="OrderPlaced", now_ms=n
            )
    async with database.transaction() as tx:
        assert await store.outbox_backlog(tx) == 3
        rows = await store.pending_outbox(tx, limit=2)
    assert [row.id for row in rows] == ["e-1", "e-2"]
    assert rows[0].record() == outgoing(1)
    assert rows[1].record() == outgoing(2, None)
    assert rows[0].seq < rows[1].seq

    async with database.transaction() as tx:
        await store.mark_sent(tx, [row.seq for row in rows], now_ms=10)
        remaining = await store.pending_outbox(tx, limit=10)
        assert [row.id for row in remaining] == ["e-3"]
        assert await store.outbox_backlog(tx) == 1
        assert await store.purge_sent(tx, before_ms=11) == 2
        row = await tx.fetchone(
            "SELECT aggregatetype, aggregateid, type FROM rivulet_outbox WHERE id = ?", ("e-3",)
        )
        assert row == ("orders", "o-1", "OrderPlaced")


async def test_mark_sent_handles_large_batches(database: Database, store: FrameworkStore) -> None:
    async with database.transaction() as tx:
        for n in range(1_200):
            await store.add_outbox(tx, outgoing(n), event_id=f"e-{n}", event_type="T", now_ms=0)
        rows = await store.pending_outbox(tx, limit=2_000)
        await store.mark_sent(tx, [row.seq for row in rows], now_ms=1)
        assert await store.outbox_backlog(tx) == 0


async def test_parked_keys(database: Database, store: FrameworkStore) -> None:
    async with database.transaction() as tx:
        await store.park(tx, "inventory", "orders", b"o-1", reason="x", replay_batch=None, now_ms=1)
        await store.park(tx, "inventory", "orders", None, reason="x", replay_batch=None, now_ms=3)
        await store.park(tx, "payments", "orders", b"o-2", reason="x", replay_batch=None, now_ms=4)
        # A replayed record of a parked key failed again: the batch is remembered.
        await store.park(tx, "inventory", "orders", b"o-1", reason="x", replay_batch="r1", now_ms=5)
        assert await store.parked_keys(tx, "inventory", "orders") == {b"o-1": "r1", None: None}
        assert await store.unpark(tx, "inventory", "orders", None)
        assert not await store.unpark(tx, "inventory", "orders", None)
        assert await store.parked_keys(tx, "inventory", "orders") == {b"o-1": "r1"}
        assert await store.parked_keys(tx, "payments", "orders") == {b"o-2": None}


async def test_leases_have_one_owner_until_they_expire(
    database: Database, store: FrameworkStore
) -> None:
    async with database.transaction() as tx:
        assert await store.acquire_lease(tx, "relay", "a", now_ms=0, duration_ms=100)
        assert await store.acquire_lease(tx, "relay", "a", now_ms=50, duration_ms=100)  # renew
        assert not await store.acquire_lease(tx, "relay", "b", now_ms=149, duration_ms=100)
        assert await store.acquire_lease(tx, "relay", "b", now_ms=151, duration_ms=100)
        assert not await store.acquire_lease(tx, "relay", "a", now_ms=160, duration_ms=100)
        await store.release_lease(tx, "relay", "a")  # not the owner: no effect
        assert not await store.acquire_lease(tx, "relay", "a", now_ms=170, duration_ms=100)
        await store.release_lease(tx, "relay", "b")
        assert await store.acquire_lease(tx, "relay", "a", now_ms=171, duration_ms=100)
