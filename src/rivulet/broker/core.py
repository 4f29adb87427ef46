"""The broker without its sockets: state, request dispatch, lifecycle.

:class:`Broker` turns one request frame into response pieces. The server
(:mod:`rivulet.broker.server`) owns connections and calls
:meth:`Broker.handle_frame`; tests can call it directly.

Identity lives in ``<data_dir>/meta.properties`` (Kafka's file name and keys),
written on first start::

    cluster.id=<22-character base64 id>
    node.id=1
    version=1
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from kio.schema.errors import ErrorCode

from rivulet.broker.config import BrokerConfig, StorageKind
from rivulet.broker.coordinator.config import GroupCoordinatorConfig
from rivulet.broker.coordinator.runtime import GroupRuntime
from rivulet.broker.errors import BrokerError, ConfigError
from rivulet.broker.producer_ids import ProducerIdAllocator
from rivulet.broker.router import EncodedResponse, Handler, RequestContext, Router
from rivulet.broker.topics import LogFactory, TopicManager, write_atomically
from rivulet.protocol.errors import MalformedRequestError
from rivulet.protocol.messages import (
    API_VERSIONS_KEY,
    RequestHeader,
    decode_request,
    encode_response,
    read_request_header,
)
from rivulet.storage.base import LogConfig, PartitionLog, ReadChunk
from rivulet.storage.memory import MemoryLog

__all__ = ["Broker", "CloseConnectionError", "system_clock_ms"]

log = logging.getLogger(__name__)

_META_FILE = "meta.properties"


def system_clock_ms() -> int:
    """Wall-clock milliseconds: the clock a real broker runs on."""
    return time.time_ns() // 1_000_000


class CloseConnectionError(BrokerError):
    """The request cannot be answered; the connection must be closed (as Kafka does)."""


def memory_log_factory(_path: Path, config: LogConfig) -> PartitionLog:
    return MemoryLog(config)


def durable_log_factory(path: Path, config: LogConfig) -> PartitionLog:
    from rivulet.storage.segmented import open_log  # noqa: PLC0415 - import cycle-free, on demand

    return open_log(path, config)


class Broker:
    """One Kafka broker's state and request handling, independent of sockets."""

    def __init__(
        self,
        config: BrokerConfig,
        *,
        handlers: Iterable[Handler] | None = None,
        clock: Callable[[], int] = system_clock_ms,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
        log_factory: LogFactory | None = None,
    ) -> None:
        if handlers is None:
            from rivulet.broker.handlers import HANDLERS  # noqa: PLC0415 - handlers import us

            handlers = HANDLERS
        self.config = config
        self.clock = clock
        self.router = Router(handlers)
        durable = config.storage is StorageKind.DURABLE
        if log_factory is None:
            log_factory = durable_log_factory if durable else memory_log_factory
        self.topics = TopicManager(
            data_dir=config.data_dir if durable else None,
            log_defaults=config.log,
            log_factory=log_factory,
            default_partitions=config.num_partitions,
            new_topic_id=new_id,
        )
        self._new_id = new_id
        self.groups = GroupRuntime(
            topics=self.topics,
            clock=clock,
            config=GroupCoordinatorConfig(
                initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms
            ),
            new_member_id=lambda prefix: f"{prefix}-{new_id()}",
            node_id=config.node_id,
            fsync=config.fsync_acks_all,
        )
        self.producer_ids = ProducerIdAllocator(config.data_dir if durable else None)
        """Hands out idempotent producers' ids (InitProducerId)."""
        self.cluster_id = config.cluster_id or ""
        self.port = config.port
        """The port clients reach this broker on (set by the server once bound)."""
        self.closing = False
        self._cleaner: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------

    def open(self) -> None:
        """Load identity and topics from the data directory (runs log recovery)."""
        if self.config.storage is StorageKind.DURABLE:
            self.cluster_id = self._load_identity(self.config.data_dir)
        elif not self.cluster_id:
            self.cluster_id = _new_cluster_id(self._new_id())
        self.topics.load()
        self.groups.load()

    def start_background(self) -> None:
        """Start periodic retention and compaction (needs a running event loop)."""
        self.groups.start()
        self._cleaner = asyncio.get_running_loop().create_task(
            self._clean_periodically(), name="rivulet-log-cleaner"
        )

    def begin_shutdown(self) -> None:
        """Answer every parked request now (fetches, joins), before connections close."""
        self.closing = True
        for partition in self.topics.partitions():
            partition.wake()
        self.groups.shutdown()

    async def close(self) -> None:
        """Stop background work, wake waiting fetches and close every log."""
        self.closing = True
        if self._cleaner is not None:
            self._cleaner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleaner
            self._cleaner = None
        self.groups.close()
        self.topics.close()

    async def _clean_periodically(self) -> None:
        interval = self.config.retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            self.topics.clean(now_ms=self.clock())

    def _load_identity(self, data_dir: Path) -> str:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / _META_FILE
        if path.exists():
            props = _read_properties(path)
            stored_node = int(props.get("node.id", self.config.node_id))
            if stored_node != self.config.node_id:
                raise ConfigError(
                    f"{path} belongs to node {stored_node}, not {self.config.node_id}: use "
                    "the same node id, or another data directory"
                )
            cluster_id = props.get("cluster.id", "")
            if self.config.cluster_id and self.config.cluster_id != cluster_id:
                raise ConfigError(
                    f"{path} belongs to cluster {cluster_id!r}, not {self.config.cluster_id!r}"
                )
            if cluster_id:
                return cluster_id
        cluster_id = self.config.cluster_id or _new_cluster_id(self._new_id())
        text = (
            "# Written by Rivulet on first start; identifies this broker's data.\n"
            f"cluster.id={cluster_id}\nnode.id={self.config.node_id}\nversion=1\n"
        )
        write_atomically(path, text.encode())
        return cluster_id

    # --- requests -------------------------------------------------------------

    async def handle_frame(
        self, frame: bytes | bytearray, client_host: str = ""
    ) -> Sequence[bytes | ReadChunk] | None:
        """Answer one request frame (without its size prefix).

        A ``bytearray`` frame is the broker's to change: Produce patches the
        batches in it and writes them to the log from there (the server hands
        over frames that way). A ``bytes`` frame is copied where that matters.

        Returns the framed response as pieces to send in order, or ``None`` when
        the request gets no response (Produce with acks=0). Raises
        :class:`CloseConnectionError` when the connection must be closed: a
        malformed request, or an API key or version that is not supported
        (except ApiVersions, which is answered at v0 as KIP-511 asks).
        """
        try:
            header, _ = read_request_header(frame)
        except MalformedRequestError as exc:
            raise CloseConnectionError(str(exc)) from exc
        handler = self.router.lookup(header.api_key, header.api_version)
        if handler is None:
            if header.api_key == API_VERSIONS_KEY:
                return [self._unsupported_api_versions(header)]
            raise CloseConnectionError(
                f"unsupported API key {header.api_key} version {header.api_version} "
                f"from client {header.client_id!r}"
            )
        if handler.read_body is not None and not isinstance(frame, bytearray):
            frame = bytearray(frame)
        try:
            request = decode_request(frame, handler.read_body)
        except MalformedRequestError as exc:
            raise CloseConnectionError(f"{exc} (client {header.client_id!r})") from exc
        ctx = RequestContext(self, header, client_host)
        try:
            result = await handler.handle(ctx, request.body)
            if result is None:
                return None
            if isinstance(result, EncodedResponse):
                return result.pieces
            return [encode_response(header, result)]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A handler bug must cost one connection, never the broker.
            log.exception("%s v%d failed", handler.name, header.api_version)
            raise CloseConnectionError(f"{handler.name} failed: {exc}") from exc

    def _unsupported_api_versions(self, header: RequestHeader) -> bytes:
        """ApiVersions v0 with UNSUPPORTED_VERSION and our ranges, so the client retries."""
        v0 = RequestHeader(API_VERSIONS_KEY, 0, header.correlation_id, header.client_id)
        return encode_response(
            v0,
            {
                "error_code": ErrorCode.unsupported_version,
                "api_keys": [
                    {"api_key": key, "min_version": lo, "max_version": hi}
                    for key, lo, hi in self.router.api_versions()
                ],
            },
        )


def _new_cluster_id(value: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(value.bytes).decode().rstrip("=")


def _read_properties(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            key, _, value = stripped.partition("=")
            props[key.strip()] = value.strip()
    return props
