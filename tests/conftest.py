"""Fixtures shared by the whole suite: embedded brokers on free ports.

* ``broker``: a broker (durable storage in a temporary directory) running in a
  background thread, for synchronous clients such as confluent-kafka;
  ``broker.bootstrap_servers`` is its address.
* ``broker_factory``: start more brokers, or restart one on the same data
  directory: ``broker.stop(); again = broker_factory(data_dir=broker_dir)``.
  Every broker it started is stopped when the test ends.
* ``broker_dir``: the data directory ``broker`` uses.
* ``async_broker``: an :class:`~rivulet.broker.EmbeddedBroker` in the test's own
  event loop (for ``async def`` tests), on the same kind of directory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rivulet.broker import EmbeddedBroker, ThreadedBroker

BrokerFactory = Callable[..., ThreadedBroker]


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def broker_factory(broker_dir: Path) -> Iterator[BrokerFactory]:
    started: list[ThreadedBroker] = []

    def start(data_dir: Path | None = broker_dir, **overrides: Any) -> ThreadedBroker:
        handle = EmbeddedBroker.start_in_thread(data_dir, **overrides)
        started.append(handle)
        return handle

    yield start
    for handle in reversed(started):
        handle.stop()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> ThreadedBroker:
    return broker_factory()


@pytest.fixture
async def async_broker(broker_dir: Path) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(broker_dir) as embedded:
        yield embedded
