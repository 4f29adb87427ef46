"""Topics and partitions: what exists, with which configs, and where its logs are.

:class:`TopicManager` owns every partition log. Topic metadata lives in one
file, ``<data_dir>/topics.json``, rewritten atomically (write a temporary file,
fsync, rename, fsync the directory) on every change, so a crash leaves either
the old or the new metadata, never a mix::

    {"format": 1,
     "topics": [{"name": "orders", "id": "<uuid>", "partitions": 3,
                 "configs": {"retention.ms": "86400000"}, "internal": false}]}

``configs`` holds only the overrides a user set, as strings, the way Kafka keeps
them; defaults come from the broker's :class:`~rivulet.storage.base.LogConfig`.
Each partition's log lives in ``<data_dir>/<topic>-<partition>/`` (Kafka's
layout). Deleting a topic first renames its directories to
``<topic>-<partition>.<topic id>-delete``, then drops it from the metadata, then
removes the directories; leftovers of an interrupted delete are removed on the
next start, so a topic re-created with the same name never sees old data.

With no ``data_dir`` (in-memory storage) nothing is written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rivulet.broker.errors import (
    InvalidPartitionsError,
    InvalidReplicaAssignmentError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicError,
)
from rivulet.broker.topic_configs import apply_overrides, validate_overrides
from rivulet.storage.base import AppendResult, CleanupPolicy, LogConfig, PartitionLog

__all__ = [
    "INTERNAL_TOPICS",
    "LogFactory",
    "Partition",
    "Topic",
    "TopicManager",
    "validate_topic_name",
]

log = logging.getLogger(__name__)

LogFactory = Callable[[Path, LogConfig], PartitionLog]
"""Opens (creating if needed) the log of one partition in the given directory."""

INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
"""Topics Metadata marks internal and that clients may not delete."""

MAX_PARTITIONS = 10_000
"""Per topic. A guard against a typo creating a million directories."""

_METADATA_FILE = "topics.json"
_METADATA_FORMAT = 1
_LEGAL_NAME = re.compile(r"[a-zA-Z0-9._-]+")
_MAX_NAME_LENGTH = 249
_DELETED_SUFFIX = "-delete"


def validate_topic_name(name: str) -> None:
    """Raise :class:`InvalidTopicError` unless ``name`` is a legal Kafka topic name."""
    if not name or name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if len(name) > _MAX_NAME_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; at most {_MAX_NAME_LENGTH} are allowed"
        )
    if not _LEGAL_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )


class Partition:
    """One partition: its log and the fetches waiting for it to grow."""

    __slots__ = ("_waiters", "index", "log", "topic")

    def __init__(self, topic: Topic, index: int, log: PartitionLog) -> None:
        self.topic = topic
        self.index = index
        self.log = log
        self._waiters: set[asyncio.Future[None]] = set()

    def append(self, batches: bytearray | memoryview, *, now_ms: int) -> AppendResult:
        """Append validated batches and wake the fetches waiting for data."""
        result = self.log.append(batches, now_ms=now_ms)
        self.wake()
        return result

    def watch(self, waiter: asyncio.Future[None]) -> None:
        """Resolve ``waiter`` at the next append (or when the partition goes away)."""
        self._waiters.add(waiter)

    @property
    def waiting(self) -> int:
        """How many fetches are waiting for this partition to grow."""
        return len(self._waiters)

    def unwatch(self, waiter: asyncio.Future[None]) -> None:
        self._waiters.discard(waiter)

    def wake(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, set()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def __repr__(self) -> str:
        return f"<Partition {self.topic.name}-{self.index}>"


@dataclass(eq=False)
class Topic:
    """A topic: name, id, partitions and the config overrides set on it."""

    name: str
    topic_id: uuid.UUID
    overrides: dict[str, str]
    log_config: LogConfig
    internal: bool = False
    partitions: list[Partition] = field(default_factory=list)

    @property
    def compacted(self) -> bool:
        return CleanupPolicy.COMPACT in self.log_config.cleanup_policy

    def partition(self, index: int) -> Partition | None:
        """The partition ``index``, or ``None`` if it does not exist."""
        if 0 <= index < len(self.partitions):
            return self.partitions[index]
        return None


class TopicManager:
    """Creates, finds, reconfigures and deletes topics; owns every partition log.

    Not thread-safe: the broker's event loop is its only user.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None,
        log_defaults: LogConfig,
        log_factory: LogFactory,
        default_partitions: int = 1,
        new_topic_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self._data_dir = data_dir
        self._log_defaults = log_defaults
        self._log_factory = log_factory
        self._default_partitions = default_partitions
        self._new_topic_id = new_topic_id
        self._topics: dict[str, Topic] = {}
        self._by_id: dict[uuid.UUID, Topic] = {}

    @property
    def log_defaults(self) -> LogConfig:
        return self._log_defaults

    # --- lookups --------------------------------------------------------------

    def get(self, name: str) -> Topic | None:
        return self._topics.get(name)

    def get_by_id(self, topic_id: uuid.UUID) -> Topic | None:
        return self._by_id.get(topic_id)

    def __iter__(self) -> Iterator[Topic]:
        return iter(list(self._topics.values()))

    def __len__(self) -> int:
        return len(self._topics)

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def partitions(self) -> Iterator[Partition]:
        """Every partition of every topic."""
        for topic in list(self._topics.values()):
            yield from topic.partitions

    # --- lifecycle ------------------------------------------------------------

    def load(self) -> None:
        """Read the metadata file and open every partition's log (recovery runs here)."""
        if self._data_dir is None:
            return
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._remove_deleted_dirs()
        path = self._data_dir / _METADATA_FILE
        if not path.exists():
            return
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != _METADATA_FORMAT:
            raise InvalidTopicError(
                f"{path} has format {document.get('format')!r}; this Rivulet reads format "
                f"{_METADATA_FORMAT}. Use the Rivulet version that wrote it."
            )
        for entry in document["topics"]:
            overrides = dict(entry.get("configs", {}))
            topic = Topic(
                name=entry["name"],
                topic_id=uuid.UUID(entry["id"]),
                overrides=overrides,
                log_config=apply_overrides(self._log_defaults, overrides),
                internal=bool(entry.get("internal", False)),
            )
            self._open_partitions(topic, int(entry["partitions"]))
            self._register(topic)
        log.info("loaded %d topics from %s", len(self._topics), path)

    def close(self) -> None:
        """Close every log (flushing it) and wake any waiting fetch."""
        for topic in self._topics.values():
            for partition in topic.partitions:
                partition.wake()
                try:
                    partition.log.close()
                except Exception:
                    log.exception("closing %r failed", partition)
        self._topics.clear()
        self._by_id.clear()

    # --- changes --------------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        num_partitions: int = -1,
        replication_factor: int = -1,
        assignments: Mapping[int, Sequence[int]] | None = None,
        configs: Mapping[str, str | None] | None = None,
        node_id: int | None = None,
        internal: bool | None = None,
        validate_only: bool = False,
    ) -> Topic:
        """Create a topic (or, with ``validate_only``, check that it could be created).

        ``num_partitions`` and ``replication_factor`` of -1 mean the broker default.
        ``assignments`` (partition -> replica broker ids) may only name this broker.
        Raises a :class:`~rivulet.broker.errors.BrokerError` subclass on refusal.
        """
        validate_topic_name(name)
        if name in self._topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        if assignments:
            if num_partitions != -1 or replication_factor != -1:
                raise InvalidReplicaAssignmentError(
                    "give either replica assignments or num_partitions/replication_factor, not both"
                )
            if sorted(assignments) != list(range(len(assignments))):
                raise InvalidReplicaAssignmentError(
                    "replica assignments must cover partitions 0..n-1 with no gaps"
                )
            for replicas in assignments.values():
                self._check_replicas(replicas, node_id)
            num_partitions = len(assignments)
        if num_partitions == -1:
            num_partitions = self._default_partitions
        if not 1 <= num_partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"number of partitions must be between 1 and {MAX_PARTITIONS}, not {num_partitions}"
            )
        if replication_factor not in (-1, 1):
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} is larger than the number of "
                "brokers (1): Rivulet is a single broker; use 1 or -1 (the default)"
            )
        overrides = validate_overrides(configs or {})
        topic = Topic(
            name=name,
            topic_id=self._new_topic_id(),
            overrides=overrides,
            log_config=apply_overrides(self._log_defaults, overrides),
            internal=name in INTERNAL_TOPICS if internal is None else internal,
        )
        if validate_only:
            return topic
        self._open_partitions(topic, num_partitions)
        self._register(topic)
        self._save()
        log.info("created topic %s with %d partitions", name, num_partitions)
        return topic

    def delete(self, name: str, *, allow_internal: bool = False) -> Topic:
        """Delete a topic and its data."""
        topic = self._require(name)
        if topic.internal and not allow_internal:
            raise InvalidTopicError(
                f"topic {name!r} is internal to the broker; it cannot be deleted"
            )
        del self._topics[name]
        del self._by_id[topic.topic_id]
        doomed = []
        for partition in topic.partitions:
            partition.wake()
            try:
                partition.log.close()
            except Exception:
                log.exception("closing %r before deleting it failed", partition)
            if self._data_dir is not None:
                directory = self._partition_dir(name, partition.index)
                if directory.exists():
                    target = directory.with_name(
                        f"{directory.name}.{topic.topic_id.hex}{_DELETED_SUFFIX}"
                    )
                    directory.rename(target)
                    doomed.append(target)
        self._save()
        for directory in doomed:
            shutil.rmtree(directory, ignore_errors=True)
        log.info("deleted topic %s", name)
        return topic

    def create_partitions(
        self,
        name: str,
        total: int,
        *,
        assignments: Sequence[Sequence[int]] | None = None,
        node_id: int | None = None,
        validate_only: bool = False,
    ) -> Topic:
        """Grow ``name`` to ``total`` partitions (CreatePartitions)."""
        topic = self._require(name)
        current = len(topic.partitions)
        if total <= current:
            raise InvalidPartitionsError(
                f"topic {name!r} has {current} partitions; the new count must be larger, "
                f"not {total} (partitions can be added, never removed)"
            )
        if total > MAX_PARTITIONS:
            raise InvalidPartitionsError(f"at most {MAX_PARTITIONS} partitions per topic")
        if assignments is not None:
            if len(assignments) != total - current:
                raise InvalidReplicaAssignmentError(
                    f"{len(assignments)} replica assignments given for "
                    f"{total - current} new partitions"
                )
            for replicas in assignments:
                self._check_replicas(replicas, node_id)
        if validate_only:
            return topic
        self._open_partitions(topic, total)
        self._save()
        log.info("topic %s now has %d partitions", name, total)
        return topic

    def set_overrides(
        self, name: str, overrides: Mapping[str, str | None], *, validate_only: bool = False
    ) -> Topic:
        """Replace a topic's config overrides (already merged by the caller)."""
        topic = self._require(name)
        checked = validate_overrides(overrides)
        if validate_only:
            return topic
        topic.overrides = checked
        topic.log_config = apply_overrides(self._log_defaults, checked)
        for partition in topic.partitions:
            partition.log.reconfigure(topic.log_config)
        self._save()
        log.info("topic %s configs now %s", name, checked)
        return topic

    # --- maintenance ----------------------------------------------------------

    def clean(self, *, now_ms: int) -> None:
        """Apply retention, and compaction where configured, to every partition."""
        for partition in list(self.partitions()):
            try:
                deleted = partition.log.enforce_retention(now_ms=now_ms)
                freed = partition.log.compact(now_ms=now_ms) if partition.topic.compacted else 0
            except Exception:
                # One damaged partition must not stop the others being cleaned.
                log.exception("retention/compaction of %r failed", partition)
                continue
            if deleted or freed:
                log.info(
                    "%r: retention deleted %d segments, compaction freed %d bytes",
                    partition,
                    deleted,
                    freed,
                )

    # --- internals ------------------------------------------------------------

    def _require(self, name: str) -> Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicError(f"topic {name!r} does not exist")
        return topic

    @staticmethod
    def _check_replicas(replicas: Sequence[int], node_id: int | None) -> None:
        if len(replicas) != 1 or (node_id is not None and replicas[0] != node_id):
            raise InvalidReplicaAssignmentError(
                f"replica assignment {list(replicas)} is not possible: this single broker "
                f"(id {node_id}) must be the only replica"
            )

    def _register(self, topic: Topic) -> None:
        self._topics[topic.name] = topic
        self._by_id[topic.topic_id] = topic

    def _partition_dir(self, name: str, index: int) -> Path:
        assert self._data_dir is not None
        return self._data_dir / f"{name}-{index}"

    def _open_partitions(self, topic: Topic, count: int) -> None:
        for index in range(len(topic.partitions), count):
            directory = (
                self._partition_dir(topic.name, index)
                if self._data_dir is not None
                else Path(f"{topic.name}-{index}")
            )
            topic.partitions.append(
                Partition(topic, index, self._log_factory(directory, topic.log_config))
            )

    def _remove_deleted_dirs(self) -> None:
        assert self._data_dir is not None
        for entry in self._data_dir.iterdir():
            if entry.is_dir() and entry.name.endswith(_DELETED_SUFFIX):
                log.info("removing %s, left over from an interrupted topic deletion", entry)
                shutil.rmtree(entry, ignore_errors=True)

    def _save(self) -> None:
        if self._data_dir is None:
            return
        document: dict[str, Any] = {
            "format": _METADATA_FORMAT,
            "topics": [
                {
                    "name": topic.name,
                    "id": str(topic.topic_id),
                    "partitions": len(topic.partitions),
                    "configs": topic.overrides,
                    "internal": topic.internal,
                }
                for topic in self._topics.values()
            ],
        }
        write_atomically(self._data_dir / _METADATA_FILE, json.dumps(document, indent=1).encode())


def write_atomically(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
