"""The order saga end to end on the embedded broker: shipped, declined, out of stock, timeout."""

from __future__ import annotations

import httpx
import pytest

import shop.analytics
import shop.inventory
import shop.orders
import shop.payments
import shop.saga
import shop.shipping
from rivulet.framework.testing import KafkaHarness

from .shop_harness import eventually, finished, place, running, url

CORE = (shop.orders, shop.saga, shop.inventory, shop.payments, shop.shipping)


async def test_orders_ship_with_stock_reserved_and_payment_captured(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    async with running(kafka, *CORE, shop.analytics), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        first = await place(client, ("CAP-LOGO", 2), ("MUG-ENAMEL", 1))
        second = await place(client, ("CAP-LOGO", 1))
        orders = [await finished(client, o) for o in (first, second)]
        assert [o["status"] for o in orders] == ["shipped", "shipped"]
        assert [o["total_cents"] for o in orders] == [2 * 2400 + 1600, 2400]

        ledger = (await client.get(url(shop.payments) + "/payments")).json()
        for order in orders:
            payment = ledger["payments"][order["order_id"]]
            assert payment["status"] == "captured"
            assert payment["captured_cents"] == order["total_cents"]
        assert ledger["provider_captures"] == {"count": 2, "amount_cents": 6400 + 2400}

        shipments = (await client.get(url(shop.shipping) + "/shipments")).json()["shipments"]
        assert sorted(shipments) == sorted([first, second])
        assert {s["status"] for s in shipments.values()} == {"dispatched"}

        audit = (await client.get(url(shop.inventory) + "/audit")).json()
        assert audit["violations"] == []
        assert audit["replay_matches_snapshot"] is True
        assert audit["skus"]["CAP-LOGO"]["reserved"] == 3
        assert audit["reservations"][first] == {
            "status": "reserved",
            "lines": {"CAP-LOGO": 2, "MUG-ENAMEL": 1},
        }

        async def projected() -> dict[str, object] | None:
            summary = (await client.get(url(shop.analytics) + "/analytics")).json()
            return summary if summary["orders"]["by_state"]["shipped"] == 2 else None

        summary = await eventually(projected)
        assert summary["revenue_cents"] == 6400 + 2400
        assert summary["units_shipped_by_sku"] == {"CAP-LOGO": 3, "MUG-ENAMEL": 1}
        assert summary["saga_latency_ms"]["shipped"]["count"] == 2  # type: ignore[index]


async def test_a_declined_payment_releases_the_stock_and_cancels(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    shop_env.setenv("SHOP_DECLINE_RATE", "1")
    async with running(kafka, *CORE), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        order_id = await place(client, ("HOODIE-ZIP-GRY-M", 2))
        order = await finished(client, order_id)
        assert order["status"] == "cancelled"
        assert order["reason"].startswith("payment declined: ")

        audit = (await client.get(url(shop.inventory) + "/audit")).json()
        assert audit["reservations"][order_id]["status"] == "released"
        assert audit["skus"]["HOODIE-ZIP-GRY-M"]["reserved"] == 0
        assert audit["skus"]["HOODIE-ZIP-GRY-M"]["available"] == 200
        payment = (await client.get(url(shop.payments) + "/payments")).json()["payments"][order_id]
        assert payment["status"] == "declined"
        assert payment["captured_cents"] == 0
        saga = (await client.get(url(shop.saga) + f"/sagas/{order_id}")).json()
        assert saga["status"] == "cancelled"


async def test_out_of_stock_cancels_before_any_payment(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    async with running(kafka, *CORE), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        too_many = await place(client, ("SNEAKER-LTD-01", 31))  # 30 were ever made
        fits = await place(client, ("SNEAKER-LTD-01", 30))
        assert (await finished(client, too_many))["reason"] == "out of stock: SNEAKER-LTD-01"
        assert (await finished(client, fits))["status"] == "shipped"
        sold_out = await place(client, ("SNEAKER-LTD-01", 1), ("CAP-LOGO", 1))
        assert (await finished(client, sold_out))["reason"] == "out of stock: SNEAKER-LTD-01"

        ledger = (await client.get(url(shop.payments) + "/payments")).json()["payments"]
        assert too_many not in ledger, "no payment is asked for goods the shop does not have"
        audit = (await client.get(url(shop.inventory) + "/audit")).json()
        assert audit["skus"]["SNEAKER-LTD-01"] == {"available": 0, "reserved": 30, "received": 30}
        assert audit["skus"]["CAP-LOGO"]["reserved"] == 0, "all or nothing"


async def test_a_payment_timeout_compensates_and_the_late_reply_changes_nothing(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    shop_env.setenv("SHOP_AUTHORIZE_TIMEOUT_MS", "1000")
    without_payments = (shop.orders, shop.saga, shop.inventory, shop.shipping)
    async with httpx.AsyncClient() as client, running(kafka, *without_payments):
        client.base_url = httpx.URL(url(shop.orders))
        order_id = await place(client, ("BACKPACK-25L", 1))
        order = await finished(client, order_id)
        assert order["status"] == "cancelled"
        assert order["reason"] == "timed out waiting for payments"
        audit = (await client.get(url(shop.inventory) + "/audit")).json()
        assert audit["reservations"][order_id]["status"] == "released"

        # Payments comes back: it handles the authorization, then the void queued
        # behind it; the saga ignores the late PaymentAuthorized.
        async with running(kafka, shop.payments):

            async def voided() -> dict[str, object] | None:
                ledger = (await client.get(url(shop.payments) + "/payments")).json()
                payment = ledger["payments"].get(order_id)
                return payment if payment and payment["status"] == "voided" else None

            payment = await eventually(voided)
            assert payment["captured_cents"] == 0
            assert (await client.get(f"/orders/{order_id}")).json()["status"] == "cancelled"
            saga = (await client.get(url(shop.saga) + f"/sagas/{order_id}")).json()
            assert saga["status"] == "cancelled"
