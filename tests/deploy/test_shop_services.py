"""deploy/k8s/services.toml deploys exactly the shop's services, on their API ports."""

from __future__ import annotations

from rivulet.deploy import load_config
from shop.services import SERVICES
from tests.deploy._support import REPO


def test_services_toml_matches_the_shop() -> None:
    config = load_config(REPO / "deploy" / "k8s" / "services.toml").config
    deployed = {o.app: o for o in config.services}
    assert set(deployed) == {s.app for s in SERVICES}
    for service in SERVICES:
        options = deployed[service.app]
        assert options.api_port == service.api_port, service.name
        if service.api_port is not None:
            # The API must listen on the pod's address, on the port the Service targets.
            assert options.env.get("SHOP_HTTP") == f"0.0.0.0:{service.api_port}", service.name
