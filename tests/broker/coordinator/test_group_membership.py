"""The classic group membership rules, one test per rule, on a fake clock."""

from __future__ import annotations

from collections.abc import Hashable

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator import (
    GroupMetadataRecord,
    GroupState,
    JoinResponse,
    LeavingMember,
    SyncResponse,
)

from .group_harness import REBALANCE_MS, SESSION_MS, Harness, subscription

E = ErrorCode
S = GroupState


def joined(h: Harness, token: Hashable) -> JoinResponse:
    answer = h.join_answer(token)
    assert answer is not None, "the JoinGroup is still parked"
    return answer


def synced(h: Harness, token: Hashable) -> SyncResponse:
    answer = h.sync_answer(token)
    assert answer is not None, "the SyncGroup is still parked"
    return answer


# --- joining ----------------------------------------------------------------------


def test_v4_join_asks_for_a_member_id_then_admits_the_member() -> None:
    h = Harness()
    first = joined(h, h.join(client_id="app"))
    assert first.error is E.member_id_required
    assert first.member_id == "app-1"
    assert h.group().pending_members == {"app-1"}
    assert h.state() is S.EMPTY

    second = joined(h, h.join("app-1", client_id="app"))
    assert second.error is E.none
    assert second.generation_id == 1
    assert second.leader == "app-1"
    assert second.protocol_type == "consumer"
    assert second.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in second.members] == [("app-1", b"meta")]
    assert h.state() is S.COMPLETING_REBALANCE


def test_pre_v4_join_admits_a_new_member_at_once() -> None:
    h = Harness()
    answer = joined(h, h.join(require_known_member_id=False))
    assert answer.error is E.none
    assert answer.member_id == "c-1"
    assert answer.generation_id == 1


def test_three_members_join_one_generation_and_the_first_leads() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    a = h.new_member(client_id="a")
    join_a = h.last_join
    b = h.new_member(client_id="b")
    join_b = h.last_join
    c = h.new_member(client_id="c")
    join_c = h.last_join
    assert h.state() is S.PREPARING_REBALANCE
    assert all(h.join_answer(t) is None for t in (join_a, join_b, join_c))

    h.advance(3_000)
    # b and c arrived during the delay, so it runs once more in case others follow.
    assert all(h.join_answer(t) is None for t in (join_a, join_b, join_c))
    h.advance(3_000)
    answers = {m: joined(h, t) for m, t in ((a, join_a), (b, join_b), (c, join_c))}
    assert {r.generation_id for r in answers.values()} == {1}
    assert {r.leader for r in answers.values()} == {a}
    assert [m.member_id for m in answers[a].members] == [a, b, c]
    assert answers[b].members == ()
    assert answers[c].members == ()


def test_a_new_member_makes_everyone_rejoin() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    b = h.new_member(client_id="b")
    join_b = h.last_join
    assert h.state() is S.PREPARING_REBALANCE
    assert h.join_answer(join_b) is None  # waits for a
    assert h.heartbeat(a, generation) is E.rebalance_in_progress

    join_a = h.join(a)
    answer_a, answer_b = joined(h, join_a), joined(h, join_b)
    assert answer_a.generation_id == answer_b.generation_id == generation + 1
    assert answer_a.leader == a
    assert {m.member_id for m in answer_a.members} == {a, b}


def test_leadership_passes_to_a_member_that_rejoined() -> None:
    h = Harness()
    (a, b, c), generation = h.stable_group(3)
    assert h.group().leader_id == a
    assert h.leave(LeavingMember(a)).member_errors == (E.none,)
    assert h.state() is S.PREPARING_REBALANCE
    join_c = h.join(c)
    join_b = h.join(b)
    answer_c = joined(h, join_c)
    assert answer_c.generation_id == generation + 1
    # b was the next leader in join order, and it rejoined.
    assert answer_c.leader == b
    assert {m.member_id for m in joined(h, join_b).members} == {b, c}


def test_a_leader_that_does_not_rejoin_loses_leadership_to_one_that_did() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    join_b = h.join(b, protocols=[("range", b"new")])  # b's metadata changed
    assert h.state() is S.PREPARING_REBALANCE
    for _ in range(REBALANCE_MS // 5_000 - 1):
        h.advance(5_000)
        # a is alive, but never rejoins.
        assert h.heartbeat(a, generation) is E.rebalance_in_progress
    h.advance(5_000)
    answer = joined(h, join_b)
    assert answer.leader == b
    assert [m.member_id for m in answer.members] == [b]
    assert h.heartbeat(a, generation) is E.unknown_member_id


def test_the_protocol_every_member_supports_wins_by_vote() -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    h.new_member(protocols=[("range", b""), ("roundrobin", b""), ("sticky", b"")])
    h.new_member(protocols=[("sticky", b""), ("roundrobin", b"")])
    h.new_member(protocols=[("sticky", b""), ("range", b""), ("roundrobin", b"")])
    last = h.last_join
    h.advance(2_000)  # the delay, extended once for the members after the first
    assert joined(h, last).protocol_name == "sticky"


def test_a_tie_goes_to_the_leaders_preference() -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    h.new_member(protocols=[("roundrobin", b""), ("range", b"")])
    h.new_member(protocols=[("range", b""), ("roundrobin", b"")])
    last = h.last_join
    h.advance(2_000)  # the delay, extended once for the members after the first
    assert joined(h, last).protocol_name == "roundrobin"


def test_a_member_with_no_common_protocol_is_refused() -> None:
    h = Harness()
    h.stable_group(1)
    assert joined(h, h.join(protocols=[("other", b"")])).error is E.inconsistent_group_protocol
    assert joined(h, h.join(protocol_type="connect")).error is E.inconsistent_group_protocol
    assert h.state() is S.STABLE


def test_the_first_member_needs_a_protocol_type_and_protocols() -> None:
    h = Harness()
    assert joined(h, h.join(protocol_type="")).error is E.inconsistent_group_protocol
    assert joined(h, h.join(protocols=[])).error is E.inconsistent_group_protocol


def test_bad_join_requests_get_errors_not_crashes() -> None:
    h = Harness()
    assert joined(h, h.join(group_id="")).error is E.invalid_group_id
    assert joined(h, h.join(session_ms=5_999)).error is E.invalid_session_timeout
    assert joined(h, h.join(session_ms=1_800_001)).error is E.invalid_session_timeout
    assert joined(h, h.join("who-1")).error is E.unknown_member_id  # group does not exist
    h.stable_group(1)
    assert joined(h, h.join("who-1")).error is E.unknown_member_id


def test_group_max_size_turns_away_extra_members() -> None:
    h = Harness(max_group_size=2)
    h.stable_group(2)
    answer = joined(h, h.join(require_known_member_id=False))
    assert answer.error is E.group_max_size_reached
    assert len(h.group().members) == 2
    assert h.state() is S.STABLE


def test_a_follower_rejoining_with_the_same_metadata_does_not_rebalance() -> None:
    h = Harness()
    (_a, b), generation = h.stable_group(2)
    answer = joined(h, h.join(b))
    assert answer.error is E.none
    assert answer.generation_id == generation
    assert answer.members == ()
    assert h.state() is S.STABLE


def test_the_leader_rejoining_always_rebalances() -> None:
    h = Harness()
    (a, _b), _generation = h.stable_group(2)
    h.join(a)
    assert h.state() is S.PREPARING_REBALANCE


def test_rejoining_with_the_same_metadata_while_completing_returns_the_generation() -> None:
    h = Harness()
    a = h.new_member()
    first = joined(h, h.last_join)
    again = joined(h, h.join(a))
    assert again.generation_id == first.generation_id
    assert [m.member_id for m in again.members] == [a]
    assert h.state() is S.COMPLETING_REBALANCE


# --- syncing ----------------------------------------------------------------------


def test_the_leaders_assignment_reaches_every_member() -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    a = h.new_member()
    b = h.new_member()
    c = h.new_member()
    h.advance(2_000)  # the delay, extended once for the members after the first
    generation = h.group().generation_id
    sync_b = h.sync(b, generation)
    assert h.sync_answer(sync_b) is None  # parked until the leader's assignment arrives
    sync_a = h.sync(a, generation, {a: b"A", b: b"B"}, protocol_type="consumer")
    assert h.state() is S.STABLE
    assert synced(h, sync_a).assignment == b"A"
    assert synced(h, sync_b).assignment == b"B"
    assert synced(h, sync_b).protocol_name == "range"
    # c syncs after the group is Stable; the leader gave it nothing.
    late = synced(h, h.sync(c, generation))
    assert late.error is E.none
    assert late.assignment == b""
    stored = [r for r in h.records if isinstance(r, GroupMetadataRecord)]
    assert stored[-1].value is not None
    assert {m.member_id: m.assignment for m in stored[-1].value.members} == {
        a: b"A",
        b: b"B",
        c: b"",
    }


def test_sync_errors() -> None:
    h = Harness()
    (a, _b), generation = h.stable_group(2)
    assert synced(h, h.sync(a, generation + 1)).error is E.illegal_generation
    assert synced(h, h.sync("nobody", generation)).error is E.unknown_member_id
    assert synced(h, h.sync(a, generation, group_id="other")).error is E.unknown_member_id
    assert synced(h, h.sync(a, generation, group_id="")).error is E.invalid_group_id
    assert (
        synced(h, h.sync(a, generation, protocol_name="roundrobin")).error
        is E.inconsistent_group_protocol
    )
    h.join(a)  # the leader rejoins: a rebalance starts
    assert synced(h, h.sync(a, generation)).error is E.rebalance_in_progress


def test_a_join_during_completing_sends_waiting_syncs_back_to_rejoin() -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    _a = h.new_member()
    b = h.new_member()
    h.advance(2_000)  # the delay, extended once for the members after the first
    generation = h.group().generation_id
    sync_b = h.sync(b, generation)
    h.new_member(client_id="late")
    assert h.state() is S.PREPARING_REBALANCE
    assert synced(h, sync_b).error is E.rebalance_in_progress


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    a = h.new_member()
    b = h.new_member()
    h.advance(2_000)  # the delay, extended once for the members after the first
    generation = h.group().generation_id
    h.sync(a, generation, {a: b"A", b: b"B"})
    assert h.state() is S.STABLE
    for _ in range(REBALANCE_MS // 5_000 - 1):
        h.advance(5_000)
        assert h.heartbeat(a, generation) is E.none
        assert h.heartbeat(b, generation) is E.none  # b is alive but never syncs
    assert b in h.group().members
    h.advance(5_000)
    assert b not in h.group().members
    assert h.state() is S.PREPARING_REBALANCE
    assert h.heartbeat(a, generation) is E.rebalance_in_progress


# --- heartbeats and sessions ---------------------------------------------------------


def test_heartbeat_errors() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    assert h.heartbeat(a, generation) is E.none
    assert h.heartbeat(a, generation - 1) is E.illegal_generation
    assert h.heartbeat("nobody", generation) is E.unknown_member_id
    assert h.heartbeat(a, generation, group_id="other") is E.unknown_member_id
    assert h.heartbeat(a, generation, group_id="") is E.invalid_group_id


def test_heartbeats_keep_a_member_and_silence_removes_it() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    for _ in range(5):
        h.advance(SESSION_MS - 1)
        assert h.heartbeat(a, generation) is E.none
        assert h.heartbeat(b, generation) is E.none
    h.advance(SESSION_MS - 1)
    assert h.heartbeat(a, generation) is E.none
    h.advance(1)  # b's session ends
    assert b not in h.group().members
    assert h.heartbeat(a, generation) is E.rebalance_in_progress
    assert h.heartbeat(b, generation) is E.unknown_member_id
    answer = joined(h, h.join(a))
    assert answer.generation_id == generation + 1
    assert [m.member_id for m in answer.members] == [a]


def test_a_member_waiting_in_a_rebalance_is_not_expired() -> None:
    h = Harness()
    (a, _b), _generation = h.stable_group(2)
    join_a = h.join(a, protocols=[("range", b"new")])
    h.advance(SESSION_MS * 2)  # a is parked, b is silent
    answer = joined(h, join_a)  # b's session ended, which completed the join phase
    assert answer.error is E.none
    assert [m.member_id for m in answer.members] == [a]


def test_a_silent_member_is_dropped_when_the_rebalance_times_out() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, session_ms=60_000, rebalance_ms=REBALANCE_MS)
    join_a = h.join(a, protocols=[("range", b"new")], session_ms=60_000)
    h.advance(REBALANCE_MS - 1)
    assert h.heartbeat(b, generation) is E.rebalance_in_progress
    assert h.join_answer(join_a) is None
    h.advance(1)
    assert joined(h, join_a).generation_id == generation + 1
    assert b not in h.group().members


def test_a_pending_member_that_never_returns_expires_after_its_session() -> None:
    h = Harness()
    (a,), _ = h.stable_group(1)
    first = joined(h, h.join(client_id="x"))
    assert first.error is E.member_id_required
    join_a = h.join(a)  # the leader rejoins: rebalance; the pending member holds it up
    assert h.join_answer(join_a) is None
    h.advance(SESSION_MS)
    assert first.member_id not in h.group().pending_members
    assert joined(h, join_a).error is E.none


def test_a_new_member_stuck_in_a_long_rebalance_is_dropped_after_the_join_timeout() -> None:
    h = Harness(new_member_join_timeout_ms=5_000)
    (a,), generation = h.stable_group(1, rebalance_ms=60_000)
    h.new_member(client_id="new", rebalance_ms=60_000)
    new_join = h.last_join
    for _ in range(2):
        h.advance(2_500)
        h.heartbeat(a, generation)  # a stays alive but does not rejoin yet
    answer = joined(h, new_join)
    assert answer.error is E.unknown_member_id
    assert list(h.group().members) == [a]


# --- leaving ----------------------------------------------------------------------


def test_leave_group_removes_members_and_rebalances() -> None:
    h = Harness()
    (a, b, c), generation = h.stable_group(3)
    result = h.leave(LeavingMember(b), LeavingMember("ghost"), LeavingMember(c))
    assert result.error is E.none
    assert result.member_errors == (E.none, E.unknown_member_id, E.none)
    assert list(h.group().members) == [a]
    assert h.heartbeat(a, generation) is E.rebalance_in_progress


def test_the_last_member_leaving_empties_the_group() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    h.leave(LeavingMember(a))
    assert h.state() is S.EMPTY
    assert h.group().generation_id == generation + 1
    stored = h.records[-1]
    assert isinstance(stored, GroupMetadataRecord)
    assert stored.value is not None
    assert stored.value.members == ()


def test_leaving_answers_a_parked_join() -> None:
    h = Harness()
    (a, b), _ = h.stable_group(2)
    join_b = h.join(b, protocols=[("range", b"new")])
    h.leave(LeavingMember(b))
    assert joined(h, join_b).error is E.unknown_member_id
    assert list(h.group().members) == [a]


def test_leave_for_an_unknown_group_reports_each_member() -> None:
    h = Harness()
    result = h.leave(LeavingMember("x"), group_id="nope")
    assert result.member_errors == (E.unknown_member_id,)
    assert h.leave(LeavingMember("x"), group_id="").error is E.invalid_group_id


# --- initial rebalance delay ----------------------------------------------------------


def test_the_first_rebalance_waits_for_the_initial_delay() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    h.new_member()
    token = h.last_join
    h.advance(2_999)
    assert h.join_answer(token) is None
    h.advance(1)
    assert joined(h, token).generation_id == 1


def test_new_members_extend_the_initial_delay_within_the_rebalance_timeout() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    h.new_member(rebalance_ms=10_000)
    first = h.last_join
    h.advance(1_000)
    h.new_member(rebalance_ms=10_000)  # t=1000
    h.advance(2_000)  # t=3000: someone arrived during the delay, wait 3000 more
    assert h.join_answer(first) is None
    h.advance(2_000)
    h.new_member(rebalance_ms=10_000)  # t=5000
    h.advance(1_000)  # t=6000: extended again, to at most the remaining budget
    assert h.join_answer(first) is None
    h.advance(2_999)
    assert h.join_answer(first) is None
    h.advance(1)  # t=9000
    answer = joined(h, first)
    assert len(answer.members) == 3


def test_rejoins_do_not_end_the_initial_delay_early() -> None:
    h = Harness(initial_rebalance_delay_ms=3_000)
    a = h.new_member()
    token = h.join(a)  # everyone has joined, but this is the first rebalance
    assert h.join_answer(token) is None
    h.advance(3_000)
    assert joined(h, token).error is E.none


# --- static membership ---------------------------------------------------------------


def test_a_restarted_static_member_keeps_its_assignment_without_a_rebalance() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, static=True)
    records_before = len(h.records)
    answer = joined(h, h.join(instance_id="instance-1"))
    assert answer.error is E.none
    new_b = answer.member_id
    assert new_b != b
    assert answer.generation_id == generation
    assert answer.leader == a
    assert h.state() is S.STABLE
    assert synced(h, h.sync(new_b, generation, instance_id="instance-1")).assignment == (b.encode())
    # The new member id is persisted; the old instance is fenced.
    assert any(isinstance(r, GroupMetadataRecord) for r in h.records[records_before:])
    assert h.heartbeat(b, generation, instance_id="instance-1") is E.fenced_instance_id
    assert h.heartbeat(b, generation) is E.unknown_member_id
    assert h.heartbeat(a, generation, instance_id="instance-0") is E.none


def test_a_restarted_static_leader_stays_a_follower_before_v9() -> None:
    h = Harness()
    (a, _b), generation = h.stable_group(2, static=True)
    answer = joined(h, h.join(instance_id="instance-0"))
    assert answer.member_id != a
    assert answer.leader == a  # the old id: the new instance must not reassign
    assert answer.members == ()
    assert h.group().leader_id == answer.member_id
    assert h.state() is S.STABLE
    assert answer.generation_id == generation


def test_a_restarted_static_leader_is_told_to_skip_assignment_from_v9() -> None:
    h = Harness()
    (_a, _b), _generation = h.stable_group(2, static=True)
    answer = joined(h, h.join(instance_id="instance-0", supports_skip_assignment=True))
    assert answer.leader == answer.member_id
    assert answer.skip_assignment
    assert len(answer.members) == 2


def test_a_static_member_changing_the_selected_protocol_rebalances() -> None:
    h = Harness()
    h.stable_group(1, static=True)
    joined_again = h.join(instance_id="instance-0", protocols=[("roundrobin", b""), ("range", b"")])
    answer = joined(h, joined_again)
    assert answer.protocol_name == "roundrobin"
    assert answer.generation_id == 2


def test_a_static_member_keeps_its_place_through_a_rebalance_it_misses() -> None:
    h = Harness()
    long_session = 4 * REBALANCE_MS
    (a, b), generation = h.stable_group(2, static=True, session_ms=long_session)
    dyn = h.new_member(client_id="dyn", session_ms=long_session)
    h.join(a, instance_id="instance-0", session_ms=long_session)
    # b (instance-1) is restarting and misses the rebalance: it keeps its place.
    h.advance(REBALANCE_MS)
    assert h.state() is S.COMPLETING_REBALANCE
    assert h.group().generation_id == generation + 1
    leader_view = joined(h, h.join(a, instance_id="instance-0", session_ms=long_session))
    assert {m.member_id for m in leader_view.members} == {a, b, dyn}
    # That join was a's lost-response retry. Now a rejoins with new metadata, and
    # neither b nor the dynamic member follows: only the dynamic member is dropped.
    h.join(a, instance_id="instance-0", session_ms=long_session, protocols=[("range", b"v2")])
    h.advance(REBALANCE_MS)
    assert set(h.group().members) == {a, b}


def test_replacing_a_static_member_fences_its_parked_join() -> None:
    h = Harness()
    (a, b), _ = h.stable_group(2, static=True)
    old_join = h.join(b, instance_id="instance-1", protocols=[("range", b"changed")])
    assert h.state() is S.PREPARING_REBALANCE
    h.join(instance_id="instance-1")  # a new process with the same instance id
    answer = joined(h, old_join)
    assert answer.error is E.fenced_instance_id
    assert a in h.group().members


def test_leave_by_instance_id_evicts_a_static_member() -> None:
    h = Harness()
    (a, _b), _ = h.stable_group(2, static=True)
    result = h.leave(LeavingMember("", "instance-1"), LeavingMember("", "instance-9"))
    assert result.member_errors == (E.none, E.unknown_member_id)
    assert list(h.group().members) == [a]
    wrong = h.leave(LeavingMember("not-a", "instance-0"))
    assert wrong.member_errors == (E.fenced_instance_id,)


# --- cooperative rebalancing ----------------------------------------------------------


def test_cooperative_rebalance_passes_owned_partitions_and_reruns_on_revocation() -> None:
    h = Harness()
    coop = "cooperative-sticky"
    all_partitions = [("t", p) for p in range(6)]
    a = h.new_member(protocols=[(coop, subscription("t", owned=all_partitions))])
    h.sync(a, 1, {a: b"p0-5"})
    assert h.state() is S.STABLE

    # b joins; a rejoins still owning everything: the leader sees that unchanged.
    b = h.new_member(client_id="b", protocols=[(coop, subscription("t"))])
    join_b = h.last_join
    join_a = h.join(a, protocols=[(coop, subscription("t", owned=all_partitions))])
    leader_view = joined(h, join_a)
    assert leader_view.generation_id == 2
    assert {m.member_id: m.metadata for m in leader_view.members} == {
        a: subscription("t", owned=all_partitions),
        b: subscription("t"),
    }
    # First round: a keeps p0-2, gives nothing to b yet (p3-5 must be revoked first).
    h.sync(b, 2)
    h.sync(a, 2, {a: b"p0-2", b: b""})
    assert h.state() is S.STABLE
    assert joined(h, join_b).generation_id == 2

    # a revoked p3-5 and rejoins with its new owned partitions: a second round.
    join_a = h.join(a, protocols=[(coop, subscription("t", owned=all_partitions[:3]))])
    join_b = h.join(b, protocols=[(coop, subscription("t"))])
    second = joined(h, join_a)
    assert second.generation_id == 3
    assert {m.member_id: m.metadata for m in second.members}[a] == subscription(
        "t", owned=all_partitions[:3]
    )
    sync_b = h.sync(b, 3)
    h.sync(a, 3, {a: b"p0-2", b: b"p3-5"})
    assert synced(h, sync_b).assignment == b"p3-5"
    assert joined(h, join_b).error is E.none


def test_a_retried_join_answers_the_abandoned_one() -> None:
    h = Harness()
    (a, b), _ = h.stable_group(2)
    abandoned = h.join(b, protocols=[("range", b"new")])
    retried = h.join(b, protocols=[("range", b"new")])
    assert joined(h, abandoned).error is E.rebalance_in_progress
    assert h.join_answer(retried) is None
    h.join(a)
    assert joined(h, retried).error is E.none
