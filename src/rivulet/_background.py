"""Run an asyncio service from synchronous code: its own event loop in a daemon thread.

The embedded broker and the schema registry both offer this (``start_in_thread``),
because the Kafka clients and tests that use them are often synchronous. Imports
nothing of Rivulet, so every layer may use it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

__all__ = ["BackgroundService"]

T = TypeVar("T")


class _Service(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class BackgroundService:
    """A service started on a background loop; :meth:`stop` it, or use ``with``.

    The constructor returns once ``service.start()`` has completed, and re-raises
    in the caller's thread whatever it raised (the loop is closed first).
    """

    def __init__(
        self, service: _Service, *, name: str, start_timeout_s: float, stop_timeout_s: float
    ) -> None:
        self._service = service
        self._stop_timeout_s = stop_timeout_s
        self._loop = asyncio.new_event_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=name, daemon=True)
        self._thread.start()
        ready.result(timeout=start_timeout_s)

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._service.start())
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

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the service's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Stop the service gracefully and wait for its thread to end."""
        if not self._thread.is_alive():
            return
        try:
            self.call(self._service.stop(), timeout=self._stop_timeout_s)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=self._stop_timeout_s)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
