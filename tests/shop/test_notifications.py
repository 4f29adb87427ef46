"""Webhooks: signed, retried with backoff, applied once, dead-lettered when the endpoint fails."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

import shop.notifications
from rivulet.cli.up import WebhookReceiver
from rivulet.framework.testing import KafkaHarness
from shop.events import ORDER_STATUS, WEBHOOKS, OrderCancelled, OrderShipped

from .shop_harness import eventually, running, url

SECRET = "test-secret-123"


class FlakyReceiver(WebhookReceiver):
    """Answers 503 to the first ``failures`` attempts of every delivery, or always ``status``."""

    def __init__(self, path: Path, *, failures: int = 0, status: int | None = None) -> None:
        super().__init__(path, secret=SECRET)
        self.failures = failures
        self.status = status
        self.attempts: dict[str, int] = {}

    def handle(self, headers: Mapping[str, str], body: bytes) -> int:
        key = headers.get("idempotency-key", "")
        self.attempts[key] = self.attempts.get(key, 0) + 1
        if self.status is not None:
            return self.status
        if self.attempts[key] <= self.failures:
            return 503
        return super().handle(headers, body)


async def subscribe(client: httpx.AsyncClient, receiver_url: str, secret: str = SECRET) -> None:
    response = await client.put(
        url(shop.notifications) + "/subscriptions/test",
        json={"url": receiver_url, "secret": secret, "event_types": ["OrderShipped"]},
    )
    assert response.status_code == 200, response.text


SHIPPED = OrderShipped(order_id="o-1", shipment_id="s-1", total_cents=100, placed_at_ms=1, at_ms=2)


async def test_a_failing_endpoint_gets_retries_and_applies_the_delivery_once(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    receiver = FlakyReceiver(tmp_path / "receiver.db", failures=2)
    receiver_url = await receiver.start()
    try:
        async with running(kafka, shop.notifications), httpx.AsyncClient() as client:
            await subscribe(client, receiver_url)
            await kafka.publish(ORDER_STATUS, SHIPPED, key="o-1")
            # Not wanted by the subscription: never delivered.
            cancelled = OrderCancelled(order_id="o-2", reason="r", placed_at_ms=1, at_ms=2)
            await kafka.publish(ORDER_STATUS, cancelled, key="o-2")
            # The same event delivered again (a redelivery): the same idempotency key.
            first = (await kafka.records(ORDER_STATUS, count=1))[0]
            headers = [(name, value) for name, value in first.headers if value is not None]
            await kafka.publish_raw(ORDER_STATUS, first.value, key=first.key, headers=headers)

            async def applied() -> list[tuple[str, str, str]] | None:
                rows = receiver.applied()
                return rows or None

            [(key, order_id, event_type)] = await eventually(applied)
            assert (order_id, event_type) == ("o-1", "OrderShipped")
            assert receiver.attempts[key] >= 3, "two refusals, then accepted"
            deliveries = await eventually(lambda: _delivered(client))
            assert deliveries["by_status"] == {"delivered": 1}
            assert receiver.bad_signatures == 0
    finally:
        await receiver.stop()


async def _delivered(client: httpx.AsyncClient) -> dict[str, object] | None:
    body: dict[str, object] = (await client.get(url(shop.notifications) + "/deliveries")).json()
    return body if body["by_status"] == {"delivered": 1} else None


async def test_an_endpoint_that_keeps_failing_ends_in_the_dead_letter_topic(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    receiver = FlakyReceiver(tmp_path / "receiver.db", status=500)
    receiver_url = await receiver.start()
    try:
        async with running(kafka, shop.notifications), httpx.AsyncClient() as client:
            await subscribe(client, receiver_url)
            await kafka.publish(ORDER_STATUS, SHIPPED, key="o-1")
            [dead] = await kafka.records(f"{WEBHOOKS}-dlt", count=1, timeout_s=30)
            headers = {name: value or b"" for name, value in dead.headers}
            assert headers["kafka_dlt-original-topic"] == WEBHOOKS.encode()
            assert headers["kafka_dlt-exception-fqcn"].endswith(b"WebhookDeliveryError")
            assert b"HTTP 500" in headers["kafka_dlt-exception-message"]
            payload = json.loads(dead.value or b"{}")
            assert (payload["order_id"], payload["event_type"]) == ("o-1", "OrderShipped")
            # In place three times on each of the main topic and the two retry topics.
            assert sum(receiver.attempts.values()) == 9
            assert receiver.applied() == []
    finally:
        await receiver.stop()


async def test_a_refusing_endpoint_is_dead_lettered_at_once(
    kafka: KafkaHarness, shop_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    receiver = WebhookReceiver(tmp_path / "receiver.db", secret="another-secret")
    receiver_url = await receiver.start()
    try:
        async with running(kafka, shop.notifications), httpx.AsyncClient() as client:
            await subscribe(client, receiver_url)
            await kafka.publish(ORDER_STATUS, SHIPPED, key="o-1")
            [dead] = await kafka.records(f"{WEBHOOKS}-dlt", count=1, timeout_s=20)
            assert dict(dead.headers)["rivulet_dlt-reason"] == b"non-retriable"
            assert receiver.bad_signatures == 1, "a 401 is not retried"
    finally:
        await receiver.stop()
