"""Replaying the coordinator's own records rebuilds its groups and offsets."""

from __future__ import annotations

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator import GroupState, LeavingMember, TopicPartition

from .group_harness import SESSION_MS, Harness

E = ErrorCode
S = GroupState
T0 = TopicPartition("orders", 0)
T1 = TopicPartition("orders", 1)


def restarted(h: Harness) -> Harness:
    """A fresh coordinator that loaded everything ``h`` persisted."""
    fresh = Harness()
    fresh.now = h.now
    fresh.coordinator.load(h.records, h.now)
    return fresh


def test_a_stable_group_and_its_offsets_survive_a_restart() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, static=True)
    h.commit({T0: 10, T1: 20}, member_id=a, generation_id=generation)
    h.commit({T0: 11}, member_id=b, generation_id=generation)

    after = restarted(h)
    group = after.group()
    assert group.state is S.STABLE
    assert group.generation_id == generation
    assert group.leader_id == a
    assert group.protocol_name == "range"
    assert {m: group.members[m].assignment for m in group.members} == {
        a: a.encode(),
        b: b.encode(),
    }
    assert group.static_members == {"instance-0": a, "instance-1": b}
    committed = after.coordinator.fetch_offsets("g", None)
    assert {tp: c.offset for tp, c in committed.items() if c is not None} == {T0: 11, T1: 20}
    # The members carry on in their generation after the restart.
    assert after.heartbeat(a, generation) is E.none
    assert after.commit({T1: 21}, member_id=b, generation_id=generation) == {T1: E.none}


def test_members_that_do_not_come_back_expire_after_a_restart() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    after = restarted(h)
    for _ in range(3):
        after.advance(SESSION_MS - 1)
        assert after.heartbeat(a, generation) in (E.none, E.rebalance_in_progress)
    assert list(after.group().members) == [a]
    assert after.heartbeat(b, generation) is E.unknown_member_id


def test_deleted_groups_and_offsets_stay_deleted() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    h.commit({T0: 1, T1: 2}, member_id=a, generation_id=generation)
    # With members whose subscriptions do not parse, every topic counts as consumed.
    refused = h.take(h.coordinator.delete_offsets("g", [T1], h.now))
    assert refused.partition_errors == {T1: E.group_subscribed_to_topic}
    h.leave(LeavingMember(a))
    h.take(h.coordinator.delete_offsets("g", [T1], h.now))
    h.commit({T0: 5}, group_id="gone")
    h.take(h.coordinator.delete_groups(["gone"], h.now))

    after = restarted(h)
    assert after.coordinator.group("gone") is None
    group = after.group()
    assert group.state is S.EMPTY
    assert group.generation_id == generation + 1
    assert group.members == {}
    committed = after.coordinator.fetch_offsets("g", None)
    assert {tp: c.offset for tp, c in committed.items() if c is not None} == {T0: 1}


def test_an_empty_group_rejoins_with_the_next_generation() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    h.leave(LeavingMember(a))
    after = restarted(h)
    member = after.new_member()
    answer = after.join_answer(after.last_join)
    assert answer is not None
    assert answer.member_id == member
    assert answer.generation_id == generation + 2


def test_load_refuses_to_run_twice() -> None:
    h = Harness()
    h.commit({T0: 1})
    after = restarted(h)
    with pytest.raises(RuntimeError, match="before the coordinator serves"):
        after.coordinator.load(h.records, h.now)
