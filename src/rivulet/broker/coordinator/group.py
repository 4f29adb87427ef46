"""A classic consumer group's data: members, generation, protocol, leader, offsets.

This module holds the bookkeeping that has one right answer whatever API asked
(who is a member, who has rejoined, which protocol wins the vote, which topics
are subscribed). The rules of the protocol, when to rebalance and what to
answer, live in :mod:`rivulet.broker.coordinator.coordinator`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.consumer_protocol import CONSUMER_PROTOCOL_TYPE, subscribed_topics
from rivulet.broker.coordinator.model import GroupProtocol, JoinedMember, TopicPartition
from rivulet.broker.coordinator.records import (
    CommittedOffset,
    GroupMetadataValue,
    MemberMetadataValue,
)
from rivulet.broker.coordinator.state import GroupState, check_transition

__all__ = ["ClassicGroup", "Member"]


@dataclass(slots=True, kw_only=True)
class Member:
    """A member of a classic group.

    ``join_token`` / ``sync_token`` are the caller's tokens of a parked JoinGroup or
    SyncGroup (the member is "awaiting join/sync"). ``is_new`` marks a member added
    by a JoinGroup whose join phase has not completed yet: such a member can be
    dropped while it waits, since it holds no partitions.
    """

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: tuple[GroupProtocol, ...]
    assignment: bytes = b""
    join_token: Hashable | None = None
    sync_token: Hashable | None = None
    is_new: bool = False

    @property
    def awaiting_join(self) -> bool:
        """Whether the member has a parked JoinGroup."""
        return self.join_token is not None

    @property
    def awaiting_sync(self) -> bool:
        """Whether the member has a parked SyncGroup."""
        return self.sync_token is not None

    def has_satisfied_heartbeat(self) -> bool:
        """Whether a session expiry should spare the member.

        A member waiting in a rebalance cannot heartbeat (its request is parked), so
        it is alive by definition, unless it is new: a new member's parked JoinGroup
        is bounded by the new-member join timeout instead.
        """
        return not self.is_new and (self.awaiting_join or self.awaiting_sync)

    def metadata(self, protocol_name: str) -> bytes:
        """The member's metadata for ``protocol_name`` (which it must support)."""
        for protocol in self.protocols:
            if protocol.name == protocol_name:
                return protocol.metadata
        raise KeyError(f"member {self.member_id} does not support protocol {protocol_name!r}")

    def matches(self, protocols: Sequence[GroupProtocol]) -> bool:
        """Whether a rejoin brings exactly the protocols (and metadata) already known."""
        return self.protocols == tuple(protocols)

    def vote(self, candidates: frozenset[str]) -> str:
        """The member's most preferred protocol among ``candidates``."""
        for protocol in self.protocols:
            if protocol.name in candidates:
                return protocol.name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")


@dataclass(slots=True, eq=False)
class ClassicGroup:
    """A classic group; the coordinator mutates it, tests and tools read it."""

    group_id: str
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState | None = None
    state_timestamp_ms: int | None = None
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)
    pending_members: set[str] = field(default_factory=set)
    pending_sync: set[str] = field(default_factory=set)
    subscribed_topics: frozenset[str] | None = None
    offsets: dict[TopicPartition, CommittedOffset] = field(default_factory=dict)
    # Initial rebalance delay bookkeeping: (delay, remaining) of the running delay.
    initial_delay: tuple[int, int] | None = None
    new_member_added: bool = False

    # --- state -----------------------------------------------------------------

    def transition_to(self, state: GroupState, now_ms: int) -> None:
        """Move to ``state`` along an edge of the state table."""
        check_transition(self.state, state)
        self.previous_state = self.state
        self.state = state
        self.state_timestamp_ms = now_ms

    def can_rebalance(self) -> bool:
        """Whether a rebalance may start now (Empty, CompletingRebalance or Stable)."""
        return self.state in (
            GroupState.EMPTY,
            GroupState.COMPLETING_REBALANCE,
            GroupState.STABLE,
        )

    # --- membership -------------------------------------------------------------

    def add(self, member: Member) -> None:
        """Admit ``member``; the first member fixes the group's protocol type."""
        if not self.members:
            self.protocol_type = member.protocol_type
        self.pending_members.discard(member.member_id)
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id

    def remove(self, member_id: str) -> Member | None:
        """Drop a member (or a pending member); the leadership passes on if needed."""
        self.pending_members.discard(member_id)
        self.pending_sync.discard(member_id)
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.group_instance_id is not None:
            self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        return member

    def replace_static_member(self, instance_id: str, new_member_id: str) -> tuple[Member, Member]:
        """Give the static member ``instance_id`` a new member id; return (old, new).

        The new member keeps the old one's assignment and, if it led, the
        leadership. The caller fences the old member's parked requests.
        """
        old = self.members.pop(self.static_members[instance_id])
        new = Member(
            member_id=new_member_id,
            group_instance_id=instance_id,
            client_id=old.client_id,
            client_host=old.client_host,
            rebalance_timeout_ms=old.rebalance_timeout_ms,
            session_timeout_ms=old.session_timeout_ms,
            protocol_type=old.protocol_type,
            protocols=old.protocols,
            assignment=old.assignment,
        )
        self.members[new_member_id] = new
        self.static_members[instance_id] = new_member_id
        if self.leader_id == old.member_id:
            self.leader_id = new_member_id
        if old.member_id in self.pending_sync:
            self.pending_sync.discard(old.member_id)
            self.pending_sync.add(new_member_id)
        return old, new

    def validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode:
        """NONE if ``member_id`` (with ``instance_id``) is a current member.

        A static member whose instance id now maps to another member id has been
        replaced by a newer instance: FENCED_INSTANCE_ID.
        """
        if instance_id is not None:
            current = self.static_members.get(instance_id)
            if current is None:
                return ErrorCode.unknown_member_id
            if current != member_id:
                return ErrorCode.fenced_instance_id
            return ErrorCode.none
        return ErrorCode.none if member_id in self.members else ErrorCode.unknown_member_id

    def is_leader(self, member_id: str) -> bool:
        """Whether ``member_id`` leads the group."""
        return self.leader_id == member_id

    def awaiting_join_count(self) -> int:
        """How many members have a parked JoinGroup."""
        return sum(1 for m in self.members.values() if m.awaiting_join)

    def has_all_members_joined(self) -> bool:
        """Whether every member has rejoined and no admitted id is still to come."""
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def not_yet_rejoined(self) -> list[Member]:
        """Members without a parked JoinGroup during the join phase."""
        return [m for m in self.members.values() if not m.awaiting_join]

    def maybe_elect_joined_leader(self) -> bool:
        """Make sure the leader has rejoined; False if no member has."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    def rebalance_timeout_ms(self) -> int:
        """The longest rebalance timeout among the members (0 without members)."""
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # --- protocols -------------------------------------------------------------

    def candidate_protocols(self) -> frozenset[str]:
        """The protocols every member supports."""
        counts = self._protocol_counts()
        return frozenset(name for name, n in counts.items() if n == len(self.members))

    def supports_protocols(self, protocol_type: str, protocols: Sequence[GroupProtocol]) -> bool:
        """Whether a member with these protocols can join.

        An empty group takes any non-empty protocol type and list; otherwise the
        type must match and at least one protocol must be one every member supports.
        """
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(protocols)
        counts = self._protocol_counts()
        return self.protocol_type == protocol_type and any(
            counts.get(p.name, 0) == len(self.members) for p in protocols
        )

    def select_protocol(self) -> str:
        """The protocol for the next generation: each member votes for its favourite.

        Ties go to the protocol the leader prefers, so the choice is deterministic.
        """
        candidates = self.candidate_protocols()
        votes = Counter(m.vote(candidates) for m in self.members.values())
        assert self.leader_id is not None
        preference = [p.name for p in self.members[self.leader_id].protocols]
        return max(votes, key=lambda name: (votes[name], -preference.index(name)))

    def _protocol_counts(self) -> Counter[str]:
        # A member counts once per protocol name, however often it lists it.
        return Counter(
            name for m in self.members.values() for name in {p.name for p in m.protocols}
        )

    # --- generations -----------------------------------------------------------

    def init_next_generation(self, now_ms: int) -> None:
        """Start the next generation: CompletingRebalance, or Empty without members."""
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.transition_to(GroupState.EMPTY, now_ms)
        self.subscribed_topics = self.compute_subscribed_topics()
        self.pending_sync = set(self.members)

    def compute_subscribed_topics(self) -> frozenset[str] | None:
        """Topics the members consume; ``None`` when unknown (not a consumer group)."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return frozenset()
        if self.protocol_name is None:
            return None
        name = self.protocol_name
        return subscribed_topics(m.metadata(name) for m in self.members.values())

    def is_subscribed_to(self, topic: str) -> bool:
        """Whether the group may be consuming ``topic`` (unknown means yes)."""
        return self.subscribed_topics is None or topic in self.subscribed_topics

    def joined_members(self) -> tuple[JoinedMember, ...]:
        """The members and their metadata for the selected protocol, for the leader."""
        assert self.protocol_name is not None
        name = self.protocol_name
        return tuple(
            JoinedMember(m.member_id, m.group_instance_id, m.metadata(name))
            for m in self.members.values()
        )

    # --- persistence -----------------------------------------------------------

    def metadata_value(self) -> GroupMetadataValue:
        """The group as ``__consumer_offsets`` stores it."""
        name = self.protocol_name
        return GroupMetadataValue(
            protocol_type=self.protocol_type,
            generation_id=self.generation_id,
            protocol_name=name,
            leader=self.leader_id,
            current_state_timestamp_ms=self.state_timestamp_ms,
            members=tuple(
                MemberMetadataValue(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout_ms=m.rebalance_timeout_ms,
                    session_timeout_ms=m.session_timeout_ms,
                    subscription=m.metadata(name) if name is not None else b"",
                    assignment=m.assignment,
                )
                for m in self.members.values()
            ),
        )

    @classmethod
    def from_metadata(cls, group_id: str, value: GroupMetadataValue) -> ClassicGroup:
        """Rebuild a group from its stored metadata: Stable with members, else Empty."""
        group = cls(
            group_id=group_id,
            state=GroupState.STABLE if value.members else GroupState.EMPTY,
            state_timestamp_ms=value.current_state_timestamp_ms,
            generation_id=value.generation_id,
            protocol_type=value.protocol_type,
            protocol_name=value.protocol_name,
        )
        for stored in value.members:
            group.add(
                Member(
                    member_id=stored.member_id,
                    group_instance_id=stored.group_instance_id,
                    client_id=stored.client_id,
                    client_host=stored.client_host,
                    rebalance_timeout_ms=stored.rebalance_timeout_ms,
                    session_timeout_ms=stored.session_timeout_ms,
                    protocol_type=value.protocol_type or "",
                    protocols=(GroupProtocol(value.protocol_name or "", stored.subscription),),
                    assignment=stored.assignment,
                )
            )
        if value.leader is not None and value.leader in group.members:
            group.leader_id = value.leader
        group.protocol_type = value.protocol_type
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    # --- offsets ----------------------------------------------------------------

    def expired_offsets(self, now_ms: int, retention_ms: int) -> list[TopicPartition]:
        """Committed offsets whose retention has passed (Kafka's KIP-211 rules).

        * Members present (Stable consumer group with known subscriptions): offsets
          of topics nobody subscribes to expire ``retention_ms`` after their commit.
        * No members: every offset expires ``retention_ms`` after the group became
          Empty (after its commit, for groups that never had members).
        * An offset committed with its own retention expires at that time.
        """
        subscribed: frozenset[str] = frozenset()
        if self.state is GroupState.EMPTY and self.protocol_type is not None:
            base_is_state_time = True
        elif self.protocol_type is None:
            base_is_state_time = False
        elif (
            self.protocol_type == CONSUMER_PROTOCOL_TYPE
            and self.subscribed_topics is not None
            and self.state is GroupState.STABLE
        ):
            base_is_state_time = False
            subscribed = self.subscribed_topics
        else:
            return []
        expired = []
        for tp, committed in self.offsets.items():
            if tp.topic in subscribed:
                continue
            if committed.expire_timestamp_ms is not None:
                due = committed.expire_timestamp_ms <= now_ms
            else:
                base = committed.commit_timestamp_ms
                if base_is_state_time and self.state_timestamp_ms is not None:
                    base = self.state_timestamp_ms
                due = now_ms - base >= retention_ms
            if due:
                expired.append(tp)
        return expired
