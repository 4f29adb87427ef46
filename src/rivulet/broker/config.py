"""The broker's configuration: one frozen, typed object built once at the edge.

The CLI, :class:`~rivulet.broker.EmbeddedBroker` and tests build a
:class:`BrokerConfig`; nothing below them reads the environment or files for
settings. Names follow the Kafka broker settings they mirror (noted on each
field) so that a reader who knows Kafka knows what they do.

>>> from pathlib import Path
>>> config = BrokerConfig(data_dir=Path("/tmp/rivulet"), port=0, num_partitions=3)
>>> config.num_partitions
3
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rivulet.broker.errors import ConfigError
from rivulet.storage.base import LogConfig

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_PORT", "BrokerConfig", "FetchTransfer", "StorageKind"]

DEFAULT_DATA_DIR = Path(".rivulet/broker")
DEFAULT_PORT = 9092
MIB = 1024 * 1024


class StorageKind(enum.Enum):
    """Where partition logs live."""

    DURABLE = "durable"
    """Segment files under ``data_dir`` (the default): survives restarts."""

    MEMORY = "memory"
    """In memory only; topics and data vanish when the broker stops. For tests."""


class FetchTransfer(enum.Enum):
    """How log data held in files reaches the socket in Fetch responses."""

    SENDFILE = "sendfile"
    """``os.sendfile`` straight from the segment file when the socket is idle."""

    READ = "read"
    """``os.pread`` into memory, then a normal socket write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerConfig:
    """Everything a broker needs to start. Validated on construction."""

    data_dir: Path = DEFAULT_DATA_DIR
    """Topic metadata, partition logs and ``meta.properties`` (Kafka's ``log.dirs``)."""

    host: str = "127.0.0.1"
    """Interface to listen on (Kafka's ``listeners``)."""

    port: int = DEFAULT_PORT
    """TCP port; 0 picks a free one."""

    advertised_host: str | None = None
    """Host clients are told to connect to (``advertised.listeners``); default: ``host``,
    or 127.0.0.1 when listening on every interface."""

    node_id: int = 1
    """This broker's id in Metadata responses (``node.id``)."""

    cluster_id: str | None = None
    """Force a cluster id; by default one is generated on first start and kept in
    ``data_dir/meta.properties``."""

    storage: StorageKind = StorageKind.DURABLE

    auto_create_topics: bool = True
    """Create unknown topics on Metadata and Produce (``auto.create.topics.enable``)."""

    num_partitions: int = 1
    """Partitions of auto-created topics and of CreateTopics asking for -1 (``num.partitions``)."""

    socket_request_max_bytes: int = 100 * MIB
    """Largest request frame accepted; bigger ones close the connection
    (``socket.request.max.bytes``)."""

    log: LogConfig = field(default_factory=LogConfig)
    """Broker-wide defaults of every topic's log settings (``log.retention.ms``,
    ``log.segment.bytes``, ...). ``log.max_message_bytes`` is ``message.max.bytes``."""

    fsync_acks_all: bool = False
    """fsync a partition before acknowledging an acks=-1 produce. Off by default:
    like Kafka, durability comes from the OS page cache (and, in Kafka, replicas)."""

    retention_check_interval_ms: int = 5 * 60 * 1000
    """How often retention and compaction run (``log.retention.check.interval.ms``)."""

    group_initial_rebalance_delay_ms: int = 3000
    """How long a new group waits for more members before its first rebalance
    (``group.initial.rebalance.delay.ms``)."""

    fetch_transfer: FetchTransfer = FetchTransfer.SENDFILE
    """How file-backed records are sent; see docs/decisions/0003-broker-metadata.md."""

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (0 <= self.port <= 65535, f"port must be 0-65535, not {self.port}"),
            (self.node_id >= 0, f"node_id must be >= 0, not {self.node_id}"),
            (self.num_partitions >= 1, f"num_partitions must be >= 1, not {self.num_partitions}"),
            (
                self.socket_request_max_bytes >= 1024,
                f"socket_request_max_bytes must be >= 1024, not {self.socket_request_max_bytes}",
            ),
            (
                self.retention_check_interval_ms >= 1,
                "retention_check_interval_ms must be positive",
            ),
            (
                self.group_initial_rebalance_delay_ms >= 0,
                "group_initial_rebalance_delay_ms must be >= 0",
            ),
            (bool(self.host), "host must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def client_host(self) -> str:
        """The host advertised to clients in Metadata responses."""
        if self.advertised_host:
            return self.advertised_host
        if self.host in ("0.0.0.0", "::", ""):  # noqa: S104 - a check, not a bind
            return "127.0.0.1"
        return self.host

    def replace(self, **changes: Any) -> BrokerConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
