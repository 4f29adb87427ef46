"""Fixtures for the registry's tests: one embedded broker and one registry per module.

Both run on their own threads (event loops), as separate processes would: the
confluent-kafka schema registry client and httpx's synchronous client block. Tests
share the registry, so each works on subjects named after itself (``subject``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from rivulet.broker import EmbeddedBroker
from rivulet.registry import RegistryServer, RegistrySettings, ThreadedRegistry


@pytest.fixture(scope="module")
def bootstrap_servers() -> Iterator[str]:
    """An in-memory embedded broker for the module."""
    with EmbeddedBroker.start_in_thread(None, group_initial_rebalance_delay_ms=0) as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="module")
def registry(bootstrap_servers: str) -> Iterator[ThreadedRegistry]:
    """A registry on the module's broker, on a free port."""
    settings = RegistrySettings(bootstrap_servers, port=0, timeout_s=20.0)
    with RegistryServer.start_in_thread(settings) as running:
        yield running


@pytest.fixture
def subject(request: pytest.FixtureRequest) -> str:
    """A subject name of this test's own."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:120] + "-value"


@pytest.fixture
def http(registry: ThreadedRegistry) -> Iterator[httpx.Client]:
    """A plain HTTP client of the registry."""
    with httpx.Client(base_url=registry.url, timeout=20.0) as client:
        yield client
