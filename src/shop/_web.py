"""Serving a service's JSON API (a FastAPI app) inside the Rivulet app's own event loop.

The API starts in the app's ``on_startup`` hook (the database is open by then, so
request handlers can use ``app.transaction()``) and stops in ``on_shutdown``. uvicorn
normally takes over SIGINT and SIGTERM; here the Rivulet app owns them (a signal
stops the whole service gracefully), so the server is told to leave them alone.

The shop's settings are read here too, once, when the service starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rivulet import App, ConfigurationError
from shop.config import ShopSettings

__all__ = ["LimitBodySize", "WebService"]

_log = logging.getLogger("shop.web")


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers: the Rivulet app handles SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"SHOP_HTTP expects HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class WebService:
    """Runs ``api`` while ``app`` runs; holds the shop settings read at start."""

    def __init__(
        self,
        app: App,
        api: FastAPI,
        *,
        default_port: int,
        on_start: Callable[[ShopSettings], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.api = api
        self.default_port = default_port
        self._on_start = on_start
        self._settings: ShopSettings | None = None
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.address: tuple[str, int] | None = None
        app.on_startup(self._start)
        app.on_shutdown(self._stop)

    @property
    def settings(self) -> ShopSettings:
        """The shop settings, once the service started (defaults before)."""
        return self._settings if self._settings is not None else ShopSettings()

    async def _start(self) -> None:
        settings = ShopSettings.load()
        self._settings = settings
        if self._on_start is not None:
            await self._on_start(settings)
        host, port = _parse_listen(settings.http_listen or f"127.0.0.1:{self.default_port}")
        sock = socket.create_server((host, port), reuse_port=False)
        sock.setblocking(False)  # noqa: FBT003 - the socket API's own signature
        self.address = sock.getsockname()[:2]
        config = uvicorn.Config(
            self.api, lifespan="off", log_config=None, access_log=False, log_level="warning"
        )
        server = _InLoopServer(config)
        self._server = server
        self._task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[sock]), name=f"{self.app.name}-http"
        )
        # The socket already listens: connections wait in its backlog until uvicorn runs.
        _log.info("%s API on http://%s:%d (docs at /docs)", self.app.name, *self.address)

    async def _stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None


class LimitBodySize:
    """ASGI middleware answering 413 to request bodies larger than ``max_bytes``.

    The body is read (up to the limit) before the app sees the request, so an
    oversized one is refused before any work, whether it announced its length or not.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        text = f'{{"detail":"request body larger than {self.max_bytes} bytes"}}'.encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(text)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": text})
