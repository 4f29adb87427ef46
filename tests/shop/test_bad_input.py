"""Bad input: the orders API answers 4xx with a clear body; poison events are dead-lettered."""

from __future__ import annotations

import httpx
import pytest

import shop.inventory
import shop.orders
import shop.payments
import shop.saga
import shop.shipping
from rivulet.framework.testing import KafkaHarness
from shop.events import INVENTORY_COMMANDS, ORDERS

from .shop_harness import finished, place, running, url


async def test_the_orders_api_refuses_bad_requests_clearly(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    async with running(kafka, shop.orders), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))

        unknown = await client.post(
            "/orders", json={"customer_id": "c", "lines": [{"sku": "NOPE", "quantity": 1}]}
        )
        assert unknown.status_code == 422
        assert unknown.json()["detail"][0]["msg"] == "lines[0].sku: unknown SKU NOPE"

        for quantity in (0, -3):
            bad = await client.post(
                "/orders",
                json={"customer_id": "c", "lines": [{"sku": "CAP-LOGO", "quantity": quantity}]},
            )
            assert bad.status_code == 422
            [error] = bad.json()["detail"]
            assert error["loc"] == ["body", "lines", 0, "quantity"]
            assert "greater than 0" in error["msg"]

        malformed = await client.post(
            "/orders", content=b'{"customer_id": "c", "lines": [', headers=_JSON
        )
        assert malformed.status_code == 400
        assert malformed.json()["detail"] == "the request body is not valid JSON"

        huge = await client.post(
            "/orders", content=b" " * (shop.orders.MAX_BODY_BYTES + 1), headers=_JSON
        )
        assert huge.status_code == 413
        assert "larger than 65536 bytes" in huge.json()["detail"]

        missing = await client.post("/orders", json={"lines": []})
        assert missing.status_code == 422
        locations = [e["loc"] for e in missing.json()["detail"]]
        assert ["body", "customer_id"] in locations

        assert (await client.get("/orders/ord_nope")).status_code == 404
        summary = (await client.get("/orders/summary")).json()
        assert summary["total"] == 0, "nothing bad was stored"


_JSON = {"content-type": "application/json"}


async def test_an_idempotency_key_returns_the_order_it_created(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    async with running(kafka, shop.orders), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        body = {"customer_id": "c", "lines": [{"sku": "CAP-LOGO", "quantity": 1}]}
        first = await client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
        again = await client.post("/orders", json=body, headers={"Idempotency-Key": "k-1"})
        assert (first.status_code, again.status_code) == (201, 200)
        assert first.json()["order_id"] == again.json()["order_id"]
        other = await client.post("/orders", json=body, headers={"Idempotency-Key": "k-2"})
        assert other.json()["order_id"] != first.json()["order_id"]
        page = (await client.get("/orders", params={"status": "placed", "limit": 1})).json()
        assert len(page["orders"]) == 1
        assert page["next_after"] == page["orders"][0]["order_id"]
        rest = (await client.get("/orders", params={"after": page["next_after"]})).json()
        assert [o["order_id"] for o in page["orders"] + rest["orders"]] == sorted(
            [first.json()["order_id"], other.json()["order_id"]]
        )
        schema = (await client.get("/openapi.json")).json()
        assert {"/orders", "/orders/{order_id}", "/orders/summary"} <= set(schema["paths"])


async def test_poison_events_are_dead_lettered_with_their_reason_and_work_goes_on(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch
) -> None:
    core = (shop.orders, shop.saga, shop.inventory, shop.payments, shop.shipping)
    async with running(kafka, *core), httpx.AsyncClient() as client:
        client.base_url = httpx.URL(url(shop.orders))
        await kafka.publish_raw(ORDERS, b"{not json", key=b"o-x", headers=_ce("OrderPlaced"))
        await kafka.publish_raw(
            INVENTORY_COMMANDS, b'{"order_id": "o-y"}', key=b"o-y", headers=_ce("DropTables")
        )
        order_id = await place(client, ("SOCKS-3PK", 2))
        assert (await finished(client, order_id))["status"] == "shipped"

        [dead_order] = await kafka.records(f"{ORDERS}-dlt", count=1)
        headers = dict(dead_order.headers)
        assert headers["rivulet_dlt-reason"] == b"invalid-payload"
        assert headers["kafka_dlt-original-consumer-group"] == b"order-saga"
        assert dead_order.value == b"{not json"
        [dead_command] = await kafka.records(f"{INVENTORY_COMMANDS}-dlt", count=1)
        assert dict(dead_command.headers)["rivulet_dlt-reason"] == b"unknown-type"


def _ce(event_type: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"poison-{event_type}".encode()),
        ("ce_source", b"test"),
        ("ce_type", event_type.encode()),
        ("content-type", b"application/json"),
    ]
