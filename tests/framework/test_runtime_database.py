"""Idempotent handlers and the outbox on the real broker, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time

from rivulet import App, Context, Event
from rivulet.framework import Runtime
from rivulet.framework.testing import KafkaHarness


class OrderPlaced(Event):
    order_id: str
    qty: int


class StockReserved(Event):
    order_id: str
    qty: int


async def drained(runtime: Runtime) -> int:
    """The outbox backlog once rows are marked sent (right after the broker confirms)."""

    async def empty() -> bool:
        return await runtime.outbox_backlog() == 0

    await KafkaHarness.until(empty, what="the outbox to drain")
    return await runtime.outbox_backlog()


def inventory() -> App:
    app = App("inventory")

    @app.on_startup
    async def schema() -> None:
        async with app.transaction() as tx:
            await tx.execute(
                "CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, qty INTEGER)"
            )

    @app.handler("orders", idempotent=True, publishes={"inventory": StockReserved})
    async def reserve(event: OrderPlaced, ctx: Context) -> None:
        await ctx.transaction.execute(
            "INSERT INTO reservations (order_id, qty) VALUES (?, ?)", (event.order_id, event.qty)
        )
        await ctx.publish(
            "inventory", StockReserved(order_id=event.order_id, qty=event.qty), key=event.order_id
        )

    return app


async def test_redelivered_events_change_nothing_and_publish_once(
    kafka: KafkaHarness, database_url: str
) -> None:
    app = inventory()
    async with kafka.run(app, database_url=database_url) as runtime:
        first = await kafka.publish("orders", OrderPlaced(order_id="o-1", qty=2), key="o-1")
        [record] = await kafka.records("inventory", count=1)
        # The same event again, as a redelivery or a producer retry would bring it.
        again = [("ce_id", first.encode()), ("ce_type", b"OrderPlaced")]
        await kafka.publish_raw(
            "orders", b'{"order_id": "o-1", "qty": 2}', key=b"o-1", headers=again
        )
        await kafka.publish("orders", OrderPlaced(order_id="o-2", qty=1), key="o-2")
        reserved = await kafka.events("inventory", StockReserved, count=2)
        async with app.transaction() as tx:
            rows = await tx.fetchall("SELECT order_id, qty FROM reservations ORDER BY order_id")
        backlog = await drained(runtime)
    assert rows == [("o-1", 2), ("o-2", 1)]
    assert [e.order_id for e in reserved] == ["o-1", "o-2"]
    assert backlog == 0
    assert dict(record.headers)["ce_causationid"] == first.encode()
    metrics = runtime.metrics.render().decode()
    assert (
        'rivulet_records_duplicate_total{app="inventory",group="inventory",topic="orders"} 1.0'
        in metrics
    )


async def test_outbox_rows_survive_a_crash_between_commit_and_publish(
    kafka: KafkaHarness, database_url: str, tmp_path: os.PathLike[str]
) -> None:
    # A process commits an order and its event, then dies before its relay runs.
    script = f"""
import asyncio, os
from rivulet import App, Event, Settings

class OrderPlaced(Event):
    order_id: str
    qty: int

app = App("orders")

async def main() -> None:
    settings = Settings(bootstrap_servers={kafka.bootstrap_servers!r},
                        database_url={database_url!r}, outbox_relay=False)
    async with app.running(settings):
        async with app.transaction() as tx:
            await tx.execute("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY)")
            await tx.execute("INSERT INTO orders (id) VALUES ('o-9')")
            await tx.publish("orders", OrderPlaced(order_id="o-9", qty=3), key="o-9")
        os._exit(9)  # killed: no shutdown, no relay

asyncio.run(main())
"""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=tmp_path)
    assert await asyncio.wait_for(process.wait(), 60) == 9

    app = App("orders")
    app.publishes("orders", OrderPlaced)
    started = time.monotonic()
    async with kafka.run(app, database_url=database_url) as runtime:
        [event] = await kafka.events("orders", OrderPlaced, count=1)
        assert await drained(runtime) == 0
    assert event == OrderPlaced(order_id="o-9", qty=3)
    assert time.monotonic() - started < 30
    # Exactly once: nothing else reached the topic.
    records = await kafka.records("orders", count=1)
    assert len(records) == 1


async def test_a_rolled_back_transaction_publishes_nothing(
    kafka: KafkaHarness, database_url: str
) -> None:
    app = App("orders")
    app.publishes("orders", OrderPlaced)
    async with kafka.run(app, database_url=database_url):

        async def failing_request() -> None:
            async with app.transaction() as tx:
                await tx.publish("orders", OrderPlaced(order_id="never", qty=1), key="never")
                raise ValueError("validation failed after publishing")

        with contextlib.suppress(ValueError):
            await failing_request()
        async with app.transaction() as tx:
            await tx.publish("orders", OrderPlaced(order_id="kept", qty=1), key="kept")
        events = await kafka.events("orders", OrderPlaced, count=1)
        await asyncio.sleep(0.3)  # a leaked event would arrive by now
        records = await kafka.records("orders", count=1)
    assert [e.order_id for e in events] == ["kept"]
    assert len(records) == 1


async def test_old_processed_records_and_sent_rows_are_purged(
    kafka: KafkaHarness, database_url: str
) -> None:
    app = inventory()
    async with kafka.run(app, database_url=database_url, processed_retention_ms=0) as runtime:
        await kafka.publish("orders", OrderPlaced(order_id="o-1", qty=1), key="o-1")
        await kafka.events("inventory", StockReserved, count=1)
        await drained(runtime)
        await asyncio.sleep(0.01)  # retention 0: anything older than now goes
        processed, sent = await runtime.purge_old_records()
    assert (processed, sent) == (1, 1)
