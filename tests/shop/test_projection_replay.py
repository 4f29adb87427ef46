"""The analytics projection rebuilt by replay gives the same rows, even from scratch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

import shop.analytics
import shop.inventory
import shop.orders
import shop.payments
import shop.saga
import shop.shipping
from rivulet.cli.projections import rebuild
from rivulet.framework.testing import KafkaHarness

from .shop_harness import eventually, finished, place, running, url


async def test_replay_rebuilds_the_projection_to_the_same_result(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shop_env.setenv("SHOP_DECLINE_RATE", "0.3")
    core = (shop.orders, shop.saga, shop.inventory, shop.payments, shop.shipping)
    async with running(kafka, *core, shop.analytics), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        orders = [await place(client, ("TEE-CLASSIC-BLK-M", n % 3 + 1)) for n in range(8)]
        orders.append(await place(client, ("PRINT-SIGNED-07", 11)))  # out of stock
        for order_id in orders:
            await finished(client, order_id)

        async def caught_up() -> dict[str, Any] | None:
            summary: dict[str, Any] = (await client.get(url(shop.analytics) + "/analytics")).json()
            by_state = summary["orders"]["by_state"]
            return summary if by_state["shipped"] + by_state["cancelled"] == 9 else None

        live = await eventually(caught_up)
        assert live["orders"]["by_state"]["cancelled"] >= 1
        database = f"sqlite:///{tmp_path / 'analytics.db'}"

        # Next to the live service: the replay ends where the live rows are, and matches.
        report = await rebuild(
            shop.analytics.projection,
            bootstrap_servers=kafka.bootstrap_servers,
            database_url=database,
        )
        assert report.identical, report.differing
        assert (report.rows, report.replaced) == (9, True)
        assert report.events > 9 * 3
        assert (await client.get(url(shop.analytics) + "/analytics")).json() == live

        # From a damaged read model: the rebuild restores every row.
        async with shop.analytics.app.transaction() as tx:
            await tx.execute("DELETE FROM analytics_lines")
            await tx.execute("UPDATE analytics_orders SET captured_cents = 0")
        damaged = (await client.get(url(shop.analytics) + "/analytics")).json()
        assert damaged["revenue_cents"] == 0
        report = await rebuild(
            shop.analytics.projection,
            bootstrap_servers=kafka.bootstrap_servers,
            database_url=database,
        )
        assert not report.identical
        assert len(report.differing) == 9
        assert (await client.get(url(shop.analytics) + "/analytics")).json() == live
