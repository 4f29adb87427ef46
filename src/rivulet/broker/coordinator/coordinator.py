"""The classic group coordinator: Kafka's group membership protocol as a pure machine.

Every operation takes the current time (``now_ms``) and returns a
:class:`~rivulet.broker.coordinator.model.CoordinatorResult`: the response, the
parked JoinGroup/SyncGroup requests it completes, and the records to append to
``__consumer_offsets`` before anything is sent. Timers (sessions, the join and sync
phases, the initial rebalance delay, offset retention) are deadlines in a
:class:`~rivulet.broker.coordinator.timers.TimerQueue`; the runtime sleeps until
:meth:`GroupCoordinator.next_deadline` and calls :meth:`GroupCoordinator.poll`.
Nothing here does I/O, reads a clock or draws random numbers (member ids come from
an injected factory), so every rule is testable with a fake clock.

The rules follow Apache Kafka's classic group coordinator:

* A group rebalances (PreparingRebalance) when a member joins, rejoins with
  new metadata, the leader rejoins, or a member leaves or misses its session.
  The join phase ends when every member has rejoined or the longest rebalance
  timeout passes; dynamic members that did not rejoin are dropped, static ones
  (``group.instance.id``) keep their place. The first rebalance of an empty group
  waits ``initial_rebalance_delay_ms`` (extended while new members keep coming, up
  to the rebalance timeout) so a starting fleet lands in one generation.
* Completing the join phase bumps the generation, elects a leader among those who
  rejoined, selects the protocol by vote and answers every parked JoinGroup (the
  leader gets the member list). The leader's SyncGroup carries the assignment;
  the group becomes Stable and every parked SyncGroup gets its part. Members that
  do not sync within the rebalance timeout are dropped.
* Requests carry the member id and generation: an unknown member gets
  UNKNOWN_MEMBER_ID, a stale generation ILLEGAL_GENERATION, a heartbeat during
  the join phase REBALANCE_IN_PROGRESS, a static member replaced by a newer
  instance FENCED_INSTANCE_ID. From JoinGroup v4 a new dynamic member first gets
  MEMBER_ID_REQUIRED with its id.
* Incremental (cooperative) rebalancing needs nothing more from the broker: the
  members' owned partitions travel inside their metadata, which is passed through
  untouched, and a member that revoked partitions rejoins with new metadata,
  which starts the follow-up rebalance.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.config import GroupCoordinatorConfig
from rivulet.broker.coordinator.consumer_protocol import CONSUMER_PROTOCOL_TYPE
from rivulet.broker.coordinator.group import ClassicGroup, Member
from rivulet.broker.coordinator.model import (
    Completion,
    CoordinatorResult,
    GroupDescription,
    GroupListing,
    JoinRequest,
    JoinResponse,
    LeaveResult,
    LeavingMember,
    MemberDescription,
    OffsetCommitRequest,
    OffsetDeleteResult,
    SyncRequest,
    SyncResponse,
    TopicPartition,
)
from rivulet.broker.coordinator.records import (
    CommittedOffset,
    GroupMetadataRecord,
    GroupMetadataValue,
    OffsetCommitRecord,
    Record,
)
from rivulet.broker.coordinator.state import GroupState
from rivulet.broker.coordinator.timers import TimerQueue

__all__ = ["CLASSIC_GROUP_TYPE", "GroupCoordinator", "MemberIdFactory"]

MemberIdFactory = Callable[[str], str]
"""Makes a new member id from a prefix (the client id, or the group instance id).

Kafka's ids are ``<prefix>-<uuid4>``; tests inject a counter.
"""

CLASSIC_GROUP_TYPE = "classic"

T = TypeVar("T")

_E = ErrorCode
_S = GroupState


@dataclass(frozen=True, slots=True)
class _HeartbeatKey:
    """A member's (or pending member's) session deadline."""

    group_id: str
    member_id: str


@dataclass(frozen=True, slots=True)
class _JoinKey:
    """The end of a group's join phase (rebalance timeout or initial delay)."""

    group_id: str


@dataclass(frozen=True, slots=True)
class _SyncKey:
    """The deadline for every member of a new generation to send SyncGroup."""

    group_id: str


@dataclass(frozen=True, slots=True)
class _RetentionKey:
    """The periodic offset-expiry sweep."""


_TimerKey = _HeartbeatKey | _JoinKey | _SyncKey | _RetentionKey


class GroupCoordinator:
    """All classic groups of this broker and their committed offsets.

    >>> ids = iter(range(100))
    >>> coordinator = GroupCoordinator(
    ...     config=GroupCoordinatorConfig(initial_rebalance_delay_ms=0),
    ...     new_member_id=lambda prefix: f"{prefix}-{next(ids)}",
    ...     now_ms=0,
    ... )
    >>> from rivulet.broker.coordinator.model import GroupProtocol
    >>> join = JoinRequest(
    ...     group_id="g", member_id="", client_id="c", session_timeout_ms=10_000,
    ...     rebalance_timeout_ms=10_000, protocol_type="consumer",
    ...     protocols=(GroupProtocol("range", b""),), require_known_member_id=False)
    >>> [c.response.generation_id for c in coordinator.join_group("t1", join, 0).completions]
    [1]
    """

    def __init__(
        self,
        *,
        config: GroupCoordinatorConfig,
        new_member_id: MemberIdFactory,
        now_ms: int,
    ) -> None:
        self._config = config
        self._new_member_id = new_member_id
        self._groups: dict[str, ClassicGroup] = {}
        self._timers: TimerQueue[_TimerKey] = TimerQueue()
        self._now = now_ms
        self._completions: list[Completion] = []
        self._records: list[Record] = []
        self._timers.schedule(_RetentionKey(), now_ms + config.offsets_retention_check_interval_ms)

    # --- reading ------------------------------------------------------------------

    @property
    def config(self) -> GroupCoordinatorConfig:
        """The settings this coordinator runs with."""
        return self._config

    def group(self, group_id: str) -> ClassicGroup | None:
        """The group named ``group_id``, for inspection only (do not mutate it)."""
        return self._groups.get(group_id)

    def group_ids(self) -> list[str]:
        """Every live group's id."""
        return list(self._groups)

    def next_deadline(self) -> int | None:
        """When :meth:`poll` next has work to do, on the caller's clock."""
        return self._timers.next_deadline()

    def pending_tokens(self) -> set[Hashable]:
        """Tokens of every parked JoinGroup and SyncGroup (each answered exactly once)."""
        tokens: set[Hashable] = set()
        for group in self._groups.values():
            for member in group.members.values():
                if member.join_token is not None:
                    tokens.add(member.join_token)
                if member.sync_token is not None:
                    tokens.add(member.sync_token)
        return tokens

    # --- timers -------------------------------------------------------------------

    def poll(self, now_ms: int) -> CoordinatorResult[None]:
        """Fire every timer due at ``now_ms``."""
        self._reset()
        while (due := self._timers.pop_due(now_ms)) is not None:
            deadline, key = due
            # Each timer acts as of its own deadline, so a late wake-up (a busy loop,
            # a coarse test clock) reschedules exactly as an on-time one would.
            self._now = max(self._now, deadline)
            match key:
                case _HeartbeatKey(group_id, member_id):
                    self._on_session_expired(group_id, member_id)
                case _JoinKey(group_id):
                    self._on_join_deadline(group_id)
                case _SyncKey(group_id):
                    self._on_sync_deadline(group_id)
                case _RetentionKey():
                    self._expire_offsets()
        self._now = max(self._now, now_ms)
        return self._finish(None)

    # --- JoinGroup ------------------------------------------------------------------

    def join_group(
        self, token: Hashable, request: JoinRequest, now_ms: int
    ) -> CoordinatorResult[None]:
        """Handle a JoinGroup. Its answer, now or later, is a completion for ``token``."""
        self._begin(now_ms)
        self._join(token, request)
        return self._finish(None)

    def _join(self, token: Hashable, req: JoinRequest) -> None:
        cfg = self._config
        if not req.group_id:
            self._answer_join(token, _E.invalid_group_id, req.member_id)
            return
        if not cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms:
            self._answer_join(token, _E.invalid_session_timeout, req.member_id)
            return
        group = self._groups.get(req.group_id)
        if group is None:
            if req.member_id:
                self._answer_join(token, _E.unknown_member_id, req.member_id)
                return
            group = self._groups[req.group_id] = ClassicGroup(
                req.group_id, state_timestamp_ms=self._now
            )
        if not self._accepts_joining_member(group, req.member_id):
            self._drop(group, req.member_id)
            self._answer_join(token, _E.group_max_size_reached, "")
        elif not req.member_id:
            self._join_new_member(token, group, req)
        else:
            self._join_known_member(token, group, req)

    def _accepts_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        limit = self._config.max_group_size
        member = group.members.get(member_id)
        if group.state is _S.PREPARING_REBALANCE:
            # Counting members that rejoined (not all members) lets the last members
            # to rejoin be the ones turned away when the limit was lowered.
            return (member is not None and member.awaiting_join) or (
                group.awaiting_join_count() < limit
            )
        if group.state in (_S.COMPLETING_REBALANCE, _S.STABLE):
            return member is not None or len(group.members) < limit
        return True

    def _join_new_member(self, token: Hashable, group: ClassicGroup, req: JoinRequest) -> None:
        if not group.supports_protocols(req.protocol_type, req.protocols):
            self._answer_join(token, _E.inconsistent_group_protocol, "")
            return
        instance_id = req.group_instance_id
        member_id = self._new_member_id(instance_id if instance_id is not None else req.client_id)
        assert member_id not in group.members, f"member id factory reused {member_id}"
        assert member_id not in group.pending_members, f"member id factory reused {member_id}"
        if instance_id is not None:
            if instance_id in group.static_members:
                self._replace_static_member(token, group, req, member_id)
            else:
                self._add_member_and_rebalance(token, group, req, member_id)
        elif req.require_known_member_id:
            # The member must come back with this id; until then it is "pending" and
            # holds up the join phase for at most one session timeout.
            group.pending_members.add(member_id)
            self._schedule_session(group, member_id, req.session_timeout_ms)
            self._answer_join(token, _E.member_id_required, member_id)
        else:
            self._add_member_and_rebalance(token, group, req, member_id)

    def _join_known_member(self, token: Hashable, group: ClassicGroup, req: JoinRequest) -> None:
        member_id = req.member_id
        if not group.supports_protocols(req.protocol_type, req.protocols):
            self._answer_join(token, _E.inconsistent_group_protocol, member_id)
            return
        if member_id in group.pending_members and req.group_instance_id is None:
            self._add_member_and_rebalance(token, group, req, member_id)
            return
        error = group.validate_member(member_id, req.group_instance_id)
        if error is not _E.none:
            self._answer_join(token, error, member_id)
            return
        member = group.members[member_id]
        if group.state is _S.PREPARING_REBALANCE:
            self._update_member_and_rebalance(token, group, member, req)
        elif group.state is _S.COMPLETING_REBALANCE:
            if member.matches(req.protocols):
                # Same metadata: the member most likely lost our JoinGroup answer.
                self._complete(token, self._generation_answer(group, member_id, with_members=True))
            else:
                self._update_member_and_rebalance(token, group, member, req)
        else:
            assert group.state is _S.STABLE
            # The leader's rejoin always rebalances: it is how a consumer leader
            # reacts to changes that do not show in metadata (new partitions).
            if group.is_leader(member_id) or not member.matches(req.protocols):
                self._update_member_and_rebalance(token, group, member, req)
            else:
                self._complete(token, self._generation_answer(group, member_id, with_members=False))

    def _add_member_and_rebalance(
        self, token: Hashable, group: ClassicGroup, req: JoinRequest, member_id: str
    ) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=req.group_instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            rebalance_timeout_ms=req.rebalance_timeout_ms,
            session_timeout_ms=req.session_timeout_ms,
            protocol_type=req.protocol_type,
            protocols=req.protocols,
            join_token=token,
            is_new=True,
        )
        if group.initial_delay is not None:
            group.new_member_added = True
        group.add(member)
        # A new member cannot heartbeat while its JoinGroup is parked, and a client
        # that gave up and retried would leave a ghost behind: bound the wait.
        self._schedule_session(group, member_id, self._config.new_member_join_timeout_ms)
        self._maybe_prepare_rebalance_or_complete_join(group)

    def _update_member_and_rebalance(
        self, token: Hashable, group: ClassicGroup, member: Member, req: JoinRequest
    ) -> None:
        if member.join_token is not None:
            # A client has one JoinGroup in flight; an older one was abandoned.
            self._answer_join(member.join_token, _E.rebalance_in_progress, member.member_id)
        member.protocols = req.protocols
        member.rebalance_timeout_ms = req.rebalance_timeout_ms
        member.session_timeout_ms = req.session_timeout_ms
        member.join_token = token
        self._maybe_prepare_rebalance_or_complete_join(group)

    def _replace_static_member(
        self, token: Hashable, group: ClassicGroup, req: JoinRequest, member_id: str
    ) -> None:
        assert req.group_instance_id is not None
        previous_leader = group.leader_id or ""
        old, new = group.replace_static_member(req.group_instance_id, member_id)
        # The old instance is gone (restarted); anything it still waits for is fenced.
        self._answer_join(old.join_token, _E.fenced_instance_id, old.member_id)
        self._complete(old.sync_token, SyncResponse(error=_E.fenced_instance_id))
        self._timers.cancel(_HeartbeatKey(group.group_id, old.member_id))
        self._schedule_session(group, new.member_id, new.session_timeout_ms)
        new.protocols = req.protocols
        new.rebalance_timeout_ms = req.rebalance_timeout_ms
        new.session_timeout_ms = req.session_timeout_ms
        new.join_token = token
        if group.state is _S.STABLE:
            if group.select_protocol() != group.protocol_name:
                self._prepare_rebalance(group)
                return
            # A static member restarting with compatible metadata keeps its
            # assignment and the group stays Stable: no rebalance.
            new.join_token = None
            self._records.append(GroupMetadataRecord(group.group_id, group.metadata_value()))
            if req.supports_skip_assignment:
                is_leader = group.is_leader(member_id)
                answer = self._generation_answer(group, member_id, with_members=is_leader)
                self._complete(
                    token,
                    JoinResponse(
                        error=_E.none,
                        member_id=member_id,
                        generation_id=answer.generation_id,
                        protocol_type=answer.protocol_type,
                        protocol_name=answer.protocol_name,
                        leader=answer.leader,
                        members=answer.members,
                        skip_assignment=is_leader,
                    ),
                )
            else:
                # Before v9 a rejoining leader would recompute the assignment; naming
                # the previous leader id keeps it a follower that just syncs.
                answer = self._generation_answer(group, member_id, with_members=False)
                self._complete(
                    token,
                    JoinResponse(
                        error=_E.none,
                        member_id=member_id,
                        generation_id=answer.generation_id,
                        protocol_type=answer.protocol_type,
                        protocol_name=answer.protocol_name,
                        leader=previous_leader,
                    ),
                )
        elif group.state is _S.COMPLETING_REBALANCE:
            # The leader may already be assigning to the old member id.
            self._prepare_rebalance(group)
        else:
            assert group.state is _S.PREPARING_REBALANCE
            self._maybe_complete_join_phase(group)

    def _generation_answer(
        self, group: ClassicGroup, member_id: str, *, with_members: bool
    ) -> JoinResponse:
        return JoinResponse(
            error=_E.none,
            member_id=member_id,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader_id or "",
            members=group.joined_members() if with_members else (),
        )

    # --- rebalancing ----------------------------------------------------------------

    def _maybe_prepare_rebalance_or_complete_join(self, group: ClassicGroup) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group)
        else:
            self._maybe_complete_join_phase(group)

    def _prepare_rebalance(self, group: ClassicGroup) -> None:
        if group.state is _S.COMPLETING_REBALANCE:
            # Members waiting for the old generation's assignment must rejoin.
            self._reset_and_propagate_assignment_error(group, _E.rebalance_in_progress)
        group.pending_sync.clear()
        self._timers.cancel(_SyncKey(group.group_id))
        initial = group.state is _S.EMPTY
        group.transition_to(_S.PREPARING_REBALANCE, self._now)
        delay = self._config.initial_rebalance_delay_ms
        if initial and delay > 0:
            group.initial_delay = (delay, max(group.rebalance_timeout_ms() - delay, 0))
            group.new_member_added = False
            self._timers.schedule(_JoinKey(group.group_id), self._now + delay)
        elif group.has_all_members_joined():
            self._complete_join(group)
        else:
            self._schedule_join_deadline(group)

    def _maybe_complete_join_phase(self, group: ClassicGroup) -> None:
        if (
            group.state is _S.PREPARING_REBALANCE
            and group.initial_delay is None
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        self._timers.cancel(_JoinKey(group.group_id))
        group.initial_delay = None
        group.new_member_added = False
        for member in group.not_yet_rejoined():
            # Static members keep their place (and partitions) across a restart.
            if member.group_instance_id is None:
                self._remove_member(group, member.member_id)
        if group.members and not group.maybe_elect_joined_leader():
            # Only static members that have not rejoined are left: wait for them (or
            # for their sessions to end) for another rebalance timeout.
            self._schedule_join_deadline(group)
            return
        group.init_next_generation(self._now)
        if group.state is _S.EMPTY:
            self._records.append(GroupMetadataRecord(group.group_id, group.metadata_value()))
            return
        for member in group.members.values():
            self._complete(
                member.join_token,
                self._generation_answer(
                    group, member.member_id, with_members=group.is_leader(member.member_id)
                ),
            )
            member.join_token = None
            member.is_new = False
            self._schedule_session(group, member.member_id, member.session_timeout_ms)
        self._timers.schedule(_SyncKey(group.group_id), self._now + group.rebalance_timeout_ms())

    def _schedule_join_deadline(self, group: ClassicGroup) -> None:
        # At least 1 ms, so that a zero timeout cannot make poll() spin.
        deadline = self._now + max(group.rebalance_timeout_ms(), 1)
        self._timers.schedule(_JoinKey(group.group_id), deadline)

    def _on_join_deadline(self, group_id: str) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state is not _S.PREPARING_REBALANCE:
            return
        if group.initial_delay is not None:
            delay, remaining = group.initial_delay
            if group.new_member_added and remaining > 0:
                # Members keep arriving: wait a little longer, within the rebalance timeout.
                group.new_member_added = False
                next_delay = min(self._config.initial_rebalance_delay_ms, remaining)
                group.initial_delay = (next_delay, max(remaining - delay, 0))
                self._timers.schedule(_JoinKey(group_id), self._now + next_delay)
                return
        self._complete_join(group)

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error is _E.none
        for member in group.members.values():
            if member.sync_token is None:
                continue
            self._complete(
                member.sync_token,
                SyncResponse(
                    error=error,
                    protocol_type=group.protocol_type if ok else None,
                    protocol_name=group.protocol_name if ok else None,
                    assignment=member.assignment,
                ),
            )
            member.sync_token = None
            self._schedule_session(group, member.member_id, member.session_timeout_ms)

    # --- SyncGroup ------------------------------------------------------------------

    def sync_group(
        self, token: Hashable, request: SyncRequest, now_ms: int
    ) -> CoordinatorResult[None]:
        """Handle a SyncGroup. Its answer, now or later, is a completion for ``token``."""
        self._begin(now_ms)
        self._sync(token, request)
        return self._finish(None)

    def _sync(self, token: Hashable, req: SyncRequest) -> None:
        if not req.group_id:
            self._complete(token, SyncResponse(error=_E.invalid_group_id))
            return
        group = self._groups.get(req.group_id)
        if group is None:
            self._complete(token, SyncResponse(error=_E.unknown_member_id))
            return
        error = group.validate_member(req.member_id, req.group_instance_id)
        if error is _E.none and req.generation_id != group.generation_id:
            error = _E.illegal_generation
        if error is _E.none and (
            _inconsistent(req.protocol_type, group.protocol_type)
            or _inconsistent(req.protocol_name, group.protocol_name)
        ):
            error = _E.inconsistent_group_protocol
        if error is _E.none and group.state is _S.PREPARING_REBALANCE:
            error = _E.rebalance_in_progress
        if error is not _E.none:
            self._complete(token, SyncResponse(error=error))
            return
        member = group.members[req.member_id]
        self._remove_pending_sync(group, member.member_id)
        if group.state is _S.STABLE:
            self._schedule_session(group, member.member_id, member.session_timeout_ms)
            self._complete(
                token,
                SyncResponse(
                    error=_E.none,
                    protocol_type=group.protocol_type,
                    protocol_name=group.protocol_name,
                    assignment=member.assignment,
                ),
            )
            return
        assert group.state is _S.COMPLETING_REBALANCE
        if member.sync_token is not None:
            self._complete(member.sync_token, SyncResponse(error=_E.rebalance_in_progress))
        member.sync_token = token
        if group.is_leader(member.member_id):
            for m in group.members.values():
                # Members the leader left out get an empty assignment, as in Kafka.
                m.assignment = req.assignments.get(m.member_id, b"")
            group.transition_to(_S.STABLE, self._now)
            self._records.append(GroupMetadataRecord(group.group_id, group.metadata_value()))
            self._propagate_assignment(group, _E.none)

    def _remove_pending_sync(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            self._timers.cancel(_SyncKey(group.group_id))

    def _on_sync_deadline(self, group_id: str) -> None:
        group = self._groups.get(group_id)
        if group is None or group.state not in (_S.COMPLETING_REBALANCE, _S.STABLE):
            return
        if group.pending_sync:
            for member_id in sorted(group.pending_sync):
                self._remove_member(group, member_id)
            self._prepare_rebalance(group)

    # --- Heartbeat and LeaveGroup -------------------------------------------------------

    def heartbeat(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        now_ms: int,
        group_instance_id: str | None = None,
    ) -> CoordinatorResult[ErrorCode]:
        """Handle a Heartbeat: keep the member's session alive, report rebalances."""
        self._begin(now_ms)
        return self._finish(self._heartbeat(group_id, member_id, generation_id, group_instance_id))

    def _heartbeat(
        self, group_id: str, member_id: str, generation_id: int, instance_id: str | None
    ) -> ErrorCode:
        if not group_id:
            return _E.invalid_group_id
        group = self._groups.get(group_id)
        if group is None:
            return _E.unknown_member_id
        error = group.validate_member(member_id, instance_id)
        if error is not _E.none:
            return error
        if generation_id != group.generation_id:
            return _E.illegal_generation
        member = group.members[member_id]
        self._schedule_session(group, member_id, member.session_timeout_ms)
        if group.state is _S.PREPARING_REBALANCE:
            return _E.rebalance_in_progress
        return _E.none

    def leave_group(
        self, group_id: str, members: Sequence[LeavingMember], now_ms: int
    ) -> CoordinatorResult[LeaveResult]:
        """Handle a LeaveGroup for one member (v0-2) or several (v3+).

        A member named only by its group instance id (empty member id) is removed
        whatever its member id: that is how tools evict a static member.
        """
        self._begin(now_ms)
        return self._finish(self._leave(group_id, members))

    def _leave(self, group_id: str, leaving: Sequence[LeavingMember]) -> LeaveResult:
        if not group_id:
            return LeaveResult(_E.invalid_group_id)
        group = self._groups.get(group_id)
        if group is None:
            return LeaveResult(_E.none, tuple(_E.unknown_member_id for _ in leaving))
        errors = []
        anyone_left = False
        for who in leaving:
            if not who.member_id:
                target = (
                    group.static_members.get(who.group_instance_id)
                    if who.group_instance_id is not None
                    else None
                )
                error = _E.none if target is not None else _E.unknown_member_id
            elif who.member_id in group.pending_members:
                target, error = who.member_id, _E.none
            else:
                error = group.validate_member(who.member_id, who.group_instance_id)
                target = who.member_id
            if error is _E.none and target is not None:
                self._remove_member(group, target)
                anyone_left = True
            errors.append(error)
        if anyone_left:
            self._after_member_removed(group)
        return LeaveResult(_E.none, tuple(errors))

    def _on_session_expired(self, group_id: str, member_id: str) -> None:
        group = self._groups.get(group_id)
        if group is None:
            return
        member = group.members.get(member_id)
        if member is not None and member.has_satisfied_heartbeat():
            return
        if member is not None or member_id in group.pending_members:
            self._drop(group, member_id)

    def _drop(self, group: ClassicGroup, member_id: str) -> None:
        """Remove a member or pending member and let the group react."""
        if member_id in group.members or member_id in group.pending_members:
            self._remove_member(group, member_id)
            self._after_member_removed(group)

    def _remove_member(self, group: ClassicGroup, member_id: str) -> None:
        self._timers.cancel(_HeartbeatKey(group.group_id, member_id))
        member = group.remove(member_id)
        if member is None:
            return
        # A parked request of a removed member is answered so the client rejoins.
        self._answer_join(member.join_token, _E.unknown_member_id, "")
        self._complete(member.sync_token, SyncResponse(error=_E.unknown_member_id))

    def _after_member_removed(self, group: ClassicGroup) -> None:
        if group.state in (_S.STABLE, _S.COMPLETING_REBALANCE):
            self._prepare_rebalance(group)
        else:
            self._maybe_complete_join_phase(group)

    # --- offsets -----------------------------------------------------------------------

    def commit_offsets(
        self, request: OffsetCommitRequest, now_ms: int
    ) -> CoordinatorResult[dict[TopicPartition, ErrorCode]]:
        """Handle an OffsetCommit; one error per partition.

        The caller has already answered partitions of unknown topics; the records
        must be appended before the response is sent.
        """
        self._begin(now_ms)
        return self._finish(self._commit(request))

    def _commit(self, req: OffsetCommitRequest) -> dict[TopicPartition, ErrorCode]:
        group = self._groups.get(req.group_id)
        if group is None:
            if req.generation_id >= 0:
                return dict.fromkeys(req.offsets, req.unknown_group_error)
            # A consumer that assigns its own partitions (or a tool) keeps its offsets
            # in a group that has no members: a "simple" group.
            group = self._groups[req.group_id] = ClassicGroup(
                req.group_id, state_timestamp_ms=self._now
            )
        error = self._validate_commit(group, req)
        if error is not _E.none:
            return dict.fromkeys(req.offsets, error)
        member = group.members.get(req.member_id)
        if member is not None:
            self._schedule_session(group, member.member_id, member.session_timeout_ms)
        expire = self._now + req.retention_time_ms if req.retention_time_ms >= 0 else None
        limit = self._config.offset_metadata_max_bytes
        errors = {}
        for tp, entry in req.offsets.items():
            metadata = entry.metadata or ""
            if len(metadata.encode()) > limit:
                errors[tp] = _E.offset_metadata_too_large
                continue
            committed = CommittedOffset(
                offset=entry.offset,
                leader_epoch=entry.leader_epoch,
                metadata=metadata,
                commit_timestamp_ms=self._now,
                expire_timestamp_ms=expire,
            )
            group.offsets[tp] = committed
            self._records.append(
                OffsetCommitRecord(group.group_id, tp.topic, tp.partition, committed)
            )
            errors[tp] = _E.none
        return errors

    def _validate_commit(self, group: ClassicGroup, req: OffsetCommitRequest) -> ErrorCode:
        if req.generation_id < 0 and group.state is _S.EMPTY:
            return _E.none
        if req.generation_id >= 0 or req.member_id or req.group_instance_id is not None:
            error = group.validate_member(req.member_id, req.group_instance_id)
            if error is not _E.none:
                return error
            if req.generation_id != group.generation_id:
                return _E.illegal_generation
        else:
            # A commit without member and generation is only for groups with no members.
            return _E.unknown_member_id
        if group.state is _S.COMPLETING_REBALANCE:
            # The member has its new generation but not yet its assignment.
            return _E.rebalance_in_progress
        return _E.none

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None
    ) -> dict[TopicPartition, CommittedOffset | None]:
        """Committed offsets of ``partitions`` (``None``: every committed partition).

        A partition with no committed offset maps to ``None`` (the handler answers
        offset -1), as does every partition of an unknown group.
        """
        group = self._groups.get(group_id)
        offsets = group.offsets if group is not None else {}
        if partitions is None:
            return dict(offsets)
        return {tp: offsets.get(tp) for tp in partitions}

    def delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition], now_ms: int
    ) -> CoordinatorResult[OffsetDeleteResult]:
        """Handle an OffsetDelete.

        Offsets of an empty group can always be deleted; for a consumer group with
        members, not those of topics it subscribes to (GROUP_SUBSCRIBED_TO_TOPIC).
        """
        self._begin(now_ms)
        return self._finish(self._delete_offsets(group_id, partitions))

    def _delete_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition]
    ) -> OffsetDeleteResult:
        group = self._groups.get(group_id)
        if group is None:
            return OffsetDeleteResult(_E.group_id_not_found)
        if group.state is not _S.EMPTY and group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return OffsetDeleteResult(_E.non_empty_group)
        errors = {}
        for tp in partitions:
            if group.state is not _S.EMPTY and group.is_subscribed_to(tp.topic):
                errors[tp] = _E.group_subscribed_to_topic
                continue
            errors[tp] = _E.none
            if group.offsets.pop(tp, None) is not None:
                self._records.append(OffsetCommitRecord(group_id, tp.topic, tp.partition, None))
        return OffsetDeleteResult(_E.none, errors)

    def delete_topic_offsets(self, topics: Collection[str], now_ms: int) -> CoordinatorResult[None]:
        """Topics were deleted: every group forgets its offsets for them.

        Without this, a topic re-created under the same name would hand its
        consumers positions from the old topic (Kafka forgets them too).
        """
        self._begin(now_ms)
        names = set(topics)
        for group in list(self._groups.values()):
            gone = [tp for tp in group.offsets if tp.topic in names]
            if gone:
                self._forget_offsets(group, gone)
                if group.state is _S.EMPTY and not group.offsets and not group.pending_members:
                    self._delete_group(group)
        return self._finish(None)

    def _forget_offsets(self, group: ClassicGroup, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            del group.offsets[tp]
            self._records.append(OffsetCommitRecord(group.group_id, tp.topic, tp.partition, None))

    def _expire_offsets(self) -> None:
        retention = self._config.offsets_retention_ms
        for group in list(self._groups.values()):
            self._forget_offsets(group, group.expired_offsets(self._now, retention))
            # A group with nothing left to remember goes away (Kafka does the same).
            if group.state is _S.EMPTY and not group.offsets and not group.pending_members:
                self._delete_group(group)
        self._timers.schedule(
            _RetentionKey(), self._now + self._config.offsets_retention_check_interval_ms
        )

    # --- administration -----------------------------------------------------------------

    def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        """DescribeGroups: state, protocol and members; unknown groups are Dead."""
        return [self._describe(group_id) for group_id in group_ids]

    def _describe(self, group_id: str) -> GroupDescription:
        group = self._groups.get(group_id)
        if group is None:
            return GroupDescription(group_id, _E.none, _S.DEAD, "", "")
        stable = group.state is _S.STABLE and group.protocol_name is not None
        name = group.protocol_name if stable else None
        members = tuple(
            MemberDescription(
                member_id=m.member_id,
                group_instance_id=m.group_instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                metadata=m.metadata(name) if name is not None else b"",
                assignment=m.assignment if name is not None else b"",
            )
            for m in group.members.values()
        )
        return GroupDescription(
            group_id, _E.none, group.state, group.protocol_type or "", name or "", members
        )

    def list_groups(
        self,
        states: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[GroupListing]:
        """ListGroups, optionally filtered by state names and group types.

        Filters are case-insensitive; an empty filter means "all". Every group here
        is of type ``classic``.
        """
        if types and CLASSIC_GROUP_TYPE not in {t.casefold() for t in types}:
            return []
        wanted = {GroupState.parse(s) for s in states} if states else None
        return [
            GroupListing(g.group_id, g.protocol_type or "", g.state)
            for g in self._groups.values()
            if wanted is None or g.state in wanted
        ]

    def delete_groups(
        self, group_ids: Sequence[str], now_ms: int
    ) -> CoordinatorResult[list[tuple[str, ErrorCode]]]:
        """DeleteGroups: only groups without members, with all their offsets."""
        self._begin(now_ms)
        results = []
        for group_id in group_ids:
            group = self._groups.get(group_id)
            if group is None:
                error = _E.group_id_not_found
            elif group.state is not _S.EMPTY:
                error = _E.non_empty_group
            else:
                self._delete_group(group)
                error = _E.none
            results.append((group_id, error))
        return self._finish(results)

    def _delete_group(self, group: ClassicGroup) -> None:
        group_id = group.group_id
        for tp in group.offsets:
            self._records.append(OffsetCommitRecord(group_id, tp.topic, tp.partition, None))
        group.offsets.clear()
        self._records.append(GroupMetadataRecord(group_id, None))
        for member_id in list(group.pending_members):
            self._remove_member(group, member_id)
        self._timers.cancel(_JoinKey(group_id))
        self._timers.cancel(_SyncKey(group_id))
        group.transition_to(_S.DEAD, self._now)
        del self._groups[group_id]

    # --- recovery -----------------------------------------------------------------------

    def load(self, records: Iterable[Record], now_ms: int) -> None:
        """Rebuild groups and offsets by replaying ``__consumer_offsets`` in log order.

        Call once, before any other operation. Loaded groups with members are
        Stable in their stored generation; members that do not heartbeat within
        their session timeout are removed as usual.
        """
        if self._groups:
            raise RuntimeError("load() must run before the coordinator serves requests")
        self._now = now_ms
        metadata: dict[str, GroupMetadataValue | None] = {}
        offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        for record in records:
            if isinstance(record, OffsetCommitRecord):
                tp = TopicPartition(record.topic, record.partition)
                group_offsets = offsets.setdefault(record.group_id, {})
                if record.value is None:
                    group_offsets.pop(tp, None)
                else:
                    group_offsets[tp] = record.value
            else:
                metadata[record.group_id] = record.value
        for group_id in dict.fromkeys([*metadata, *offsets]):
            value = metadata.get(group_id)
            group_offsets = offsets.get(group_id, {})
            if value is None and not group_offsets:
                continue
            group = (
                ClassicGroup.from_metadata(group_id, value)
                if value is not None
                else ClassicGroup(group_id)
            )
            group.offsets = group_offsets
            self._groups[group_id] = group
            for member in group.members.values():
                self._schedule_session(group, member.member_id, member.session_timeout_ms)

    # --- plumbing -----------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        self._now = max(self._now, now_ms)
        self._reset()

    def _reset(self) -> None:
        self._completions = []
        self._records = []

    def _finish(self, response: T) -> CoordinatorResult[T]:
        result = CoordinatorResult(response, tuple(self._completions), tuple(self._records))
        self._completions = []
        self._records = []
        return result

    def _complete(self, token: Hashable | None, response: JoinResponse | SyncResponse) -> None:
        if token is not None:
            self._completions.append(Completion(token, response))

    def _answer_join(self, token: Hashable | None, error: ErrorCode, member_id: str) -> None:
        self._complete(token, JoinResponse(error=error, member_id=member_id))

    def _schedule_session(self, group: ClassicGroup, member_id: str, timeout_ms: int) -> None:
        self._timers.schedule(_HeartbeatKey(group.group_id, member_id), self._now + timeout_ms)


def _inconsistent(requested: str | None, current: str | None) -> bool:
    return requested is not None and current is not None and requested != current
