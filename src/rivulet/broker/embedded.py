"""The broker in-process: for tests, notebooks and applications that embed it.

In async code::

    async with EmbeddedBroker(data_dir="data/broker") as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

From synchronous code (the confluent-kafka client is synchronous), the broker
runs its own event loop in a background thread::

    with EmbeddedBroker.start_in_thread(data_dir="data/broker") as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

Either way it listens on a free port of 127.0.0.1 unless told otherwise.
Without ``data_dir`` the broker keeps everything in memory.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rivulet._background import BackgroundService
from rivulet.broker.config import BrokerConfig, StorageKind
from rivulet.broker.core import Broker
from rivulet.broker.server import BrokerServer

__all__ = ["EmbeddedBroker", "ThreadedBroker"]

_THREAD_START_TIMEOUT_S = 60.0


def _config(data_dir: str | Path | None, overrides: dict[str, Any]) -> BrokerConfig:
    settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
    if data_dir is None:
        settings["storage"] = StorageKind.MEMORY
    else:
        settings["data_dir"] = Path(data_dir)
    settings.update(overrides)
    return BrokerConfig(**settings)


class EmbeddedBroker:
    """A broker started and stopped by the caller, in the caller's event loop.

    ``overrides`` are :class:`BrokerConfig` fields (``num_partitions=3``,
    ``auto_create_topics=False``, ``log=LogConfig(...)``, ``port=9092`` ...).
    """

    def __init__(self, data_dir: str | Path | None = None, **overrides: Any) -> None:
        self.config = _config(data_dir, overrides)
        self.broker = Broker(self.config)
        self._server = BrokerServer(self.broker)
        self._started = False

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for a client's ``bootstrap.servers``."""
        if not self._started:
            raise RuntimeError("the broker has not been started; use `async with` or start()")
        return f"{self.config.client_host}:{self.broker.port}"

    async def start(self) -> None:
        await self._server.start()
        self._started = True

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @classmethod
    def start_in_thread(
        cls, data_dir: str | Path | None = None, **overrides: Any
    ) -> ThreadedBroker:
        """Start a broker on its own event loop in a daemon thread; return its handle."""
        return ThreadedBroker(cls(data_dir, **overrides))


class ThreadedBroker(BackgroundService):
    """A handle on a broker running in a background thread. Stop it with :meth:`stop`."""

    def __init__(self, embedded: EmbeddedBroker) -> None:
        self.embedded = embedded
        super().__init__(
            embedded,
            name="rivulet-broker",
            start_timeout_s=_THREAD_START_TIMEOUT_S,
            stop_timeout_s=30.0,
        )

    @property
    def bootstrap_servers(self) -> str:
        return self.embedded.bootstrap_servers

    @property
    def broker(self) -> Broker:
        """The broker itself. Touch it only through :meth:`call` (it lives in another thread)."""
        return self.embedded.broker
