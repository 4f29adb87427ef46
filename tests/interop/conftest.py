"""Fixtures of the interop tests: one broker shared by the package, unique topics per test.

Sharing a broker keeps the package fast; tests stay independent by each using
topics of their own (:func:`interop._support.unique_topic`). Tests that stop,
restart or kill a broker start their own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rivulet.broker import EmbeddedBroker, ThreadedBroker


@pytest.fixture(scope="package")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedBroker]:
    """A durable broker on a free port, shared by every interop test."""
    handle = EmbeddedBroker.start_in_thread(
        tmp_path_factory.mktemp("interop-broker"),
        # A group's first member need not wait for others (Kafka's test setting too).
        group_initial_rebalance_delay_ms=0,
    )
    yield handle
    handle.stop()


@pytest.fixture
def bootstrap(shared_broker: ThreadedBroker) -> str:
    return shared_broker.bootstrap_servers
