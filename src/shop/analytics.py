"""The analytics service: a streaming projection over orders, payments and shipments.

It folds ``orders``, ``order-status``, ``payments`` and ``shipments`` into per-order
facts (:mod:`shop.domain.analytics`) and serves, as JSON at ``GET /analytics``:
orders by state, revenue per minute (one-minute tumbling windows by capture time),
top SKUs by units shipped, and saga latency percentiles (placement to shipped or
cancelled).

**Exactly once, by position.** Every update is written in one transaction with the
projection's position in the source partition (``analytics_positions``: the next
offset to read). A record at an offset below the stored position was already folded
and is skipped, so redelivery after a crash changes nothing.

**Rebuild by replay.** ``rivulet projections rebuild analytics`` reads the source
topics from their first offset up to the stored positions, folds them afresh with the
same :func:`~shop.domain.analytics.merge`, and swaps the result in, in one transaction
that holds the live fold off while it catches up with what was folded meanwhile. The
live service can keep running. The source topics keep their history
(``retention.ms=-1``) for this. :data:`projection` is what the command works with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from rivulet import App, Context, Event, Transaction
from shop._web import WebService
from shop.config import ShopSettings
from shop.domain.analytics import STATES, OrderFacts, merge, percentile
from shop.events import (
    ORDER_STATUS,
    ORDERS,
    PAYMENTS,
    SHIPMENTS,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentVoided,
    ShipmentCreated,
    ShipmentDispatched,
    serializers,
)

__all__ = ["DEFAULT_PORT", "Projection", "api", "app", "projection"]

DEFAULT_PORT = 8085

app = App(
    "analytics",
    description="Orders by state, revenue, top SKUs and saga latency.",
    serializers=serializers(),
)
api = FastAPI(title="Rivulet shop: analytics", version="1.0.0")

Position = tuple[str, int]

_DDL = (
    """CREATE TABLE IF NOT EXISTS analytics_orders (
        order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        placed_at_ms BIGINT,
        total_cents BIGINT,
        confirmed_at_ms BIGINT,
        shipped_at_ms BIGINT,
        cancelled_at_ms BIGINT,
        cancel_reason TEXT,
        captured_cents BIGINT NOT NULL,
        captured_at_ms BIGINT
    )""",
    """CREATE TABLE IF NOT EXISTS analytics_lines (
        order_id TEXT NOT NULL,
        sku TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        PRIMARY KEY (order_id, sku)
    )""",
    """CREATE TABLE IF NOT EXISTS analytics_positions (
        topic TEXT NOT NULL,
        partition_id INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition_id)
    )""",
    "CREATE INDEX IF NOT EXISTS analytics_orders_by_status ON analytics_orders (status)",
)

_FACT_COLUMNS = (
    "order_id, status, placed_at_ms, total_cents, confirmed_at_ms, shipped_at_ms, "
    "cancelled_at_ms, cancel_reason, captured_cents, captured_at_ms"
)


@dataclass(frozen=True, slots=True)
class Projection:
    """The analytics projection's storage, for the live service and for rebuilds."""

    #: The name ``rivulet projections rebuild`` knows it by.
    name: str
    #: The app whose database holds it.
    app_name: str
    #: Source topics and the event types read from each (other types are ignored).
    sources: Mapping[str, tuple[type[Event], ...]]

    @staticmethod
    def fold(facts: OrderFacts | None, event: Event) -> OrderFacts | None:
        """Merge one event into an order's facts."""
        return merge(facts, event)

    async def create_tables(self, tx: Transaction) -> None:
        """Create the projection's tables if they do not exist."""
        for statement in _DDL:
            await tx.execute(statement)

    async def lock(self, tx: Transaction) -> None:
        """Keep live writers out until ``tx`` ends (SQLite transactions already do)."""
        if tx.dialect == "postgresql":
            await tx.execute("LOCK TABLE analytics_positions IN EXCLUSIVE MODE")

    async def positions(self, tx: Transaction) -> dict[Position, int]:
        """The next offset to fold, per source partition."""
        rows = await tx.fetchall("SELECT topic, partition_id, next_offset FROM analytics_positions")
        return {(topic, int(partition)): int(offset) for topic, partition, offset in rows}

    async def apply(
        self, tx: Transaction, topic: str, partition: int, offset: int, event: Event
    ) -> bool:
        """Fold the event at ``offset``; ``False`` if that position was folded already."""
        row = await tx.fetchone(
            "SELECT next_offset FROM analytics_positions WHERE topic = ? AND partition_id = ?",
            (topic, partition),
        )
        if row is not None and offset < int(row[0]):
            return False
        await tx.execute(
            "INSERT INTO analytics_positions (topic, partition_id, next_offset) VALUES (?, ?, ?) "
            "ON CONFLICT (topic, partition_id) DO UPDATE SET next_offset = excluded.next_offset",
            (topic, partition, offset + 1),
        )
        order_id = getattr(event, "order_id", None)
        if not isinstance(order_id, str) or merge(None, event) is None:
            return True
        if tx.dialect == "postgresql":
            # Events of one order arrive on four topics, folded concurrently: take the
            # order's row (created if need be) for this transaction, or an update is lost.
            await tx.execute(
                "INSERT INTO analytics_orders (order_id, status, captured_cents) "
                "VALUES (?, 'pending', 0) ON CONFLICT DO NOTHING",
                (order_id,),
            )
        before = await self._facts(tx, order_id, lock=True)
        after = merge(before, event)
        if after is not None and after != before:
            await self._write(tx, after, lines=before is None or before.lines != after.lines)
        return True

    async def _facts(
        self, tx: Transaction, order_id: str, *, lock: bool = False
    ) -> OrderFacts | None:
        suffix = " FOR UPDATE" if lock and tx.dialect == "postgresql" else ""
        row = await tx.fetchone(
            f"SELECT {_FACT_COLUMNS} FROM analytics_orders WHERE order_id = ?{suffix}",  # noqa: S608
            (order_id,),
        )
        if row is None:
            return None
        lines = await tx.fetchall(
            "SELECT sku, quantity FROM analytics_lines WHERE order_id = ? ORDER BY sku",
            (order_id,),
        )
        return _facts_of(row, lines)

    async def _write(self, tx: Transaction, facts: OrderFacts, *, lines: bool) -> None:
        await tx.execute(
            f"INSERT INTO analytics_orders ({_FACT_COLUMNS}) "  # noqa: S608 - fixed column list
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO UPDATE SET "
            "status = excluded.status, "
            "placed_at_ms = excluded.placed_at_ms, total_cents = excluded.total_cents, "
            "confirmed_at_ms = excluded.confirmed_at_ms, shipped_at_ms = excluded.shipped_at_ms, "
            "cancelled_at_ms = excluded.cancelled_at_ms, cancel_reason = excluded.cancel_reason, "
            "captured_cents = excluded.captured_cents, captured_at_ms = excluded.captured_at_ms",
            _row_of(facts),
        )
        if lines and facts.lines:
            await tx.executemany(
                "INSERT INTO analytics_lines (order_id, sku, quantity) VALUES (?, ?, ?) "
                "ON CONFLICT (order_id, sku) DO NOTHING",
                [(facts.order_id, sku, quantity) for sku, quantity in facts.lines],
            )

    async def replace(
        self, tx: Transaction, facts: Iterable[OrderFacts], positions: Mapping[Position, int]
    ) -> None:
        """Replace the whole projection (a rebuild), positions included."""
        for table in ("analytics_lines", "analytics_orders", "analytics_positions"):
            await tx.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
        rows: list[tuple[Any, ...]] = []
        lines: list[tuple[str, str, int]] = []
        for order in facts:
            rows.append(_row_of(order))
            lines.extend((order.order_id, sku, quantity) for sku, quantity in order.lines)
        placeholders = ", ".join("?" * 10)
        await tx.executemany(
            f"INSERT INTO analytics_orders ({_FACT_COLUMNS}) VALUES ({placeholders})",  # noqa: S608
            rows,
        )
        await tx.executemany(
            "INSERT INTO analytics_lines (order_id, sku, quantity) VALUES (?, ?, ?)", lines
        )
        await tx.executemany(
            "INSERT INTO analytics_positions (topic, partition_id, next_offset) VALUES (?, ?, ?)",
            [(topic, partition, offset) for (topic, partition), offset in positions.items()],
        )

    async def all_facts(self, tx: Transaction) -> dict[str, OrderFacts]:
        """Every order's facts (to compare a rebuild with the live projection)."""
        rows = await tx.fetchall(f"SELECT {_FACT_COLUMNS} FROM analytics_orders")  # noqa: S608
        lines: dict[str, list[tuple[str, int]]] = {}
        for order_id, sku, quantity in await tx.fetchall(
            "SELECT order_id, sku, quantity FROM analytics_lines ORDER BY order_id, sku"
        ):
            lines.setdefault(order_id, []).append((sku, int(quantity)))
        return {row[0]: _facts_of(row, lines.get(row[0], [])) for row in rows}

    async def summary(self, tx: Transaction) -> dict[str, Any]:
        """What ``GET /analytics`` serves."""
        by_state = dict.fromkeys(STATES, 0)
        for status, count in await tx.fetchall(
            "SELECT status, COUNT(*) FROM analytics_orders GROUP BY status"
        ):
            by_state[status] = int(count)
        revenue = await tx.fetchall(
            "SELECT captured_at_ms - captured_at_ms % 60000 AS minute, SUM(captured_cents) "
            "FROM analytics_orders WHERE captured_at_ms IS NOT NULL GROUP BY minute "
            "ORDER BY minute DESC LIMIT 60"
        )
        units = await tx.fetchall(
            "SELECT l.sku, SUM(l.quantity) FROM analytics_lines l JOIN analytics_orders o "
            "ON o.order_id = l.order_id WHERE o.status = 'shipped' GROUP BY l.sku"
        )
        totals = await tx.fetchone(
            "SELECT COALESCE(SUM(captured_cents), 0), COUNT(*) FROM analytics_orders"
        )
        assert totals is not None
        latency = {}
        for outcome, column in (("shipped", "shipped_at_ms"), ("cancelled", "cancelled_at_ms")):
            values = [
                int(v)
                for (v,) in await tx.fetchall(
                    f"SELECT {column} - placed_at_ms AS latency FROM analytics_orders "  # noqa: S608
                    "WHERE status = ? AND placed_at_ms IS NOT NULL ORDER BY latency",
                    (outcome,),
                )
            ]
            latency[outcome] = {
                "count": len(values),
                **{f"p{q}": percentile(values, q) for q in (50, 95, 99)},
                "max": values[-1] if values else None,
            }
        units_by_sku = {sku: int(n) for sku, n in units}
        return {
            "orders": {"total": int(totals[1]), "by_state": by_state},
            "revenue_cents": int(totals[0]),
            "revenue_per_minute": [
                {"minute_start_ms": int(minute), "cents": int(cents)} for minute, cents in revenue
            ],
            "top_skus": [
                {"sku": sku, "units": n}
                for sku, n in sorted(units_by_sku.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
            ],
            "units_shipped_by_sku": units_by_sku,
            "saga_latency_ms": latency,
        }


def _row_of(facts: OrderFacts) -> tuple[Any, ...]:
    return (
        facts.order_id, facts.status, facts.placed_at_ms, facts.total_cents,
        facts.confirmed_at_ms, facts.shipped_at_ms, facts.cancelled_at_ms, facts.cancel_reason,
        facts.captured_cents, facts.captured_at_ms,
    )  # fmt: skip


def _facts_of(row: tuple[Any, ...], lines: Iterable[tuple[Any, ...]]) -> OrderFacts:
    (order_id, _status, placed, total, confirmed, shipped, cancelled, reason, captured,
     captured_at) = row  # fmt: skip
    return OrderFacts(
        order_id=order_id,
        placed_at_ms=placed,
        total_cents=total,
        lines=tuple((str(sku), int(quantity)) for sku, quantity in lines),
        confirmed_at_ms=confirmed,
        shipped_at_ms=shipped,
        cancelled_at_ms=cancelled,
        cancel_reason=reason,
        captured_cents=int(captured),
        captured_at_ms=captured_at,
    )


projection = Projection(
    name="analytics",
    app_name=app.name,
    sources={
        ORDERS: (OrderPlaced,),
        ORDER_STATUS: (OrderConfirmed, OrderShipped, OrderCancelled),
        PAYMENTS: (PaymentAuthorized, PaymentDeclined, PaymentVoided, PaymentCaptured),
        SHIPMENTS: (ShipmentCreated, ShipmentDispatched),
    },
)


async def _start(_settings: ShopSettings) -> None:
    async with app.transaction() as tx:
        await projection.create_tables(tx)


web = WebService(app, api, default_port=DEFAULT_PORT, on_start=_start)


@app.handler(tuple(projection.sources))
async def fold(
    event: OrderPlaced
    | OrderConfirmed
    | OrderShipped
    | OrderCancelled
    | PaymentAuthorized
    | PaymentDeclined
    | PaymentVoided
    | PaymentCaptured
    | ShipmentCreated
    | ShipmentDispatched,
    ctx: Context,
) -> None:
    """Fold one event and advance the partition's position, in one transaction."""
    record = ctx.record
    async with app.transaction() as tx:
        await projection.apply(tx, record.topic, record.partition, record.offset, event)


@api.get("/analytics")
async def analytics() -> dict[str, Any]:
    """Orders by state, revenue per minute, top SKUs, saga latency percentiles."""
    async with app.transaction() as tx:
        return await projection.summary(tx)
