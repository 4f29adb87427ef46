"""Fixtures: the example shop's services and their rendering."""

from __future__ import annotations

import pytest

from rivulet.deploy import DeployConfig, Rendering, Service, ServiceOptions, render
from tests.deploy._support import example_apps

OPTIONS = {
    "orders": ServiceOptions("shop.orders:app", api_port=8080, env={"SHOP_HTTP": "0.0.0.0:8080"}),
    "inventory": ServiceOptions("shop.inventory:app"),
    "payments": ServiceOptions("shop.payments:app", egress_ports=(443,)),
    "large": ServiceOptions("shop.large_orders:app"),
}


@pytest.fixture
def config() -> DeployConfig:
    return DeployConfig(services=tuple(OPTIONS.values()))


@pytest.fixture
def services() -> list[Service]:
    apps = example_apps()
    return [Service(OPTIONS[key], app.topology()) for key, app in apps.items()]


@pytest.fixture
def rendering(config: DeployConfig, services: list[Service]) -> Rendering:
    return render(config, services)
