"""Committed offsets, their retention, and the admin APIs of the group coordinator."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator import (
    CommittedOffset,
    GroupMetadataRecord,
    GroupState,
    LeavingMember,
    OffsetCommitRecord,
    OffsetToCommit,
    TopicPartition,
)

from .group_harness import SESSION_MS, Harness, subscription

E = ErrorCode
S = GroupState
DAY_MS = 24 * 60 * 60 * 1000
T0 = TopicPartition("orders", 0)
T1 = TopicPartition("orders", 1)
P0 = TopicPartition("payments", 0)
HOUR_MS = 3_600_000
# Members that heartbeat hourly, offsets kept for a day, checked every minute.
LONG_LIVED = {
    "max_session_timeout_ms": 3 * HOUR_MS,
    "offsets_retention_ms": DAY_MS,
    "offsets_retention_check_interval_ms": 60_000,
}


def fetch(
    h: Harness, *partitions: TopicPartition, group_id: str = "g"
) -> dict[TopicPartition, int | None]:
    found = h.coordinator.fetch_offsets(group_id, partitions or None)
    return {tp: None if c is None else c.offset for tp, c in found.items()}


# --- OffsetCommit / OffsetFetch -------------------------------------------------------


def test_a_member_commits_and_the_offset_is_fetched_with_its_metadata() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    h.now = 1_234
    errors = h.commit(
        {T0: OffsetToCommit(42, leader_epoch=3, metadata="checkpoint"), T1: 7},
        member_id=a,
        generation_id=generation,
    )
    assert errors == {T0: E.none, T1: E.none}
    committed = h.coordinator.fetch_offsets("g", [T0, P0])
    assert committed == {
        T0: CommittedOffset(42, 3, "checkpoint", commit_timestamp_ms=1_234),
        P0: None,
    }
    assert fetch(h) == {T0: 42, T1: 7}
    stored = [r for r in h.records if isinstance(r, OffsetCommitRecord)]
    assert [(r.topic, r.partition, r.value and r.value.offset) for r in stored] == [
        ("orders", 0, 42),
        ("orders", 1, 7),
    ]


def test_a_null_metadata_is_stored_as_empty() -> None:
    h = Harness()
    h.commit({T0: OffsetToCommit(1, metadata=None)})
    found = h.coordinator.fetch_offsets("g", [T0])[T0]
    assert found is not None
    assert found.metadata == ""


def test_fetching_from_an_unknown_group_finds_nothing() -> None:
    h = Harness()
    assert fetch(h, T0, group_id="nobody") == {T0: None}
    assert fetch(h, group_id="nobody") == {}


def test_commit_fencing() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2, static=True)
    ok = {T0: 1}
    assert h.commit(ok, member_id=a, generation_id=generation - 1) == {T0: E.illegal_generation}
    assert h.commit(ok, member_id="ghost", generation_id=generation) == {T0: E.unknown_member_id}
    assert h.commit(ok, member_id="ghost", instance_id="instance-1", generation_id=generation) == {
        T0: E.fenced_instance_id
    }
    # Without member and generation, a group with members refuses the commit.
    assert h.commit(ok) == {T0: E.unknown_member_id}
    assert h.commit(ok, member_id=b, generation_id=generation) == {T0: E.none}


def test_a_commit_while_completing_a_rebalance_is_told_to_wait() -> None:
    h = Harness()
    a = h.new_member()
    generation = h.group().generation_id
    assert h.state() is S.COMPLETING_REBALANCE
    assert h.commit({T0: 1}, member_id=a, generation_id=generation) == {T0: E.rebalance_in_progress}


def test_a_member_may_commit_during_preparing_rebalance() -> None:
    h = Harness()
    (a, b), generation = h.stable_group(2)
    h.join(a)  # leader rejoins: rebalance
    assert h.commit({T0: 5}, member_id=b, generation_id=generation) == {T0: E.none}


def test_a_commit_counts_as_a_heartbeat() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    for _ in range(3):
        h.advance(SESSION_MS - 1)
        assert h.commit({T0: 1}, member_id=a, generation_id=generation) == {T0: E.none}
    assert a in h.group().members


def test_a_simple_consumer_commits_to_a_group_without_members() -> None:
    h = Harness()
    assert h.commit({T0: 10}, group_id="standalone") == {T0: E.none}
    assert h.state("standalone") is S.EMPTY
    assert h.group("standalone").protocol_type is None
    assert fetch(h, T0, group_id="standalone") == {T0: 10}


def test_a_commit_with_a_generation_to_an_unknown_group() -> None:
    h = Harness()
    assert h.commit({T0: 1}, member_id="m", generation_id=3) == {T0: E.illegal_generation}
    v9 = h.commit({T0: 1}, member_id="m", generation_id=3, unknown_group_error=E.group_id_not_found)
    assert v9 == {T0: E.group_id_not_found}
    assert h.coordinator.group("g") is None


def test_oversized_metadata_is_refused_per_partition() -> None:
    h = Harness(offset_metadata_max_bytes=8)
    errors = h.commit(
        {T0: OffsetToCommit(1, metadata="x" * 9), T1: OffsetToCommit(2, metadata="ok")}
    )
    assert errors == {T0: E.offset_metadata_too_large, T1: E.none}
    assert fetch(h, T0, T1) == {T0: None, T1: 2}


# --- retention ----------------------------------------------------------------------


def test_offsets_of_an_empty_group_expire_after_the_retention_since_it_emptied() -> None:
    h = Harness(**LONG_LIVED)
    (a,), generation = h.stable_group(1, session_ms=HOUR_MS * 2)
    h.commit({T0: 9}, member_id=a, generation_id=generation)
    # Long after the commit, the group is still consuming: nothing expires.
    for _ in range(3 * 24):
        h.advance(HOUR_MS - 1)
        h.heartbeat(a, generation)
    assert fetch(h, T0) == {T0: 9}
    h.leave(LeavingMember(a))
    emptied_at = h.now
    h.advance(DAY_MS - 120_000)
    assert fetch(h, T0) == {T0: 9}
    h.advance(120_000 + 60_000)  # past the retention, plus one check interval
    assert h.now - emptied_at >= DAY_MS
    assert h.coordinator.group("g") is None  # no offsets left: the group is gone
    tombstones = [r for r in h.records if isinstance(r, OffsetCommitRecord) and r.value is None]
    assert [(r.topic, r.partition) for r in tombstones] == [("orders", 0)]
    assert isinstance(h.records[-1], GroupMetadataRecord)
    assert h.records[-1].value is None


def test_a_stable_consumer_group_keeps_offsets_of_subscribed_topics() -> None:
    h = Harness(**LONG_LIVED)
    (a,), generation = h.stable_group(
        1, protocols=[("range", subscription("orders"))], session_ms=HOUR_MS * 2
    )
    h.commit({T0: 1, P0: 2}, member_id=a, generation_id=generation)
    for _ in range(25):
        h.advance(HOUR_MS - 1)
        h.heartbeat(a, generation)
    assert fetch(h) == {T0: 1}  # payments is not subscribed: its offset expired


def test_an_explicit_retention_time_wins() -> None:
    h = Harness(offsets_retention_check_interval_ms=1_000)
    h.commit({T0: 1}, retention_ms=5_000)
    h.commit({T1: 2})
    h.advance(5_000)
    assert fetch(h) == {T1: 2}


def test_a_simple_groups_offsets_expire_after_their_commit() -> None:
    h = Harness(offsets_retention_ms=10_000, offsets_retention_check_interval_ms=1_000)
    h.commit({T0: 1})
    h.advance(5_000)
    h.commit({T1: 2})
    h.advance(5_000)
    assert fetch(h) == {T1: 2}
    h.advance(5_000)
    assert h.coordinator.group("g") is None


# --- OffsetDelete -------------------------------------------------------------------------


def test_offset_delete_on_an_empty_group() -> None:
    h = Harness()
    h.commit({T0: 1, T1: 2})
    result = h.take(h.coordinator.delete_offsets("g", [T0, P0], h.now))
    assert result.error is E.none
    assert result.partition_errors == {T0: E.none, P0: E.none}
    assert fetch(h) == {T1: 2}
    assert isinstance(h.records[-1], OffsetCommitRecord)
    assert h.records[-1].value is None


def test_offset_delete_refuses_topics_an_active_group_consumes() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1, protocols=[("range", subscription("orders"))])
    h.commit({T0: 1, P0: 2}, member_id=a, generation_id=generation)
    result = h.take(h.coordinator.delete_offsets("g", [T0, P0], h.now))
    assert result.partition_errors == {T0: E.group_subscribed_to_topic, P0: E.none}
    assert fetch(h) == {T0: 1}


def test_offset_delete_refuses_active_groups_of_other_protocols_and_unknown_groups() -> None:
    h = Harness()
    h.stable_group(1, protocol_type="connect")
    assert h.take(h.coordinator.delete_offsets("g", [T0], h.now)).error is E.non_empty_group
    result = h.take(h.coordinator.delete_offsets("nope", [T0], h.now))
    assert result.error is E.group_id_not_found


def test_unparseable_subscriptions_count_as_subscribed_to_everything() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1, protocols=[("range", b"\x00")])
    h.commit({P0: 2}, member_id=a, generation_id=generation)
    result = h.take(h.coordinator.delete_offsets("g", [P0], h.now))
    assert result.partition_errors == {P0: E.group_subscribed_to_topic}


# --- DeleteGroups / DescribeGroups / ListGroups ----------------------------------------------


def test_delete_groups() -> None:
    h = Harness()
    h.stable_group(1)
    h.commit({T0: 1}, group_id="idle")
    results = h.take(h.coordinator.delete_groups(["g", "idle", "nope"], h.now))
    assert results == [
        ("g", E.non_empty_group),
        ("idle", E.none),
        ("nope", E.group_id_not_found),
    ]
    assert h.coordinator.group("idle") is None
    assert fetch(h, T0, group_id="idle") == {T0: None}
    tail = h.records[-2:]
    assert tail == [
        OffsetCommitRecord("idle", "orders", 0, None),
        GroupMetadataRecord("idle", None),
    ]


def test_describe_groups() -> None:
    h = Harness()
    (a, b), _ = h.stable_group(2, client_id="svc")
    (stable, missing) = h.coordinator.describe_groups(["g", "nope"])
    assert stable.state is S.STABLE
    assert stable.protocol_type == "consumer"
    assert stable.protocol_name == "range"
    assert [(m.member_id, m.client_id, m.metadata, m.assignment) for m in stable.members] == [
        (a, "svc", b"meta", a.encode()),
        (b, "svc", b"meta", b.encode()),
    ]
    assert missing.state is S.DEAD
    assert missing.error is E.none
    assert missing.members == ()

    h.join(a)  # rebalancing: members are listed without metadata or assignment
    (rebalancing,) = h.coordinator.describe_groups(["g"])
    assert rebalancing.state is S.PREPARING_REBALANCE
    assert rebalancing.protocol_name == ""
    assert {(m.metadata, m.assignment) for m in rebalancing.members} == {(b"", b"")}


def test_list_groups_filters_by_state_and_type() -> None:
    h = Harness()
    h.stable_group(1)
    h.commit({T0: 1}, group_id="idle")
    everything = h.coordinator.list_groups()
    assert {(g.group_id, g.protocol_type, g.state) for g in everything} == {
        ("g", "consumer", S.STABLE),
        ("idle", "", S.EMPTY),
    }
    assert [g.group_id for g in h.coordinator.list_groups(states=["empty"])] == ["idle"]
    assert [g.group_id for g in h.coordinator.list_groups(states=["STABLE", "Dead"])] == ["g"]
    assert h.coordinator.list_groups(states=["bogus"]) == []
    assert len(h.coordinator.list_groups(types=["Classic"])) == 2
    assert h.coordinator.list_groups(types=["consumer"]) == []


def test_deleting_a_topic_forgets_its_offsets_in_every_group() -> None:
    h = Harness()
    (a,), generation = h.stable_group(1)
    h.commit({T0: 1, P0: 2}, member_id=a, generation_id=generation)
    h.commit({T1: 3}, group_id="idle")
    h.take(h.coordinator.delete_topic_offsets(["orders"], h.now))
    assert fetch(h) == {P0: 2}
    assert h.coordinator.group("idle") is None  # nothing left to remember
    tombstones = [r for r in h.records if isinstance(r, OffsetCommitRecord) and r.value is None]
    assert {(r.group_id, r.topic, r.partition) for r in tombstones} == {
        ("g", "orders", 0),
        ("idle", "orders", 1),
    }
    assert h.state() is S.STABLE
