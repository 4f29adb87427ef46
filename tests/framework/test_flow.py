"""In-flight tracking, commit positions and backpressure decisions."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from rivulet.framework._flow import (
    CommitLine,
    CommitPolicy,
    FlowControl,
    FlowDecision,
    PartitionWindow,
    Pauses,
)


@dataclass
class Entry:
    """An accepted record as the commit line sees it."""

    offset: int
    done: bool = False


class WindowMachine(RuleBasedStateMachine):
    """Random fetch/start/release/complete interleavings against a reference model.

    The window decides which records start (per-key order, bounded concurrency); the
    commit line, fed the same records, decides how far the commit may go. The runner
    uses them together in exactly this way.
    """

    @initialize(concurrency=st.integers(1, 4))
    def setup(self, concurrency: int) -> None:
        self.window = PartitionWindow(concurrency)
        self.line: CommitLine[Entry] = CommitLine()
        self.entries: dict[int, Entry] = {}
        self.concurrency = concurrency
        self.next_offset = 100
        self.key_of: dict[int, Hashable] = {}
        self.state: dict[int, str] = {}  # offset -> waiting | running | released | complete
        self.started_order: dict[Hashable, list[int]] = {}

    @rule(key=st.sampled_from([b"a", b"b", b"c", None]), gap=st.integers(1, 3))
    def fetch(self, key: Hashable, gap: int) -> None:
        offset = self.next_offset
        self.next_offset += gap  # compaction and transaction markers leave gaps
        self.window.add(offset, key)
        self.entries[offset] = Entry(offset)
        self.line.add(self.entries[offset])
        self.key_of[offset] = key
        self.state[offset] = "waiting"

    @rule()
    def start(self) -> None:
        for offset in self.window.start_ready():
            assert self.state[offset] == "waiting"
            key = self.key_of[offset]
            # Every earlier record with the same key has been released already.
            for earlier, state in self.state.items():
                if earlier < offset and self.key_of[earlier] == key:
                    assert state in {"released", "complete"}, (earlier, offset)
            self.state[offset] = "running"
            self.started_order.setdefault(key, []).append(offset)
        # Nothing startable is left behind: either every slot is taken, or each waiting
        # record still has an earlier record of its key that has not been released.
        running = [o for o, s in self.state.items() if s == "running"]
        if len(running) < self.concurrency:
            for offset, state in self.state.items():
                if state == "waiting":
                    assert any(
                        e < offset
                        and self.key_of[e] == self.key_of[offset]
                        and self.state[e] in {"waiting", "running"}
                        for e in self.state
                    ), offset

    @precondition(lambda self: any(s == "running" for s in self.state.values()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        running = sorted(o for o, s in self.state.items() if s == "running")
        offset = data.draw(st.sampled_from(running))
        self.window.release(offset)
        self.state[offset] = "released"

    @precondition(lambda self: any(s == "released" for s in self.state.values()))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        # A record completes once released and its publishes are confirmed: any order.
        candidates = sorted(o for o, s in self.state.items() if s == "released")
        offset = data.draw(st.sampled_from(candidates))
        self.entries[offset].done = True
        self.state[offset] = "complete"

    @rule()
    def settle(self) -> None:
        before = len(self.line)
        dropped = self.line.settle()
        assert len(self.line) == before - dropped

    @invariant()
    def commit_never_passes_an_unfinished_record(self) -> None:
        self.line.settle()
        after = self.next_offset_after_last()
        position = self.line.position(after=after)
        unfinished = [o for o, s in self.state.items() if s != "complete"]
        if not self.state:
            assert position is None
        elif unfinished:
            assert position == min(unfinished)
        else:
            assert position == max(self.state) + 1
        # What the line keeps is exactly the records from the first unfinished one on.
        assert len(self.line) == sum(1 for o in self.state if unfinished and o >= min(unfinished))

    def next_offset_after_last(self) -> int | None:
        return max(self.state) + 1 if self.state else None

    @invariant()
    def concurrency_and_key_exclusivity_hold(self) -> None:
        running = [o for o, s in self.state.items() if s == "running"]
        assert len(running) <= self.concurrency
        assert self.window.running == len(running)
        keys = [self.key_of[o] for o in running]
        assert len(keys) == len(set(keys))

    @invariant()
    def per_key_start_order_is_offset_order(self) -> None:
        for offsets in self.started_order.values():
            assert offsets == sorted(offsets)


WindowMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestPartitionWindow = WindowMachine.TestCase


def test_strict_order_with_default_concurrency() -> None:
    window = PartitionWindow()
    for offset, key in enumerate([b"a", b"b", b"a", None]):
        window.add(offset, key)
    handled = []
    while started := window.start_ready():
        assert len(started) == 1
        handled.extend(started)
        window.release(started[0])
    assert handled == [0, 1, 2, 3]


def test_release_lets_the_next_record_start_before_its_publishes_are_confirmed() -> None:
    window = PartitionWindow()
    line: CommitLine[Entry] = CommitLine()
    entries = [Entry(0), Entry(1)]
    for entry in entries:
        window.add(entry.offset, b"a")
        line.add(entry)
    assert window.start_ready() == [0]
    window.release(0)  # handler returned; its publish is still unconfirmed
    assert window.start_ready() == [1]
    window.release(1)
    entries[1].done = True
    assert line.settle() == 0
    assert line.position(after=2) == 0  # 0 is not durable yet
    entries[0].done = True
    assert line.settle() == 2
    assert line.position(after=2) == 2


def test_misuse_is_refused() -> None:
    window = PartitionWindow()
    window.add(5, b"k")
    with pytest.raises(ValueError, match="added after"):
        window.add(5, b"k")
    with pytest.raises(ValueError, match="not running"):
        window.release(5)
    with pytest.raises(ValueError, match="at least 1"):
        PartitionWindow(0)


@given(
    st.lists(st.tuples(st.integers(0, 500), st.integers(0, 400)), max_size=60),
    st.integers(2, 200),
    st.integers(0, 1_000),
)
def test_flow_control_pauses_only_after_sustained_saturation(
    steps: list[tuple[int, int]], high: int, hold_ms: int
) -> None:
    flow = FlowControl(high=high, hold_ms=hold_ms)
    now, paused, full_since = 0, False, None
    for level, elapsed in steps:
        now += elapsed
        full_since = (full_since if full_since is not None else now) if level >= high else None
        decision = flow.update(level, now_ms=now)
        assert flow.room(level) == max(0, high - level)
        if decision is FlowDecision.PAUSE:
            assert not paused
            assert full_since is not None
            assert now - full_since >= hold_ms
            paused = True
        elif decision is FlowDecision.RESUME:
            assert paused
            assert level <= high // 2
            paused = False
        elif paused:
            assert level > high // 2
        else:
            assert full_since is None or now - full_since < hold_ms
    assert flow.paused == paused


def test_pauses_merge_reasons_per_partition() -> None:
    pauses: Pauses = Pauses()
    assert pauses.add("p0", "flow")
    assert not pauses.add("p0", "backoff")
    assert pauses.add("p1", "backoff")
    assert not pauses.remove("p0", "flow")
    assert pauses.is_paused("p0")
    assert pauses.remove("p0", "backoff")
    assert not pauses.remove("p0", "backoff")
    pauses.forget("p1")
    assert not pauses.is_paused("p1")


def test_commit_policy_batches_by_time_or_count() -> None:
    policy = CommitPolicy(interval_ms=1_000, max_records=100)
    assert not policy.due(now_ms=10_000, last_ms=10_000, pending=0)
    assert not policy.due(now_ms=10_500, last_ms=10_000, pending=99)
    assert policy.due(now_ms=10_500, last_ms=10_000, pending=100)
    assert policy.due(now_ms=11_000, last_ms=10_000, pending=1)
