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

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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


class ThreadedBroker:
    """A handle on a broker running in a background thread. Stop it with :meth:`stop`."""

    def __init__(self, embedded: EmbeddedBroker) -> None:
        self.embedded = embedded
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="rivulet-broker", daemon=True
        )
        self._thread.start()
        ready.result(timeout=_THREAD_START_TIMEOUT_S)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.embedded.start())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the starting thread
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    @property
    def bootstrap_servers(self) -> str:
        return self.embedded.bootstrap_servers

    @property
    def broker(self) -> Broker:
        """The broker itself. Touch it only through :meth:`call` (it lives in another thread)."""
        return self.embedded.broker

    def call(self, coro: Any, timeout: float | None = 30.0) -> Any:
        """Run a coroutine on the broker's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Shut the broker down gracefully and wait for its thread to end."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self.embedded.stop(), timeout=30.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
