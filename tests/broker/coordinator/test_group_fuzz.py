"""Arbitrary field values in group requests get answers, never exceptions."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.broker.coordinator import (
    GroupProtocol,
    JoinRequest,
    LeavingMember,
    OffsetCommitRequest,
    OffsetToCommit,
    SyncRequest,
    TopicPartition,
)

from .group_harness import Harness

small_text = st.sampled_from(["", "g", "m", "c-1", "c-2", "static-1", "é"])
optional_text = st.none() | small_text
ints = st.integers(-(2**31), 2**31 - 1)
timeouts = st.sampled_from([-1, 0, 1, 6_000, 10_000, 1_800_001, 2**31 - 1])
protocols = st.lists(
    st.builds(GroupProtocol, st.sampled_from(["range", "roundrobin", ""]), st.binary(max_size=8)),
    max_size=3,
).map(tuple)

joins = st.builds(
    JoinRequest,
    group_id=small_text,
    member_id=small_text,
    group_instance_id=optional_text,
    client_id=small_text,
    session_timeout_ms=timeouts,
    rebalance_timeout_ms=timeouts,
    protocol_type=st.sampled_from(["consumer", "connect", ""]),
    protocols=protocols,
    require_known_member_id=st.booleans(),
    supports_skip_assignment=st.booleans(),
)
syncs = st.builds(
    SyncRequest,
    group_id=small_text,
    member_id=small_text,
    generation_id=st.integers(-1, 3) | ints,
    group_instance_id=optional_text,
    protocol_type=optional_text,
    protocol_name=optional_text,
    assignments=st.dictionaries(small_text, st.binary(max_size=4), max_size=3),
)
commits = st.builds(
    OffsetCommitRequest,
    group_id=small_text,
    member_id=small_text,
    group_instance_id=optional_text,
    generation_id=st.integers(-1, 3) | ints,
    retention_time_ms=st.sampled_from([-1, 0, 1_000]),
    offsets=st.dictionaries(
        st.builds(TopicPartition, small_text, st.integers(0, 3)),
        st.builds(OffsetToCommit, ints, ints, optional_text),
        max_size=3,
    ),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("join"), joins),
        st.tuples(st.just("sync"), syncs),
        st.tuples(st.just("heartbeat"), st.tuples(small_text, small_text, ints, optional_text)),
        st.tuples(
            st.just("leave"),
            st.tuples(small_text, st.lists(st.builds(LeavingMember, small_text, optional_text))),
        ),
        st.tuples(st.just("commit"), commits),
        st.tuples(st.just("delete"), st.lists(small_text, max_size=2)),
        st.tuples(st.just("advance"), st.integers(0, 40_000)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_any_request_sequence_is_answered_without_exceptions(ops: list[tuple[str, Any]]) -> None:
    h = Harness(initial_rebalance_delay_ms=1_000)
    coordinator = h.coordinator
    for kind, args in ops:
        if kind == "join":
            h.take(coordinator.join_group(object(), args, h.now))
        elif kind == "sync":
            h.take(coordinator.sync_group(object(), args, h.now))
        elif kind == "heartbeat":
            group_id, member_id, generation, instance = args
            h.take(coordinator.heartbeat(group_id, member_id, generation, h.now, instance))
        elif kind == "leave":
            h.take(coordinator.leave_group(args[0], args[1], h.now))
        elif kind == "commit":
            h.take(coordinator.commit_offsets(args, h.now))
        elif kind == "delete":
            h.take(coordinator.delete_groups(args, h.now))
        else:
            h.advance(args)
        coordinator.describe_groups(coordinator.group_ids())
        coordinator.list_groups()
