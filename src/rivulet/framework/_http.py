"""The app's HTTP endpoint: Prometheus metrics, health, readiness and topology.

=================  ==========================================================
Path               Answer
=================  ==========================================================
``/metrics``       Prometheus text exposition
``/healthz``       200 while no part of the app has failed (liveness probe)
``/readyz``        200 once started and until stopping (readiness probe)
``/topology``      the app's topology as JSON (for the console)
=================  ==========================================================

A few lines of asyncio rather than a web framework or prometheus-client's threaded
server: probes and scrapes are tiny GET requests, and the endpoint must live on the
app's own loop to report its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from rivulet.framework._errors import ConfigurationError

if TYPE_CHECKING:
    from rivulet.framework._runtime import Runtime

__all__ = ["HttpEndpoint", "parse_listen"]

_PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (port 0: any free port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"http_listen expects HOST:PORT, not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - probes come from outside


class HttpEndpoint:
    """Serves the runtime's metrics and probes."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._server: asyncio.Server | None = None
        self.address: tuple[str, int] | None = None

    async def start(self, listen: str) -> None:
        host, port = parse_listen(listen)
        self._server = await asyncio.start_server(self._serve, host, port)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # The reader's 64 KiB limit bounds the request (LimitOverrunError).
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, content_type, body = await self._answer(method, path.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        runtime = self._runtime
        if method not in {"GET", "HEAD"}:
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            await runtime.outbox_backlog()
            return 200, _PROMETHEUS, runtime.metrics.render()
        if path == "/healthz":
            ok = runtime.healthy
            return (200 if ok else 503), "text/plain", b"ok\n" if ok else b"failed\n"
        if path == "/readyz":
            ok = runtime.ready and runtime.healthy
            return (200 if ok else 503), "text/plain", b"ready\n" if ok else b"not ready\n"
        if path == "/topology":
            body = json.dumps(runtime.app.topology().to_dict()).encode()
            return 200, "application/json", body
        return 404, "text/plain", b"not found\n"


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
