"""Values the group coordinator takes and gives back, independent of wire versions.

Handlers translate each Kafka API version's request into these and the answers
back into responses; the coordinator never sees kio classes, so one state machine
serves every version. Durations and timestamps are integer milliseconds.

JoinGroup and SyncGroup may be *parked*: the coordinator answers them later, when
the group's join or sync phase completes. The caller passes an opaque, unique
``token`` with each such request, and every :class:`CoordinatorResult` lists the
parked requests it completes as :class:`Completion` values.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.records import Record
from rivulet.broker.coordinator.state import GroupState

__all__ = [
    "Completion",
    "CoordinatorResult",
    "GroupDescription",
    "GroupListing",
    "GroupProtocol",
    "JoinRequest",
    "JoinResponse",
    "JoinedMember",
    "LeaveResult",
    "LeavingMember",
    "MemberDescription",
    "OffsetCommitRequest",
    "OffsetDeleteResult",
    "OffsetToCommit",
    "SyncRequest",
    "SyncResponse",
    "TopicPartition",
]

T = TypeVar("T")


class TopicPartition(NamedTuple):
    """A topic name and partition index."""

    topic: str
    partition: int


class GroupProtocol(NamedTuple):
    """One protocol a member supports (for consumers: an assignor) and its metadata."""

    name: str
    metadata: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRequest:
    """A JoinGroup request.

    ``member_id`` is ``""`` for a member that has none yet. ``require_known_member_id``
    is true from JoinGroup v4 (the broker then answers MEMBER_ID_REQUIRED with a
    fresh id before admitting a dynamic member); ``supports_skip_assignment`` from
    v9. For v0, which has no rebalance timeout, pass the session timeout.
    """

    group_id: str
    member_id: str
    group_instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[GroupProtocol, ...]
    require_known_member_id: bool = True
    supports_skip_assignment: bool = False
    reason: str | None = None


class JoinedMember(NamedTuple):
    """A member as the leader sees it in its JoinGroup response."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinResponse:
    """A JoinGroup answer. ``members`` is filled for the leader only."""

    error: ErrorCode
    member_id: str = ""
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: tuple[JoinedMember, ...] = ()
    skip_assignment: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncRequest:
    """A SyncGroup request; only the leader's carries ``assignments``."""

    group_id: str
    member_id: str
    generation_id: int
    group_instance_id: str | None = None
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignments: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncResponse:
    """A SyncGroup answer: the member's assignment for the current generation."""

    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


class LeavingMember(NamedTuple):
    """One member named in a LeaveGroup request (v3+ batches several)."""

    member_id: str
    group_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class LeaveResult:
    """LeaveGroup's top-level error and one error per leaving member, in order."""

    error: ErrorCode
    member_errors: tuple[ErrorCode, ...] = ()


class OffsetToCommit(NamedTuple):
    """One partition's entry in an OffsetCommit request."""

    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequest:
    """An OffsetCommit request.

    A generation of ``-1`` with an empty member id is a commit from a consumer
    that manages its own partitions (or from an admin tool); it is accepted only
    while the group has no members. ``retention_time_ms`` of ``-1`` means the
    broker's retention. ``unknown_group_error`` is what a commit naming a
    generation gets when the group does not exist: ILLEGAL_GENERATION before
    v9, GROUP_ID_NOT_FOUND from v9.
    """

    group_id: str
    member_id: str = ""
    group_instance_id: str | None = None
    generation_id: int = -1
    retention_time_ms: int = -1
    offsets: Mapping[TopicPartition, OffsetToCommit]
    unknown_group_error: ErrorCode = ErrorCode.illegal_generation


@dataclass(frozen=True, slots=True)
class OffsetDeleteResult:
    """OffsetDelete's group-level error, and per-partition errors when it is NONE."""

    error: ErrorCode
    partition_errors: Mapping[TopicPartition, ErrorCode] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MemberDescription:
    """A member in DescribeGroups. Metadata and assignment are given when Stable."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupDescription:
    """A group in DescribeGroups; an unknown group is described as Dead."""

    group_id: str
    error: ErrorCode
    state: GroupState
    protocol_type: str
    protocol_name: str
    members: tuple[MemberDescription, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupListing:
    """A group in ListGroups."""

    group_id: str
    protocol_type: str
    state: GroupState


@dataclass(frozen=True, slots=True)
class Completion:
    """The answer to a parked JoinGroup or SyncGroup, by the caller's token."""

    token: Hashable
    response: JoinResponse | SyncResponse


@dataclass(frozen=True, slots=True)
class CoordinatorResult(Generic[T]):
    """What one coordinator operation did, for the runtime to carry out.

    The runtime appends ``records`` to ``__consumer_offsets`` first and only then
    sends ``response`` and the ``completions``: nothing is acknowledged before it
    is durable.
    """

    response: T
    completions: tuple[Completion, ...] = ()
    records: tuple[Record, ...] = ()
