"""Helpers for running shop services in-process on a test's embedded broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType
from typing import Any, TypeVar

import httpx

from rivulet.framework.testing import KafkaHarness

T = TypeVar("T")


@asynccontextmanager
async def running(kafka: KafkaHarness, *modules: ModuleType) -> AsyncIterator[None]:
    """Run the modules' apps on ``kafka`` for the block."""
    async with AsyncExitStack() as stack:
        for module in modules:
            await stack.enter_async_context(kafka.run(module.app))
        yield


def url(module: ModuleType) -> str:
    """Base URL of a running service's JSON API."""
    host, port = module.web.address
    return f"http://{host}:{port}"


async def eventually(probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 30.0) -> T:
    """Poll ``probe`` until it returns something other than ``None``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await probe()
        if result is not None:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the condition did not come true in time")
        await asyncio.sleep(0.1)


async def place(client: httpx.AsyncClient, *lines: tuple[str, int], customer: str = "c-1") -> str:
    """Place an order; returns its id."""
    body: dict[str, Any] = {
        "customer_id": customer,
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
    }
    response = await client.post("/orders", json=body)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def finished(client: httpx.AsyncClient, order_id: str, *, timeout_s: float = 30.0) -> Any:
    """The order once shipped or cancelled."""

    async def probe() -> Any:
        order = (await client.get(f"/orders/{order_id}")).json()
        return order if order["status"] in ("shipped", "cancelled") else None

    return await eventually(probe, timeout_s=timeout_s)
