"""The state table and the timer queue underneath the coordinator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.broker.coordinator.state import (
    VALID_PREVIOUS_STATES,
    GroupState,
    InvalidTransitionError,
    check_transition,
)
from rivulet.broker.coordinator.timers import TimerQueue

S = GroupState

# Kafka's ClassicGroupState, written out independently of the module under test.
KAFKA_EDGES = {
    (S.PREPARING_REBALANCE, S.EMPTY),
    (S.EMPTY, S.PREPARING_REBALANCE),
    (S.STABLE, S.PREPARING_REBALANCE),
    (S.COMPLETING_REBALANCE, S.PREPARING_REBALANCE),
    (S.PREPARING_REBALANCE, S.COMPLETING_REBALANCE),
    (S.COMPLETING_REBALANCE, S.STABLE),
    *((state, S.DEAD) for state in S),
}


@pytest.mark.parametrize("old", list(S))
@pytest.mark.parametrize("new", list(S))
def test_only_kafka_edges_are_allowed(old: GroupState, new: GroupState) -> None:
    if (old, new) in KAFKA_EDGES:
        check_transition(old, new)
        assert old in VALID_PREVIOUS_STATES[new]
    else:
        with pytest.raises(InvalidTransitionError, match=f"from {old.value} to {new.value}"):
            check_transition(old, new)


def test_dead_is_final() -> None:
    for state in S:
        if state is not S.DEAD:
            with pytest.raises(InvalidTransitionError):
                check_transition(S.DEAD, state)


def test_state_names_are_kafka_names_and_parse_case_insensitively() -> None:
    assert [s.value for s in S] == [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
    ]
    assert GroupState.parse("stable") is S.STABLE
    assert GroupState.parse("PREPARINGREBALANCE") is S.PREPARING_REBALANCE
    assert GroupState.parse("rebalancing") is None


def test_timer_queue_replaces_cancels_and_pops_in_deadline_order() -> None:
    timers: TimerQueue[str] = TimerQueue()
    timers.schedule("a", 30)
    timers.schedule("b", 10)
    timers.schedule("c", 20)
    timers.schedule("a", 5)  # moved earlier
    timers.cancel("c")
    assert timers.next_deadline() == 5
    assert timers.pop_due(4) is None
    assert timers.pop_due(100) == (5, "a")
    assert timers.pop_due(100) == (10, "b")
    assert timers.pop_due(100) is None
    assert timers.next_deadline() is None
    assert len(timers) == 0


operations = st.lists(
    st.tuples(
        st.sampled_from(["schedule", "cancel", "pop"]),
        st.integers(0, 5),
        st.integers(0, 1_000),
    ),
    max_size=300,
)


@given(operations)
def test_timer_queue_behaves_like_a_dict_of_deadlines(ops: list[tuple[str, int, int]]) -> None:
    timers: TimerQueue[int] = TimerQueue()
    model: dict[int, int] = {}
    for op, key, value in ops:
        if op == "schedule":
            timers.schedule(key, value)
            model[key] = value
        elif op == "cancel":
            timers.cancel(key)
            model.pop(key, None)
        else:
            popped = timers.pop_due(value)
            due = {k: d for k, d in model.items() if d <= value}
            if not due:
                assert popped is None
            else:
                assert popped is not None
                deadline, popped_key = popped
                assert deadline == model[popped_key] == min(due.values())
                del model[popped_key]
        assert timers.next_deadline() == (min(model.values()) if model else None)
        assert {k: timers.deadline(k) for k in model} == model
