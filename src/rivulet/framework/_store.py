"""The framework's own tables: processed events, the outbox and parked keys.

Created at start-up (``CREATE TABLE IF NOT EXISTS``) in the service's database, next to
the service's own tables, so they share its transactions.

``rivulet_processed_events``: one row per (consumer group, event id) handled by an
idempotent handler, inserted in the handler's transaction *before* the handler runs:
a duplicate insert means the event was already handled, and the transaction is
rolled back untouched.

``rivulet_outbox``: events published inside a transaction, with the columns
Debezium's outbox event router reads, so a CDC relay can replace the polling one:

================  ===========================================================
Column            Meaning
================  ===========================================================
``seq``           insertion order; the relay publishes in this order
``id``            event id (``ce_id``); Debezium's ``table.field.event.id``
``aggregatetype`` destination topic; route with ``route.by.field=aggregatetype``
                  and ``route.topic.replacement=${routedByValue}``
``aggregateid``   record key (the entity id); Debezium's ``table.field.event.key``
``type``          event type (``ce_type``)
``payload``       the encoded payload bytes (BLOB / BYTEA)
``headers``       JSON list of ``[name, value]`` pairs: every Kafka header
``created_at_ms`` when the transaction wrote it
``sent_at_ms``    when the relay's publish was confirmed; NULL until then
================  ===========================================================

``rivulet_parked_keys``: keys whose events wait behind a dead-lettered one;
``replay_batch`` is the dead-letter replay whose record failed again (its later records
must not overtake it), NULL when the key was parked by a live record.

``rivulet_leases``: named leases with an owner and an expiry, so that one replica at a
time runs the outbox relay.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from rivulet.framework._db import Dialect, SqlTransaction
from rivulet.framework._wire import OutgoingRecord

__all__ = ["FrameworkStore", "OutboxRow"]

_DDL: Final[dict[Dialect, tuple[str, ...]]] = {
    "sqlite": (
        """CREATE TABLE IF NOT EXISTS rivulet_processed_events (
            consumer_group TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at_ms INTEGER NOT NULL,
            PRIMARY KEY (consumer_group, event_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS rivulet_outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            aggregatetype TEXT NOT NULL,
            aggregateid TEXT,
            type TEXT NOT NULL,
            payload BLOB NOT NULL,
            headers TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            sent_at_ms INTEGER
        )""",
        """CREATE INDEX IF NOT EXISTS rivulet_outbox_unsent
            ON rivulet_outbox (seq) WHERE sent_at_ms IS NULL""",
        """CREATE TABLE IF NOT EXISTS rivulet_parked_keys (
            consumer_group TEXT NOT NULL,
            topic TEXT NOT NULL,
            record_key BLOB NOT NULL,
            parked_at_ms INTEGER NOT NULL,
            reason TEXT NOT NULL,
            replay_batch TEXT,
            PRIMARY KEY (consumer_group, topic, record_key)
        )""",
        """CREATE TABLE IF NOT EXISTS rivulet_leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL
        )""",
    ),
    "postgresql": (
        # Two services starting together must not race on CREATE TABLE.
        "SELECT pg_advisory_xact_lock(7322159140231)",
        """CREATE TABLE IF NOT EXISTS rivulet_processed_events (
            consumer_group TEXT NOT NULL,
            event_id TEXT NOT NULL,
            processed_at_ms BIGINT NOT NULL,
            PRIMARY KEY (consumer_group, event_id)
        )""",
        """CREATE TABLE IF NOT EXISTS rivulet_outbox (
            seq BIGSERIAL PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            aggregatetype TEXT NOT NULL,
            aggregateid TEXT,
            type TEXT NOT NULL,
            payload BYTEA NOT NULL,
            headers TEXT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            sent_at_ms BIGINT
        )""",
        """CREATE INDEX IF NOT EXISTS rivulet_outbox_unsent
            ON rivulet_outbox (seq) WHERE sent_at_ms IS NULL""",
        """CREATE TABLE IF NOT EXISTS rivulet_parked_keys (
            consumer_group TEXT NOT NULL,
            topic TEXT NOT NULL,
            record_key BYTEA NOT NULL,
            parked_at_ms BIGINT NOT NULL,
            reason TEXT NOT NULL,
            replay_batch TEXT,
            PRIMARY KEY (consumer_group, topic, record_key)
        )""",
        """CREATE TABLE IF NOT EXISTS rivulet_leases (
            name TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        )""",
    ),
}

# Records without a key are parked under this value (keys are bytes, never this long).
_NO_KEY: Final = b"\x00rivulet:no-key\x00"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One unsent outbox row, ready to become a Kafka record."""

    seq: int
    id: str
    topic: str
    key: str | None
    type: str
    payload: bytes
    headers: list[tuple[str, bytes]]

    def record(self) -> OutgoingRecord:
        """The Kafka record to publish."""
        key = None if self.key is None else self.key.encode()
        return OutgoingRecord(self.topic, key, self.payload, list(self.headers))


class FrameworkStore:
    """SQL for the framework's tables, for one dialect; every method takes a transaction."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    async def create_tables(self, tx: SqlTransaction) -> None:
        """Create the tables and indexes that do not exist yet."""
        for statement in _DDL[self.dialect]:
            await tx.execute(statement)

    # -- idempotent consumers

    async def claim(self, tx: SqlTransaction, group: str, event_id: str, now_ms: int) -> bool:
        """Record that ``group`` handles ``event_id``; ``False`` if it already did."""
        changed = await tx.execute(
            "INSERT INTO rivulet_processed_events (consumer_group, event_id, processed_at_ms) "
            "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (group, event_id, now_ms),
        )
        return changed == 1

    async def purge_processed(self, tx: SqlTransaction, before_ms: int) -> int:
        """Forget processed events older than ``before_ms``; returns how many."""
        return await tx.execute(
            "DELETE FROM rivulet_processed_events WHERE processed_at_ms < ?", (before_ms,)
        )

    # -- outbox

    async def add_outbox(
        self,
        tx: SqlTransaction,
        record: OutgoingRecord,
        *,
        event_id: str,
        event_type: str,
        now_ms: int,
    ) -> None:
        """Store ``record`` for the relay, in the caller's transaction."""
        key = None if record.key is None else record.key.decode()
        headers = json.dumps([[name, value.decode()] for name, value in record.headers])
        await tx.execute(
            "INSERT INTO rivulet_outbox "
            "(id, aggregatetype, aggregateid, type, payload, headers, created_at_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event_id, record.topic, key, event_type, record.value, headers, now_ms),
        )

    async def pending_outbox(self, tx: SqlTransaction, limit: int) -> list[OutboxRow]:
        """The oldest unsent rows, in insertion order."""
        rows = await tx.fetchall(
            "SELECT seq, id, aggregatetype, aggregateid, type, payload, headers "
            "FROM rivulet_outbox WHERE sent_at_ms IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            OutboxRow(
                seq=seq,
                id=event_id,
                topic=topic,
                key=key,
                type=event_type,
                payload=bytes(payload),
                headers=[(name, value.encode()) for name, value in json.loads(headers)],
            )
            for seq, event_id, topic, key, event_type, payload, headers in rows
        ]

    async def mark_sent(self, tx: SqlTransaction, seqs: Sequence[int], now_ms: int) -> None:
        """Mark rows as published (the broker confirmed them)."""
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            await tx.execute(
                f"UPDATE rivulet_outbox SET sent_at_ms = ? WHERE seq IN ({marks})",  # noqa: S608 - only ? marks are interpolated
                (now_ms, *chunk),
            )

    async def outbox_backlog(self, tx: SqlTransaction) -> int:
        """How many rows wait for the relay."""
        row = await tx.fetchone("SELECT COUNT(*) FROM rivulet_outbox WHERE sent_at_ms IS NULL")
        return 0 if row is None else int(row[0])

    async def purge_sent(self, tx: SqlTransaction, before_ms: int) -> int:
        """Delete rows sent before ``before_ms``; returns how many."""
        return await tx.execute(
            "DELETE FROM rivulet_outbox WHERE sent_at_ms IS NOT NULL AND sent_at_ms < ?",
            (before_ms,),
        )

    # -- parked keys

    async def park(
        self,
        tx: SqlTransaction,
        group: str,
        topic: str,
        key: bytes | None,
        *,
        reason: str,
        replay_batch: str | None,
        now_ms: int,
    ) -> None:
        """Park ``key`` (or mark which replay batch failed for an already parked key)."""
        await tx.execute(
            "INSERT INTO rivulet_parked_keys "
            "(consumer_group, topic, record_key, parked_at_ms, reason, replay_batch) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (consumer_group, topic, record_key) "
            "DO UPDATE SET replay_batch = excluded.replay_batch",
            (group, topic, _NO_KEY if key is None else key, now_ms, reason, replay_batch),
        )

    async def unpark(self, tx: SqlTransaction, group: str, topic: str, key: bytes | None) -> bool:
        """Release ``key``; ``False`` if it was not parked."""
        changed = await tx.execute(
            "DELETE FROM rivulet_parked_keys "
            "WHERE consumer_group = ? AND topic = ? AND record_key = ?",
            (group, topic, _NO_KEY if key is None else key),
        )
        return changed == 1

    async def parked_keys(
        self, tx: SqlTransaction, group: str, topic: str
    ) -> dict[bytes | None, str | None]:
        """Every key parked for ``group`` on ``topic``, with its failed replay batch."""
        rows = await tx.fetchall(
            "SELECT record_key, replay_batch FROM rivulet_parked_keys "
            "WHERE consumer_group = ? AND topic = ?",
            (group, topic),
        )
        keys: dict[bytes | None, str | None] = {}
        for raw, batch in rows:
            value = bytes(raw)
            keys[None if value == _NO_KEY else value] = batch
        return keys

    # -- leases

    async def acquire_lease(
        self, tx: SqlTransaction, name: str, owner: str, *, now_ms: int, duration_ms: int
    ) -> bool:
        """Take or renew lease ``name`` for ``owner``; ``False`` while another owner holds it."""
        changed = await tx.execute(
            "INSERT INTO rivulet_leases (name, owner, expires_at_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
            "expires_at_ms = excluded.expires_at_ms "
            "WHERE rivulet_leases.owner = excluded.owner OR rivulet_leases.expires_at_ms < ?",
            (name, owner, now_ms + duration_ms, now_ms),
        )
        return changed == 1

    async def release_lease(self, tx: SqlTransaction, name: str, owner: str) -> None:
        """Give lease ``name`` up, if ``owner`` holds it."""
        await tx.execute("DELETE FROM rivulet_leases WHERE name = ? AND owner = ?", (name, owner))
