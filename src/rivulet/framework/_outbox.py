"""The transactional outbox: write in the caller's transaction, relay after commit.

Writing: :meth:`Outbox.write` inserts the record into ``rivulet_outbox`` inside the
transaction that changes the service's state. If the transaction rolls back, so does
the event.

Relaying: :class:`OutboxRelay` reads unsent rows in insertion order, hands them to the
(idempotent) producer, waits for the broker's confirmation and only then marks them
sent. A crash after the commit and before the publish leaves the rows unsent: the next
relay publishes them. A crash after the publish and before the mark republishes them
with the same event ids, which idempotent consumers drop. One replica at a time relays
(a lease in ``rivulet_leases``), so rows keep their order per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from rivulet.framework._db import Database, SqlTransaction
from rivulet.framework._publishing import Built
from rivulet.framework._store import FrameworkStore, OutboxRow
from rivulet.framework._wire import OutgoingRecord

__all__ = ["Outbox", "OutboxRelay", "PublishBatch"]

_LEASE = "outbox-relay"
_log = logging.getLogger("rivulet.outbox")

#: Publishes records in order and returns once the broker confirmed all of them.
PublishBatch = Callable[[Sequence[OutgoingRecord]], Awaitable[None]]


class Outbox:
    """Writes events into the outbox table and wakes the relay after commits."""

    def __init__(self, store: FrameworkStore, clock_ms: Callable[[], int]) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self._wakeups: list[asyncio.Event] = []

    async def write(self, tx: SqlTransaction, built: Built) -> None:
        """Store ``built`` in the outbox, in ``tx``."""
        await self._store.add_outbox(
            tx,
            built.record,
            event_id=built.event_id,
            event_type=built.event_type,
            now_ms=self._clock_ms(),
        )

    def committed(self) -> None:
        """A transaction that wrote outbox rows has committed: relays look now."""
        for wakeup in self._wakeups:
            wakeup.set()

    def subscribe(self) -> asyncio.Event:
        """An event set whenever outbox rows were committed (one per relay)."""
        wakeup = asyncio.Event()
        self._wakeups.append(wakeup)
        return wakeup


class OutboxRelay:
    """Publishes committed outbox rows, in order, and marks them sent."""

    def __init__(
        self,
        *,
        database: Database,
        store: FrameworkStore,
        publish: PublishBatch,
        clock_ms: Callable[[], int],
        owner: str,
        batch_size: int = 500,
        lease_ms: int = 15_000,
    ) -> None:
        self._database = database
        self._store = store
        self._publish = publish
        self._clock_ms = clock_ms
        self.owner = owner
        self.batch_size = batch_size
        self.lease_ms = lease_ms
        #: Rows published since the relay started.
        self.published = 0

    async def relay_once(self) -> int:
        """Publish one batch of unsent rows; returns how many (0: none, or not the leader)."""
        async with self._database.transaction() as tx:
            leader = await self._store.acquire_lease(
                tx, _LEASE, self.owner, now_ms=self._clock_ms(), duration_ms=self.lease_ms
            )
            rows: list[OutboxRow] = []
            if leader:
                rows = await self._store.pending_outbox(tx, self.batch_size)
        if not rows:
            return 0
        await self._publish([row.record() for row in rows])
        async with self._database.transaction() as tx:
            await self._store.mark_sent(tx, [row.seq for row in rows], self._clock_ms())
        self.published += len(rows)
        return len(rows)

    async def backlog(self) -> int:
        """Rows waiting to be published."""
        async with self._database.transaction() as tx:
            return await self._store.outbox_backlog(tx)

    async def run(self, wakeup: asyncio.Event, *, poll_interval_s: float) -> None:
        """Relay until cancelled: right after commits that wrote rows, and every poll interval.

        Publish failures are logged and retried at the next round; the rows stay unsent.
        """
        while True:
            wakeup.clear()
            try:
                while await self.relay_once() == self.batch_size:
                    pass
            except Exception:  # noqa: BLE001 - the relay outlives broker or database hiccups
                _log.exception("outbox relay round failed; the rows stay unsent and are retried")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), poll_interval_s)

    async def release(self) -> None:
        """Give the relay lease up (at shutdown), so another replica takes over at once."""
        async with self._database.transaction() as tx:
            await self._store.release_lease(tx, _LEASE, self.owner)
