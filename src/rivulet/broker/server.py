"""The TCP server: the only module of the broker that touches sockets.

Each connection is an :class:`asyncio.BufferedProtocol` whose socket reads
go straight into the buffers of a
:class:`~rivulet.protocol.framing.FrameDecoder`, so a large Produce request
lands where its batches are checked, patched and written to the log from: no
copy in user space. Every request frame runs as its own task, so a Fetch
that long-polls does not hold back the requests pipelined behind it;
responses still leave in request order, because each request takes a slot in
a queue and a slot is written only once all slots before it have been. A
request that is answered with nothing (acks=0) leaves an empty slot.

Bad input costs only its own connection: an oversized or malformed frame, or a
request the broker must not answer (an unknown API key or version), closes
that connection after the responses already due are written, and is logged.

Record data held in files is written with ``os.sendfile`` when the socket's
write buffer is empty (so nothing is queued ahead of it), else read with
``os.pread`` and queued; see ``docs/decisions/0003-broker-metadata.md`` for the
measurements behind this.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
import weakref
from collections.abc import Sequence

from rivulet.broker.config import FetchTransfer, StorageKind
from rivulet.broker.core import Broker, CloseConnectionError
from rivulet.protocol.errors import ProtocolError
from rivulet.protocol.framing import FrameDecoder
from rivulet.storage.base import FileRegion, ReadChunk

__all__ = ["BrokerServer", "serving_on"]

log = logging.getLogger(__name__)

_MAX_IN_FLIGHT = 256
"""Requests one connection may have pending before we stop reading from it."""
_WRITE_HIGH_WATER = 8 * 1024 * 1024
_SHUTDOWN_GRACE_S = 5.0

Pieces = Sequence[bytes | ReadChunk]


class _Slot:
    """One request's place in its connection's response order."""

    __slots__ = ("close", "done", "pieces")

    def __init__(self) -> None:
        self.done = False
        self.close = False
        self.pieces: Pieces | None = None


class _Connection(asyncio.BufferedProtocol):
    def __init__(self, server: BrokerServer) -> None:
        self._server = server
        self._broker = server.broker
        self._decoder = FrameDecoder(server.broker.config.socket_request_max_bytes)
        self._sendfile = server.broker.config.fetch_transfer is FetchTransfer.SENDFILE
        self._slots: collections.deque[_Slot] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: asyncio.Transport | None = None
        self._sock_fd = -1
        self._peer = "?"
        self._closing = False
        self._input_closed = False
        self._reading_paused = False
        self._writing_paused = False
        self.drained = asyncio.Event()
        self.drained.set()

    # --- asyncio.Protocol -----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._sock_fd = sock.fileno()
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = self._input_closed = True
        self._server.connections.discard(self)
        for task in list(self._tasks):
            task.cancel()
        self._slots.clear()
        self.drained.set()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._input_closed:
            return
        try:
            frames = self._decoder.buffer_updated(nbytes)
        except ProtocolError as exc:
            log.warning("closing connection from %s: %s", self._peer, exc)
            self._close_input()
            return
        for frame in frames:
            self._submit(frame)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # --- requests -------------------------------------------------------------

    def _submit(self, frame: bytearray) -> None:
        slot = _Slot()
        self._slots.append(slot)
        self.drained.clear()
        task = asyncio.get_running_loop().create_task(self._run(frame, slot))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._update_reading()

    async def _run(self, frame: bytearray, slot: _Slot) -> None:
        try:
            pieces = await self._broker.handle_frame(frame, self._peer)
        except CloseConnectionError as exc:
            log.warning("closing connection from %s: %s", self._peer, exc)
            slot.close = True
            self._input_closed = True
            pieces = None
        except Exception:
            log.exception("closing connection from %s after an internal error", self._peer)
            slot.close = True
            self._input_closed = True
            pieces = None
        # Complete in the same step as the handler returned: file regions it
        # read are consumed before anything else can touch the log.
        self._complete(slot, pieces)

    def _complete(self, slot: _Slot, pieces: Pieces | None) -> None:
        if self._closing:
            return
        slot.done = True
        if pieces is not None and self._slots and self._slots[0] is not slot:
            # Not next in line: copy file data now rather than hold descriptors
            # (and the log's state at this instant) until earlier responses go.
            try:
                pieces = [_read_region(p) if isinstance(p, FileRegion) else p for p in pieces]
            except OSError as exc:
                log.warning("closing connection from %s: %s", self._peer, exc)
                slot.close = True
                self._input_closed = True
                pieces = None
        slot.pieces = pieces
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        slots = self._slots
        while slots and slots[0].done:
            slot = slots.popleft()
            if slot.close:
                self._closing = True
                if transport is not None:
                    transport.close()
                return
            if slot.pieces is not None and transport is not None:
                try:
                    self._write(transport, slot.pieces)
                except OSError as exc:
                    log.warning("dropping connection from %s: %s", self._peer, exc)
                    transport.abort()
                    return
        if not slots:
            self.drained.set()
        self._update_reading()

    def _write(self, transport: asyncio.Transport, pieces: Pieces) -> None:
        pending: list[bytes | memoryview] = []
        for piece in pieces:
            if isinstance(piece, FileRegion):
                if pending:
                    transport.write(b"".join(pending))
                    pending = []
                self._write_region(transport, piece)
            else:
                pending.append(piece)
        if pending:
            transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _write_region(self, transport: asyncio.Transport, region: FileRegion) -> None:
        position, remaining = region.position, region.length
        if self._sendfile and self._sock_fd >= 0 and transport.get_write_buffer_size() == 0:
            # Nothing is queued ahead, so bytes may go straight to the socket.
            while remaining:
                try:
                    sent = os.sendfile(self._sock_fd, region.fd, position, remaining)
                except BlockingIOError:
                    break
                if sent == 0:
                    break
                position += sent
                remaining -= sent
        if remaining:
            transport.write(_read_region(FileRegion(region.fd, position, remaining)))

    # --- flow control and closing ---------------------------------------------

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        should_pause = (
            self._input_closed or self._writing_paused or len(self._slots) >= _MAX_IN_FLIGHT
        )
        if should_pause and not self._reading_paused:
            transport.pause_reading()
            self._reading_paused = True
        elif not should_pause and self._reading_paused:
            transport.resume_reading()
            self._reading_paused = False

    def _close_input(self) -> None:
        """Take no more requests; close once the responses already due are written."""
        if self._input_closed:
            return
        self._input_closed = True
        closer = _Slot()
        closer.close = closer.done = True
        self._slots.append(closer)
        self._flush()

    def stop_reading(self) -> None:
        """Take no new requests (shutdown): the ones in flight still get answers."""
        self._input_closed = True
        self._update_reading()

    def close(self) -> None:
        """Close now, dropping pending requests (used at shutdown after the grace period)."""
        if self._transport is not None:
            self._transport.close()


def _read_region(region: FileRegion) -> bytes:
    data = os.pread(region.fd, region.length, region.position)
    if len(data) != region.length:
        raise OSError(
            f"log file shrank under a read: wanted {region.length} bytes at "
            f"{region.position}, got {len(data)}"
        )
    return data


# Event loops serving a broker now, with how many: a client on the same loop must never
# block that loop waiting for the broker (the framework checks before it would).
_SERVING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, int] = weakref.WeakKeyDictionary()


def serving_on(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a broker of this process is being served on ``loop``."""
    return _SERVING.get(loop, 0) > 0


class BrokerServer:
    """Serves a :class:`Broker` on a TCP address.

    >>> async def main():  # doctest: +SKIP
    ...     server = BrokerServer(Broker(BrokerConfig(port=0, storage=StorageKind.MEMORY)))
    ...     await server.start()
    ...     print(server.address)
    ...     await server.stop()
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The host and port the server listens on."""
        return self.broker.config.host, self.broker.port

    async def start(self) -> None:
        """Open the broker's data, bind, and start serving."""
        config = self.broker.config
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.broker.open)
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                config.host,
                config.port,
                reuse_address=True,
                backlog=1024,
            )
        except BaseException:
            await self.broker.close()  # the logs are open: close them cleanly
            raise
        self._loop = loop
        _SERVING[loop] = _SERVING.get(loop, 0) + 1
        sockets = self._server.sockets
        if sockets and config.port == 0:
            self.broker.port = sockets[0].getsockname()[1]
        self.broker.start_background()
        log.info(
            "Rivulet broker listening on %s:%d (cluster %s, node %d, data in %s)",
            config.host,
            self.broker.port,
            self.broker.cluster_id,
            config.node_id,
            config.data_dir if config.storage is StorageKind.DURABLE else "memory",
        )

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish briefly, close everything."""
        if self._server is not None:
            self._server.close()
        if self._loop is not None:
            _SERVING[self._loop] -= 1
            self._loop = None
        self.broker.begin_shutdown()
        connections = list(self.connections)
        for connection in connections:
            connection.stop_reading()
        if connections:
            waits = [asyncio.ensure_future(c.drained.wait()) for c in connections]
            _done, pending = await asyncio.wait(waits, timeout=_SHUTDOWN_GRACE_S)
            for waiter in pending:
                waiter.cancel()
        for connection in connections:
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        await self.broker.close()
        log.info("Rivulet broker stopped")
