"""What the group coordinator persists: the records of ``__consumer_offsets``.

As in Kafka, the topic is compacted and holds two kinds of record:

* an offset commit, keyed by (group, topic, partition), whose value is the
  committed offset; a ``None`` value is a tombstone (offset expired or deleted);
* a group's metadata, keyed by group, whose value is the group's generation,
  protocol, leader and members with their subscriptions and assignments as of
  the last completed rebalance; a ``None`` value is a tombstone (group deleted).

Replaying the records in log order, the last value of each key wins, rebuilds the
coordinator's state after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CommittedOffset",
    "GroupMetadataRecord",
    "GroupMetadataValue",
    "MemberMetadataValue",
    "OffsetCommitRecord",
    "Record",
]


@dataclass(frozen=True, slots=True)
class CommittedOffset:
    """A committed offset as stored.

    ``expire_timestamp_ms`` is set only when the client asked for its own
    retention (OffsetCommit v2-v4 ``retention_time_ms``); otherwise the group's
    retention rule applies.
    """

    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp_ms: int
    expire_timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class OffsetCommitRecord:
    """An offset committed for one partition, or its tombstone (``value is None``)."""

    group_id: str
    topic: str
    partition: int
    value: CommittedOffset | None


@dataclass(frozen=True, slots=True)
class MemberMetadataValue:
    """One member of a stored group: its subscription to the selected protocol."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(frozen=True, slots=True)
class GroupMetadataValue:
    """A group as of its last completed rebalance (or its last move to Empty)."""

    protocol_type: str | None
    generation_id: int
    protocol_name: str | None
    leader: str | None
    current_state_timestamp_ms: int | None
    members: tuple[MemberMetadataValue, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupMetadataRecord:
    """A group's metadata, or its tombstone (``value is None``)."""

    group_id: str
    value: GroupMetadataValue | None


Record = OffsetCommitRecord | GroupMetadataRecord
