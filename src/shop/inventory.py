"""The inventory service: an event-sourced warehouse with snapshots.

Commands from the saga (``ReserveStock``, ``ReleaseStock``) are decided against the
aggregate (:class:`shop.domain.inventory.Inventory`); the resulting events are appended
to the service's own event store and published to ``inventory`` through the outbox,
in the handler's transaction. The state is never stored any other way: it is the fold
of the event store.

Event store (the service's database):

=======================  ===============================================================
Table                    Holds
=======================  ===============================================================
``inventory_events``     ``seq`` (the aggregate version after the event), ``event_id``,
                         ``type``, ``data`` (the event as JSON), ``recorded_at_ms``
``inventory_snapshots``  the state at a version (JSON), every ``SHOP_SNAPSHOT_EVERY``
                         events; the latest two are kept
``inventory_head``       one row: the current version and the id of the last event
=======================  ===============================================================

The service keeps the state in memory and checks it against ``inventory_head`` at the
start of every transaction (on PostgreSQL the row is locked, so writers queue): if
another replica appended, the cache catches up from the events after its version; if
it is not a prefix of the store (a rolled-back transaction had changed it), it is
reloaded from the latest snapshot plus the events after it. A restart does the same,
so it costs one snapshot and a few events, not the whole history.

``GET /stock`` shows stock per SKU; ``GET /audit`` replays the whole event store from
the first event and compares the result with the snapshot-based state.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from fastapi import FastAPI

from rivulet import App, Context, Transaction
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.inventory import Inventory, decode_event, encode_event
from shop.events import (
    INVENTORY,
    INVENTORY_COMMANDS,
    InventoryEvent,
    ReleaseStock,
    ReserveStock,
    StockRejected,
    StockReleased,
    StockReplenished,
    StockReserved,
    declare_topic,
    serializers,
)

__all__ = ["DEFAULT_PORT", "EventStore", "api", "app"]

DEFAULT_PORT = 8082

app = App(
    "inventory",
    description="Stock per SKU, event-sourced; reserves and releases.",
    serializers=serializers(),
)
declare_topic(app, INVENTORY)

api = FastAPI(title="Rivulet shop: inventory", version="1.0.0")

_DDL = (
    """CREATE TABLE IF NOT EXISTS inventory_events (
        seq BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        recorded_at_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS inventory_snapshots (
        version BIGINT PRIMARY KEY,
        last_event_id TEXT NOT NULL,
        state TEXT NOT NULL,
        taken_at_ms BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS inventory_head (
        id INTEGER PRIMARY KEY,
        version BIGINT NOT NULL,
        last_event_id TEXT NOT NULL
    )""",
    (
        "INSERT INTO inventory_head (id, version, last_event_id) VALUES (1, 0, '') "
        "ON CONFLICT DO NOTHING"
    ),
)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class EventStore:
    """The aggregate's events in the service's database, with a verified in-memory cache."""

    def __init__(self) -> None:
        self._cache = Inventory()
        self._cache_last_id = ""
        self.snapshot_every = 2_000

    async def _head(self, tx: Transaction, *, lock: bool) -> tuple[int, str]:
        # PostgreSQL: writers queue on this row, so appends never interleave.
        suffix = " FOR UPDATE" if lock and tx.dialect == "postgresql" else ""
        row = await tx.fetchone(
            f"SELECT version, last_event_id FROM inventory_head WHERE id = 1{suffix}"  # noqa: S608
        )
        assert row is not None, "created at start-up"
        return int(row[0]), str(row[1])

    async def current(self, tx: Transaction, *, lock: bool = True) -> Inventory:
        """The aggregate at the store's current version."""
        version, last_id = await self._head(tx, lock=lock)
        cache = self._cache
        if (cache.version, self._cache_last_id) == (version, last_id):
            return cache
        if 0 < cache.version < version and await self._event_id(tx, cache.version) == (
            self._cache_last_id
        ):
            self._cache_last_id = await self._replay(tx, cache, after=cache.version) or last_id
            return cache
        self._cache, self._cache_last_id = await self.load(tx)
        return self._cache

    async def _event_id(self, tx: Transaction, seq: int) -> str | None:
        row = await tx.fetchone("SELECT event_id FROM inventory_events WHERE seq = ?", (seq,))
        return None if row is None else str(row[0])

    async def load(self, tx: Transaction, *, from_snapshot: bool = True) -> tuple[Inventory, str]:
        """The state from the latest snapshot (or from nothing) plus the events after it."""
        inventory, last_id = Inventory(), ""
        if from_snapshot:
            row = await tx.fetchone(
                "SELECT state, last_event_id FROM inventory_snapshots ORDER BY version DESC LIMIT 1"
            )
            if row is not None:
                inventory, last_id = Inventory.from_snapshot(json.loads(row[0])), str(row[1])
        return inventory, await self._replay(tx, inventory, after=inventory.version) or last_id

    @staticmethod
    async def _replay(tx: Transaction, inventory: Inventory, *, after: int) -> str | None:
        rows = await tx.fetchall(
            "SELECT seq, event_id, type, data FROM inventory_events WHERE seq > ? ORDER BY seq",
            (after,),
        )
        for seq, _, event_type, data in rows:
            inventory.apply(decode_event(event_type, data))
            assert inventory.version == seq, f"event store gap before seq {seq}"
        return str(rows[-1][1]) if rows else None

    async def append(
        self, tx: Transaction, inventory: Inventory, events: tuple[InventoryEvent, ...]
    ) -> None:
        """Apply ``events`` to ``inventory`` (the cache) and store them, in ``tx``."""
        if not events:
            return
        before = inventory.version
        now = _now_ms()
        rows = []
        event_id = ""
        for event in events:
            inventory.apply(event)
            event_id = secrets.token_hex(8)
            rows.append((inventory.version, event_id, *encode_event(event), now))
        await tx.executemany(
            "INSERT INTO inventory_events (seq, event_id, type, data, recorded_at_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        await tx.execute(
            "UPDATE inventory_head SET version = ?, last_event_id = ? WHERE id = 1",
            (inventory.version, event_id),
        )
        self._cache_last_id = event_id
        if inventory.version // self.snapshot_every > before // self.snapshot_every:
            await self._snapshot(tx, inventory, event_id, now)

    async def _snapshot(
        self, tx: Transaction, inventory: Inventory, last_id: str, now: int
    ) -> None:
        await tx.execute(
            "INSERT INTO inventory_snapshots (version, last_event_id, state, taken_at_ms) "
            "VALUES (?, ?, ?, ?)",
            (inventory.version, last_id, json.dumps(inventory.snapshot()), now),
        )
        await tx.execute(
            "DELETE FROM inventory_snapshots WHERE version < (SELECT MIN(version) FROM "
            "(SELECT version FROM inventory_snapshots ORDER BY version DESC LIMIT 2) AS kept)"
        )


store = EventStore()


async def _start(settings: ShopSettings) -> None:
    store.snapshot_every = settings.snapshot_every
    async with app.transaction() as tx:
        for statement in _DDL:
            await tx.execute(statement)
        await store.current(tx)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_start)


def _key(event: InventoryEvent) -> str:
    return event.sku if isinstance(event, StockReplenished) else event.order_id


@app.handler(
    INVENTORY_COMMANDS,
    idempotent=True,
    publishes={INVENTORY: (StockReserved, StockRejected, StockReleased, StockReplenished)},
)
async def handle(command: ReserveStock | ReleaseStock, ctx: Context) -> None:
    """Decide the command, store the events, publish them (one transaction)."""
    tx = ctx.transaction
    inventory = await store.current(tx)
    if isinstance(command, ReserveStock):
        decision = inventory.reserve(command)
    else:
        decision = inventory.release(command)
    await store.append(tx, inventory, decision.events)
    for event in decision.publish:
        await ctx.publish(INVENTORY, event, key=_key(event))


# ----------------------------------------------------------------------------- API


def _stock(inventory: Inventory) -> dict[str, dict[str, int]]:
    return {
        sku: {
            "available": inventory.available.get(sku, 0),
            "reserved": inventory.reserved.get(sku, 0),
            "received": inventory.received.get(sku, 0),
        }
        for sku in sorted(inventory.received)
    }


@api.get("/stock")
async def stock() -> dict[str, Any]:
    """Stock per SKU at the current version, and any broken invariant."""
    async with app.transaction() as tx:
        inventory = await store.current(tx, lock=False)
        return {
            "version": inventory.version,
            "skus": _stock(inventory),
            "violations": inventory.violations(),
        }


@api.get("/audit")
async def audit() -> dict[str, Any]:
    """Replay every event from the first and compare with the snapshot-based state."""
    async with app.transaction() as tx:
        replayed, _ = await store.load(tx, from_snapshot=False)
        restored, _ = await store.load(tx)
    return {
        "version": replayed.version,
        "replay_matches_snapshot": replayed.same_state(restored),
        "violations": replayed.violations(),
        "skus": _stock(replayed),
        "reservations": {
            order: {"status": status.value, "lines": {x.sku: x.quantity for x in lines}}
            for order, (status, lines) in replayed.reservations().items()
        },
    }
