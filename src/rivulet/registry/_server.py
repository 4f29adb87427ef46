"""Running the registry: the store, the operations and the HTTP server, in order.

In async code::

    async with RegistryServer(RegistrySettings(bootstrap_servers="127.0.0.1:9092")) as server:
        print(server.url)          # http://127.0.0.1:8081

From synchronous code (confluent-kafka's ``SchemaRegistryClient`` is synchronous, and
must not share the registry's event loop), run it on its own thread::

    with RegistryServer.start_in_thread(settings) as server:
        client = SchemaRegistryClient({"url": server.url})

Start reads the whole ``_schemas`` topic before the socket accepts a request; stop
closes the socket, finishes requests in flight, then closes the Kafka clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Self

import uvicorn

from rivulet._background import BackgroundService
from rivulet.registry._errors import StoreError
from rivulet.registry._http import build_app
from rivulet.registry._service import Registry
from rivulet.registry._state import RegistryState
from rivulet.registry._store import DEFAULT_TOPIC, TopicStore

__all__ = ["RegistryServer", "RegistrySettings", "ThreadedRegistry"]

_log = logging.getLogger("rivulet.registry")


def _frozen(value: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How to run a registry; built once at the edge (CLI, ``rivulet up``, tests)."""

    bootstrap_servers: str
    host: str = "127.0.0.1"
    #: 0 picks a free port (see :attr:`RegistryServer.url`).
    port: int = 8081
    topic: str = DEFAULT_TOPIC
    #: Of the topic if it is created; -1 takes the broker's default.
    replication_factor: int = -1
    #: Extra librdkafka properties (security, ...) for the store's clients.
    kafka: Mapping[str, str] = field(default_factory=_frozen)
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kafka", _frozen(self.kafka))


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Whoever runs the registry owns the signals (the CLI stops it on SIGTERM itself).
        yield


class RegistryServer:
    """A schema registry serving HTTP while started."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.settings = settings
        self.state = RegistryState()
        self.store = TopicStore(
            self.state,
            bootstrap_servers=settings.bootstrap_servers,
            topic=settings.topic,
            client_config=settings.kafka,
            replication_factor=settings.replication_factor,
            timeout_s=settings.timeout_s,
        )
        self.registry = Registry(self.state, self.store.write)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._address: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        if self._address is None:
            raise RuntimeError("the registry is not running")
        host, port = self._address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> None:
        """Rebuild the state from the topic, then listen."""
        await self.store.start()
        try:
            family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted connections inherit it: responses go out without Nagle's delay.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.settings.host, self.settings.port))
        except OSError:
            await self.store.stop()
            raise
        self._address = sock.getsockname()[:2]
        config = uvicorn.Config(
            build_app(self.registry),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=int(self.settings.timeout_s),
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[sock]), name="rivulet-registry-http"
        )
        while not server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the registry's HTTP server stopped while starting")
            await asyncio.sleep(0.01)
        _log.info("schema registry serving on %s (topic %s)", self.url, self.settings.topic)

    async def wait_stopped(self) -> None:
        """Return when the HTTP server has stopped; raise if it or the topic reader failed.

        A registry whose reader has failed would answer from a state that no longer
        follows the topic, so it is treated as stopped.
        """
        parts = {t for t in (self._task, self.store.reader) if t is not None}
        if not parts:
            return
        done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        if self.store.reader in done:
            raise StoreError(f"the {self.settings.topic} reader stopped; restart the registry")

    async def stop(self) -> None:
        """Stop serving, then close the store."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._server = None
            self._task = None
        await self.store.stop()
        self._address = None

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
    def start_in_thread(cls, settings: RegistrySettings) -> ThreadedRegistry:
        """Start a registry on its own event loop in a daemon thread."""
        return ThreadedRegistry(cls(settings), settings.timeout_s * 2)


class ThreadedRegistry(BackgroundService):
    """A registry running on a background thread; :meth:`stop` it (or use ``with``)."""

    def __init__(self, server: RegistryServer, timeout_s: float) -> None:
        self.server = server
        super().__init__(
            server, name="rivulet-registry", start_timeout_s=timeout_s, stop_timeout_s=timeout_s
        )

    @property
    def url(self) -> str:
        """``http://host:port`` of the registry."""
        return self.server.url
