"""The group coordinator inside the broker: parked requests, timers, persistence.

:class:`GroupRuntime` wraps the pure
:class:`~rivulet.broker.coordinator.coordinator.GroupCoordinator` for the broker's
event loop:

* A JoinGroup or SyncGroup the coordinator parks becomes a future the handler
  awaits; the coordinator's completions resolve them.
* The coordinator's deadlines (sessions, join and sync phases, the initial
  rebalance delay, offset expiry) are armed with ``loop.call_later`` on the
  broker's clock; when one fires the coordinator is polled.
* Every record an operation produces is appended to the internal compacted topic
  ``__consumer_offsets`` (one partition, created on first use) before any
  response is sent, so an acknowledged commit survives a restart. On start the
  topic is replayed to rebuild groups and offsets.

Everything runs on the event loop thread, and appends are synchronous, so
operations never interleave. If an append fails the client gets NOT_COORDINATOR
(and retries, as for a moved coordinator); the in-memory state keeps the change,
which a restart would lose.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from typing import TypeVar

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.config import GroupCoordinatorConfig
from rivulet.broker.coordinator.coordinator import GroupCoordinator, MemberIdFactory
from rivulet.broker.coordinator.log_format import RecordFormatError, decode_record, encode_record
from rivulet.broker.coordinator.model import (
    CoordinatorResult,
    GroupDescription,
    GroupListing,
    JoinRequest,
    JoinResponse,
    LeaveResult,
    LeavingMember,
    OffsetCommitRequest,
    OffsetDeleteResult,
    SyncRequest,
    SyncResponse,
    TopicPartition,
)
from rivulet.broker.coordinator.records import CommittedOffset, Record
from rivulet.broker.errors import BrokerError
from rivulet.broker.topics import Partition, TopicManager
from rivulet.protocol.errors import ProtocolError
from rivulet.protocol.records import build_batch, iter_decoded
from rivulet.storage.base import FileRegion
from rivulet.storage.errors import StorageError

__all__ = ["OFFSETS_TOPIC", "GroupRuntime"]

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
_OFFSETS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": str(100 * 1024 * 1024),  # Kafka's offsets.topic.segment.bytes
}
_READ_CHUNK = 1024 * 1024
_PERSIST_FAILED = ErrorCode.not_coordinator
_UNLOADED = ErrorCode.not_coordinator

T = TypeVar("T")


class GroupRuntime:
    """Serves the group APIs for one broker."""

    def __init__(
        self,
        *,
        topics: TopicManager,
        clock: Callable[[], int],
        config: GroupCoordinatorConfig,
        new_member_id: MemberIdFactory,
        node_id: int | None = None,
        fsync: bool = False,
    ) -> None:
        self._topics = topics
        self._clock = clock
        self._node_id = node_id
        self._fsync = fsync
        self.coordinator = GroupCoordinator(
            config=config, new_member_id=new_member_id, now_ms=clock()
        )
        self._tokens = itertools.count()
        self._joins: dict[Hashable, asyncio.Future[JoinResponse]] = {}
        self._syncs: dict[Hashable, asyncio.Future[SyncResponse]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------------

    def load(self) -> None:
        """Replay ``__consumer_offsets`` (call once, after the topics are loaded)."""
        records = list(self._read_offsets_topic())
        self.coordinator.load(records, self._clock())
        log.info(
            "loaded %d groups from %d %s records",
            len(self.coordinator.group_ids()),
            len(records),
            OFFSETS_TOPIC,
        )

    def start(self) -> None:
        """Arm the coordinator's timers on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._arm()

    def shutdown(self) -> None:
        """The broker is stopping: answer every parked request, park no new ones.

        Parked JoinGroup/SyncGroup requests get NOT_COORDINATOR, as Kafka answers
        when a coordinator unloads its groups, so clients look for the coordinator
        again (and find the restarted broker) instead of holding up the shutdown.
        """
        self._stopping = True
        for join in self._joins.values():
            if not join.done():
                join.set_result(JoinResponse(error=_UNLOADED))
        for sync in self._syncs.values():
            if not sync.done():
                sync.set_result(SyncResponse(error=_UNLOADED))

    def close(self) -> None:
        """Stop the timers and answer whatever is still parked."""
        self.shutdown()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    # --- the group APIs ------------------------------------------------------------------

    async def join_group(self, request: JoinRequest) -> JoinResponse:
        """JoinGroup: returns when the member's join phase completes."""
        if self._stopping:
            return JoinResponse(error=_UNLOADED)
        token = next(self._tokens)
        waiter = self._joins[token] = self._new_future()
        try:
            self._apply(self.coordinator.join_group(token, request, self._clock()))
            return await waiter
        finally:
            self._joins.pop(token, None)

    async def sync_group(self, request: SyncRequest) -> SyncResponse:
        """SyncGroup: returns once the leader's assignment is in."""
        if self._stopping:
            return SyncResponse(error=_UNLOADED)
        token = next(self._tokens)
        waiter = self._syncs[token] = self._new_future()
        try:
            self._apply(self.coordinator.sync_group(token, request, self._clock()))
            return await waiter
        finally:
            self._syncs.pop(token, None)

    def heartbeat(
        self, group_id: str, member_id: str, generation_id: int, group_instance_id: str | None
    ) -> ErrorCode:
        result = self.coordinator.heartbeat(
            group_id, member_id, generation_id, self._clock(), group_instance_id
        )
        self._apply(result)
        return result.response

    def leave_group(self, group_id: str, members: Sequence[LeavingMember]) -> LeaveResult:
        result = self.coordinator.leave_group(group_id, members, self._clock())
        if not self._apply(result):
            return LeaveResult(_PERSIST_FAILED, tuple(_PERSIST_FAILED for _ in members))
        return result.response

    def commit_offsets(self, request: OffsetCommitRequest) -> dict[TopicPartition, ErrorCode]:
        """OffsetCommit: acknowledged only once the commit records are appended."""
        result = self.coordinator.commit_offsets(request, self._clock())
        if not self._apply(result):
            return dict.fromkeys(result.response, _PERSIST_FAILED)
        return result.response

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> dict[TopicPartition, CommittedOffset | None]:
        return self.coordinator.fetch_offsets(group_id, partitions)

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> OffsetDeleteResult:
        result = self.coordinator.delete_offsets(group_id, partitions, self._clock())
        if not self._apply(result):
            return OffsetDeleteResult(_PERSIST_FAILED)
        return result.response

    def topics_deleted(self, topics: Collection[str]) -> None:
        """Forget every group's offsets for deleted topics (call after deleting them)."""
        self._apply(self.coordinator.delete_topic_offsets(topics, self._clock()))

    def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        return self.coordinator.describe_groups(group_ids)

    def list_groups(
        self, states: Collection[str] | None = None, types: Collection[str] | None = None
    ) -> list[GroupListing]:
        return self.coordinator.list_groups(states, types)

    def delete_groups(self, group_ids: Sequence[str]) -> list[tuple[str, ErrorCode]]:
        result = self.coordinator.delete_groups(group_ids, self._clock())
        if not self._apply(result):
            return [
                (g, e if e is not ErrorCode.none else _PERSIST_FAILED) for g, e in result.response
            ]
        return result.response

    # --- carrying out results ----------------------------------------------------------------

    def _new_future(self) -> asyncio.Future[T]:
        return asyncio.get_running_loop().create_future()

    def _apply(self, result: CoordinatorResult[T]) -> bool:
        """Persist ``result``'s records, then complete its parked requests.

        Returns whether the records were persisted; when they were not, the
        completions carry NOT_COORDINATOR instead of their answers.
        """
        persisted = True
        if result.records:
            try:
                self._persist(result.records)
            except (StorageError, BrokerError, OSError):
                log.exception("could not append group records to %s", OFFSETS_TOPIC)
                persisted = False
        for completion in result.completions:
            response = completion.response
            if isinstance(response, JoinResponse):
                join = self._joins.get(completion.token)
                if join is not None and not join.done():
                    join.set_result(response if persisted else JoinResponse(error=_PERSIST_FAILED))
            else:
                sync = self._syncs.get(completion.token)
                if sync is not None and not sync.done():
                    sync.set_result(response if persisted else SyncResponse(error=_PERSIST_FAILED))
        self._arm()
        return persisted

    def _persist(self, records: Sequence[Record]) -> None:
        now = self._clock()
        batch = build_batch((encode_record(r) for r in records), timestamp_ms=now)
        partition = self._offsets_partition()
        partition.append(bytearray(batch), now_ms=now)
        if self._fsync:
            partition.log.flush()

    def _offsets_partition(self) -> Partition:
        topic = self._topics.get(OFFSETS_TOPIC)
        if topic is None:
            topic = self._topics.create(
                OFFSETS_TOPIC,
                num_partitions=1,
                configs=_OFFSETS_TOPIC_CONFIGS,
                node_id=self._node_id,
                internal=True,
            )
        return topic.partitions[0]

    def _read_offsets_topic(self) -> Iterator[Record]:
        topic = self._topics.get(OFFSETS_TOPIC)
        if topic is None:
            return
        for partition in topic.partitions:
            plog = partition.log
            offset = plog.start_offset
            while offset < plog.end_offset:
                chunk = plog.read(offset, _READ_CHUNK)
                start = offset
                if not chunk.chunks:
                    break
                data = b"".join(_chunk_bytes(c) for c in chunk.chunks)
                try:
                    for batch in iter_decoded(data):
                        offset = batch.header.next_offset
                        if batch.header.is_control:
                            continue
                        for record in batch.records:
                            if record.key is None:
                                continue
                            try:
                                decoded = decode_record(record.key, record.value)
                            except RecordFormatError:
                                log.warning(
                                    "skipping unreadable %s record at offset %d",
                                    OFFSETS_TOPIC,
                                    batch.offset(record),
                                )
                                continue
                            if decoded is not None:
                                yield decoded
                except ProtocolError:
                    log.exception("stopping replay of %s at offset %d", OFFSETS_TOPIC, offset)
                    return
                if offset <= start:
                    log.error("replay of %s made no progress at offset %d", OFFSETS_TOPIC, offset)
                    return

    # --- timers ---------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._loop is None:
            return  # not started yet: start() arms
        deadline = self.coordinator.next_deadline()
        if deadline is None or (self._armed_at is not None and self._armed_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = deadline
        delay_s = max(0, deadline - self._clock()) / 1000
        self._timer = self._loop.call_later(delay_s, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_at = None
        try:
            self._apply(self.coordinator.poll(self._clock()))
        except Exception:
            # A coordinator bug must not stop the broker's loop; the next request re-arms.
            log.exception("group coordinator timers failed")


def _chunk_bytes(chunk: memoryview | FileRegion) -> bytes:
    if isinstance(chunk, FileRegion):
        return os.pread(chunk.fd, chunk.length, chunk.position)
    return bytes(chunk)
