"""Random consumers against the group coordinator, with its invariants checked each step.

Simulated clients join, sync, heartbeat, commit, leave and crash in any order while
the clock jumps; each one reacts to answers the way an eager consumer does (it
gives up its partitions when told a rebalance is on). After every step:

* the group's structure agrees with its state (members, leader, static ids,
  parked requests only where the state allows them, valid state edges);
* every JoinGroup/SyncGroup is either parked in the coordinator or answered,
  exactly once;
* within one generation no partition is owned by two clients, and a Stable
  group's stored assignments are disjoint.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator import (
    GroupState,
    JoinResponse,
    LeavingMember,
    SyncResponse,
    TopicPartition,
)

from .group_harness import Harness

E = ErrorCode
S = GroupState
PARTITIONS = 6
SLOTS = 5
REBALANCE_MS = 10_000

PROTOCOL_CHOICES = [
    (("range", b"v1"),),
    (("range", b"v2"),),
    (("range", b"v1"), ("roundrobin", b"v1")),
    (("roundrobin", b"v1"),),
]


@dataclass
class Client:
    """What one consumer process knows."""

    instance_id: str | None
    alive: bool = False
    protocols: tuple[tuple[str, bytes], ...] = PROTOCOL_CHOICES[0]
    member_id: str = ""
    generation: int = -1
    join_token: Hashable | None = None
    sync_token: Hashable | None = None
    members: tuple[str, ...] = ()  # filled when this client leads
    is_leader: bool = False
    joined: bool = False  # has a successful JoinGroup answer for ``generation``
    owned: frozenset[int] = field(default_factory=frozenset)
    owned_generation: int = -1

    def revoke(self) -> None:
        self.owned = frozenset()
        self.owned_generation = -1


def assignment_bytes(partitions: list[int]) -> bytes:
    return bytes(sorted(partitions))


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness()
        self.clients: list[Client] = []
        self.issued: set[Hashable] = set()
        self.owner: dict[Hashable, int] = {}  # live token -> client slot
        self.last_generation = 0

    @initialize(
        delay=st.sampled_from([0, 3_000]),
        statics=st.sets(st.integers(0, SLOTS - 1), max_size=2),
        max_size=st.sampled_from([3, 100]),
    )
    def setup(self, delay: int, statics: set[int], max_size: int) -> None:
        self.h = Harness(initial_rebalance_delay_ms=delay, max_group_size=max_size)
        self.clients = [
            Client(instance_id=f"static-{i}" if i in statics else None) for i in range(SLOTS)
        ]

    # --- delivering answers -------------------------------------------------------

    def deliver(self) -> None:
        """Hand every new answer to the client still waiting for it."""
        for token in list(self.owner):
            answer = self.h.answers.get(token)
            if answer is None:
                continue
            slot = self.owner.pop(token)
            client = self.clients[slot]
            if isinstance(answer, JoinResponse):
                client.join_token = None
                self.on_join(client, answer)
            else:
                assert isinstance(answer, SyncResponse)
                client.sync_token = None
                self.on_sync(client, answer)

    def on_join(self, client: Client, answer: JoinResponse) -> None:
        if answer.error is E.none:
            client.member_id = answer.member_id
            client.generation = answer.generation_id
            client.is_leader = answer.leader == answer.member_id and not answer.skip_assignment
            client.members = tuple(m.member_id for m in answer.members)
            client.joined = True
        elif answer.error is E.member_id_required:
            client.member_id = answer.member_id
        elif answer.error in (E.unknown_member_id, E.fenced_instance_id):
            client.member_id = ""
            client.joined = False

    def on_sync(self, client: Client, answer: SyncResponse) -> None:
        if answer.error is E.none:
            client.owned = frozenset(answer.assignment)
            client.owned_generation = client.generation
        else:
            client.revoke()
            client.joined = False
            if answer.error in (E.unknown_member_id, E.fenced_instance_id):
                client.member_id = ""

    def track(self, token: Hashable, slot: int) -> None:
        self.issued.add(token)
        self.owner[token] = slot
        self.deliver()

    # --- client actions ------------------------------------------------------------

    slots = st.integers(0, SLOTS - 1)

    @rule(
        slot=slots,
        protocols=st.sampled_from(PROTOCOL_CHOICES),
        v4=st.booleans(),
        session=st.sampled_from([6_000, 10_000]),
    )
    def start(
        self, slot: int, protocols: tuple[tuple[str, bytes], ...], v4: bool, session: int
    ) -> None:
        """A process starts in the slot, or a live one rejoins with new metadata."""
        self.join(slot, protocols, v4, session)

    @rule(slot=slots)
    def poll(self, slot: int) -> None:
        """What a live consumer's poll loop does next: join, sync or heartbeat."""
        client = self.clients[slot]
        if not client.alive or client.join_token is not None or client.sync_token is not None:
            return
        if not client.joined:
            self.join(slot, client.protocols, v4=True, session=10_000)
        elif client.owned_generation != client.generation:
            self.sync(slot)
        else:
            self.heartbeat(slot)

    @rule(rounds=st.integers(1, 4), step=st.sampled_from([0, 1_000, 3_000]))
    def everyone_polls(self, rounds: int, step: int) -> None:
        """All live consumers run their poll loops for a while."""
        for _ in range(rounds):
            for slot in range(SLOTS):
                self.poll(slot)
            if step:
                self.advance(step)

    @rule(slot=slots)
    def commit(self, slot: int) -> None:
        client = self.clients[slot]
        if not client.member_id:
            return
        offsets = {TopicPartition("t", p): 1 for p in client.owned}
        errors = self.h.commit(
            offsets,
            member_id=client.member_id,
            generation_id=client.generation,
            instance_id=client.instance_id,
        )
        self.deliver()
        if client.generation >= 0 and any(e is E.none for e in errors.values()):
            # A member's commit is accepted only in the group's current generation.
            group = self.h.coordinator.group("g")
            assert group is not None
            assert client.generation == group.generation_id

    @rule(ms=st.sampled_from([1, 500, 3_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)
        self.deliver()

    @rule(
        action=st.sampled_from(["sync", "heartbeat", "retry", "leave", "crash", "evict", "pause"]),
        slot=slots,
    )
    def misbehave(self, action: str, slot: int) -> None:
        """Out-of-turn requests, departures, crashes and long pauses."""
        if action == "sync":
            self.sync(slot)
        elif action == "heartbeat":
            self.heartbeat(slot)
        elif action == "retry":
            # The client timed out waiting for its JoinGroup and sends another.
            client = self.clients[slot]
            if client.join_token is not None:
                del self.owner[client.join_token]
                client.join_token = None
                self.join(slot, client.protocols, v4=True, session=10_000)
        elif action == "leave":
            self.leave(slot)
        elif action == "crash":
            self.forget(slot)  # SIGKILL: no LeaveGroup, the session has to expire
        elif action == "evict":
            self.h.leave(*(LeavingMember("", f"static-{i}") for i in range(SLOTS)))
            self.deliver()
            for other, client in enumerate(self.clients):
                if client.instance_id is not None:
                    self.forget(other)
        else:
            self.h.advance(12_000)  # longer than any session
            self.deliver()

    # --- client requests ---------------------------------------------------------------

    def join(
        self, slot: int, protocols: tuple[tuple[str, bytes], ...], v4: bool, session: int
    ) -> None:
        client = self.clients[slot]
        if client.join_token is not None or client.sync_token is not None:
            return
        client.alive = True
        client.protocols = protocols
        client.revoke()  # eager: give everything up before rejoining
        client.joined = False
        token = self.h.join(
            client.member_id,
            instance_id=client.instance_id,
            client_id=f"client{slot}",
            protocols=protocols,
            session_ms=session,
            rebalance_ms=REBALANCE_MS,
            require_known_member_id=v4,
        )
        client.join_token = token
        self.track(token, slot)

    def sync(self, slot: int) -> None:
        client = self.clients[slot]
        if not client.joined or client.sync_token is not None or client.join_token is not None:
            return
        assignments = {}
        if client.is_leader and client.members:
            for i, member in enumerate(client.members):
                mine = [p for p in range(PARTITIONS) if p % len(client.members) == i]
                assignments[member] = assignment_bytes(mine)
        token = self.h.sync(
            client.member_id,
            client.generation,
            assignments,
            instance_id=client.instance_id,
        )
        client.sync_token = token
        self.track(token, slot)

    def heartbeat(self, slot: int) -> None:
        client = self.clients[slot]
        if not client.member_id:
            return
        error = self.h.heartbeat(
            client.member_id, client.generation, instance_id=client.instance_id
        )
        self.deliver()
        if error is not E.none:
            client.revoke()
            client.joined = False
        if error in (E.unknown_member_id, E.fenced_instance_id):
            client.member_id = ""

    def leave(self, slot: int) -> None:
        client = self.clients[slot]
        if not client.member_id or client.instance_id is not None:
            return  # static members do not send LeaveGroup on shutdown
        self.h.leave(LeavingMember(client.member_id))
        self.deliver()
        self.forget(slot)

    def forget(self, slot: int) -> None:
        old = self.clients[slot]
        for token in [t for t, s in self.owner.items() if s == slot]:
            del self.owner[token]  # nobody reads these answers any more
        self.clients[slot] = Client(instance_id=old.instance_id)

    # --- invariants ------------------------------------------------------------------

    @invariant()
    def group_structure_matches_its_state(self) -> None:
        # Each transition is checked against the state table as it happens (an
        # invalid one raises); here the structure must agree with the state reached.
        group = self.h.coordinator.group("g")
        if group is None:
            self.last_generation = 0  # deleted: a new group starts again from 0
            return
        assert group.state is not S.DEAD
        assert group.generation_id >= self.last_generation
        self.last_generation = group.generation_id
        members = group.members
        if group.state is S.EMPTY:
            assert not members
        if group.state in (S.COMPLETING_REBALANCE, S.STABLE):
            assert members
            assert group.protocol_name is not None
        if members:
            assert group.leader_id in members
        else:
            assert group.leader_id is None
        assert not (group.pending_members & set(members))
        assert group.pending_sync <= set(members)
        assert group.static_members == {
            m.group_instance_id: m.member_id
            for m in members.values()
            if m.group_instance_id is not None
        }
        for member in members.values():
            if member.join_token is not None:
                assert group.state is S.PREPARING_REBALANCE
            if member.sync_token is not None:
                assert group.state is S.COMPLETING_REBALANCE
        if group.state is S.PREPARING_REBALANCE and group.initial_delay is None:
            # A join phase that could complete has completed.
            assert not group.has_all_members_joined() or not members

    @invariant()
    def every_request_is_parked_or_answered_once(self) -> None:
        parked = self.h.coordinator.pending_tokens()
        answered = set(self.h.answers)
        assert not (parked & answered)
        assert parked | answered == self.issued

    @invariant()
    def a_generation_assigns_each_partition_at_most_once(self) -> None:
        by_generation: dict[int, set[int]] = {}
        for client in self.clients:
            if not client.owned:
                continue
            taken = by_generation.setdefault(client.owned_generation, set())
            assert not (taken & client.owned), f"partitions {taken & client.owned} owned twice"
            taken |= client.owned
        group = self.h.coordinator.group("g")
        if group is not None and group.state is S.STABLE:
            seen: set[int] = set()
            for member in group.members.values():
                partitions = set(member.assignment)
                assert not (seen & partitions)
                seen |= partitions

    @invariant()
    def timers_are_armed_while_anyone_is_in_the_group(self) -> None:
        group = self.h.coordinator.group("g")
        if group is not None and (group.members or group.pending_members):
            assert self.h.coordinator.next_deadline() is not None


GroupMachine.TestCase.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGroupMachine = GroupMachine.TestCase
