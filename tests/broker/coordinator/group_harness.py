"""A fake-clock driver for the pure group coordinator, shared by its tests."""

from __future__ import annotations

import itertools
import struct
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator import (
    CoordinatorResult,
    GroupCoordinator,
    GroupCoordinatorConfig,
    GroupProtocol,
    GroupState,
    JoinRequest,
    JoinResponse,
    LeaveResult,
    LeavingMember,
    OffsetCommitRequest,
    OffsetToCommit,
    Record,
    SyncRequest,
    SyncResponse,
    TopicPartition,
)
from rivulet.broker.coordinator.group import ClassicGroup

T = TypeVar("T")

SESSION_MS = 10_000
REBALANCE_MS = 30_000


def subscription(*topics: str, owned: Sequence[tuple[str, int]] = ()) -> bytes:
    """ConsumerProtocolSubscription v1 bytes: topics, null user data, owned partitions."""
    out = [struct.pack(">hi", 1, len(topics))]
    for topic in topics:
        raw = topic.encode()
        out.append(struct.pack(">h", len(raw)) + raw)
    out.append(struct.pack(">i", -1))
    by_topic: dict[str, list[int]] = {}
    for topic, partition in owned:
        by_topic.setdefault(topic, []).append(partition)
    out.append(struct.pack(">i", len(by_topic)))
    for topic, partitions in by_topic.items():
        raw = topic.encode()
        out.append(struct.pack(">h", len(raw)) + raw + struct.pack(">i", len(partitions)))
        out.extend(struct.pack(">i", p) for p in partitions)
    return b"".join(out)


class Harness:
    """Drives a :class:`GroupCoordinator` with a fake clock and records every answer.

    Each JoinGroup/SyncGroup gets a fresh token; :meth:`answer` returns what the
    coordinator answered for it so far (``None`` while it is parked). Answering a
    token twice fails the test.
    """

    def __init__(self, **config: int) -> None:
        config.setdefault("initial_rebalance_delay_ms", 0)
        self.now = 0
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self.coordinator = GroupCoordinator(
            config=GroupCoordinatorConfig(**config),
            new_member_id=lambda prefix: f"{prefix}-{next(self._ids)}",
            now_ms=0,
        )
        self.answers: dict[Hashable, JoinResponse | SyncResponse] = {}
        self.records: list[Record] = []
        self.last_join: Hashable = ""

    # --- plumbing ---------------------------------------------------------------

    def take(self, result: CoordinatorResult[T]) -> T:
        for completion in result.completions:
            assert completion.token not in self.answers, f"{completion.token} answered twice"
            self.answers[completion.token] = completion.response
        self.records.extend(result.records)
        return result.response

    def advance(self, ms: int) -> None:
        """Move the clock and fire every timer that came due."""
        self.now += ms
        self.take(self.coordinator.poll(self.now))

    def group(self, group_id: str = "g") -> ClassicGroup:
        group = self.coordinator.group(group_id)
        assert group is not None, f"group {group_id} does not exist"
        return group

    def state(self, group_id: str = "g") -> GroupState:
        group = self.coordinator.group(group_id)
        return GroupState.DEAD if group is None else group.state

    def join_answer(self, token: Hashable) -> JoinResponse | None:
        answer = self.answers.get(token)
        assert answer is None or isinstance(answer, JoinResponse)
        return answer

    def sync_answer(self, token: Hashable) -> SyncResponse | None:
        answer = self.answers.get(token)
        assert answer is None or isinstance(answer, SyncResponse)
        return answer

    # --- requests ---------------------------------------------------------------

    def join(
        self,
        member_id: str = "",
        *,
        group_id: str = "g",
        instance_id: str | None = None,
        client_id: str = "c",
        protocols: Iterable[tuple[str, bytes]] = (("range", b"meta"),),
        protocol_type: str = "consumer",
        session_ms: int = SESSION_MS,
        rebalance_ms: int = REBALANCE_MS,
        require_known_member_id: bool = True,
        supports_skip_assignment: bool = False,
    ) -> Hashable:
        token = f"join-{next(self._tokens)}"
        request = JoinRequest(
            group_id=group_id,
            member_id=member_id,
            group_instance_id=instance_id,
            client_id=client_id,
            client_host="/127.0.0.1",
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms,
            protocol_type=protocol_type,
            protocols=tuple(GroupProtocol(n, m) for n, m in protocols),
            require_known_member_id=require_known_member_id,
            supports_skip_assignment=supports_skip_assignment,
        )
        self.take(self.coordinator.join_group(token, request, self.now))
        return token

    def new_member(self, **kwargs: Any) -> str:
        """Join with the v4+ handshake and return the member id (its join may park)."""
        first = self.join(**kwargs)
        answer = self.join_answer(first)
        if answer is not None and answer.error is ErrorCode.member_id_required:
            self.last_join = self.join(answer.member_id, **kwargs)
            return answer.member_id
        self.last_join = first
        if answer is not None:
            assert answer.error is ErrorCode.none, answer
            return answer.member_id
        # Parked at once (static members, pre-v4 joins): the newest member is this one.
        return list(self.group(kwargs.get("group_id", "g")).members)[-1]

    def sync(
        self,
        member_id: str,
        generation_id: int,
        assignments: Mapping[str, bytes] | None = None,
        *,
        group_id: str = "g",
        instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> Hashable:
        token = f"sync-{next(self._tokens)}"
        request = SyncRequest(
            group_id=group_id,
            member_id=member_id,
            generation_id=generation_id,
            group_instance_id=instance_id,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            assignments=dict(assignments or {}),
        )
        self.take(self.coordinator.sync_group(token, request, self.now))
        return token

    def heartbeat(
        self,
        member_id: str,
        generation_id: int,
        *,
        group_id: str = "g",
        instance_id: str | None = None,
    ) -> ErrorCode:
        return self.take(
            self.coordinator.heartbeat(group_id, member_id, generation_id, self.now, instance_id)
        )

    def leave(self, *members: LeavingMember, group_id: str = "g") -> LeaveResult:
        return self.take(self.coordinator.leave_group(group_id, members, self.now))

    def commit(
        self,
        offsets: Mapping[TopicPartition, OffsetToCommit | int],
        *,
        group_id: str = "g",
        member_id: str = "",
        generation_id: int = -1,
        instance_id: str | None = None,
        retention_ms: int = -1,
        unknown_group_error: ErrorCode = ErrorCode.illegal_generation,
    ) -> dict[TopicPartition, ErrorCode]:
        request = OffsetCommitRequest(
            group_id=group_id,
            member_id=member_id,
            group_instance_id=instance_id,
            generation_id=generation_id,
            retention_time_ms=retention_ms,
            offsets={
                tp: o if isinstance(o, OffsetToCommit) else OffsetToCommit(o)
                for tp, o in offsets.items()
            },
            unknown_group_error=unknown_group_error,
        )
        return self.take(self.coordinator.commit_offsets(request, self.now))

    # --- whole flows --------------------------------------------------------------

    def stable_group(
        self, count: int, *, static: bool = False, **kwargs: Any
    ) -> tuple[list[str], int]:
        """Bring ``count`` members to a Stable generation; return ids and generation.

        The leader assigns each member its own name as assignment bytes.
        """
        members: list[str] = []
        instances: list[str | None] = []
        for i in range(count):
            instance = f"instance-{i}" if static else None
            members.append(self.new_member(instance_id=instance, **kwargs))
            instances.append(instance)
            # Everyone already in must rejoin for the new member's rebalance.
            for other, other_instance in zip(members[:-1], instances, strict=False):
                if self.state() is GroupState.PREPARING_REBALANCE:
                    self.join(other, instance_id=other_instance, **kwargs)
        group = self.group()
        assert group.state is GroupState.COMPLETING_REBALANCE, group.state
        generation = group.generation_id
        leader = group.leader_id
        assert leader is not None
        for member_id in members:
            if member_id != leader:
                self.sync(member_id, generation)
        self.sync(leader, generation, {m: m.encode() for m in members})
        assert self.state() is GroupState.STABLE
        return members, generation
