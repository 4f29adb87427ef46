"""In-flight records, commit positions and backpressure: the delivery rules as pure logic.

The runtime feeds these objects what happened (a record was fetched, its handler
returned, its effects became durable) and acts on what they answer (start these
records, commit this offset, pause these partitions). Nothing here performs I/O or
reads a clock, so every rule is tested on its own.

A record of a partition moves through four states::

    waiting --start--> running --release--> released --complete--> complete
                 (handler called)  (handler returned;      (its publishes are
                                    same-key successor      confirmed: the commit
                                    may start)              may pass it)

Two objects keep the rules, one each:

* :class:`CommitLine` (**never commit past an unfinished record**): the commit position
  is the lowest offset not yet complete, or one past the last record when all are;
* :class:`PartitionWindow` (**per-key order** and **bounded concurrency**, used when a
  handler runs with ``concurrency`` above 1): a record starts only after every earlier
  record with the same key has been released (records without a key count as one key),
  and at most ``concurrency`` records of the partition run at once. With the default
  concurrency of 1 the partition is handled strictly in offset order and no window is
  needed.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = [
    "CommitLine",
    "CommitPolicy",
    "FlowControl",
    "FlowDecision",
    "PartitionWindow",
    "Pauses",
]


class Tracked(Protocol):
    """What :class:`CommitLine` reads of an accepted record."""

    @property
    def offset(self) -> int: ...

    @property
    def done(self) -> bool: ...


T = TypeVar("T", bound=Tracked)


class CommitLine(Generic[T]):
    """The accepted records of one partition that are not yet committable, in offset order.

    Records are added in offset order when accepted and flag themselves ``done`` when
    complete, in any order; :meth:`settle` drops done records from the front only, so
    the first record left is the one the commit must stop at.

    >>> class Rec:
    ...     def __init__(self, offset):
    ...         self.offset, self.done = offset, False
    >>> line = CommitLine()
    >>> a, b = Rec(10), Rec(11)
    >>> line.add(a); line.add(b)
    >>> b.done = True                # done out of order: the commit cannot pass 10
    >>> line.settle(), line.position(after=12)
    (0, 10)
    >>> a.done = True
    >>> line.settle(), line.position(after=12), len(line)
    (2, 12, 0)
    """

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: deque[T] = deque()

    def add(self, entry: T) -> None:
        """An accepted record (offsets increase from one call to the next)."""
        self._entries.append(entry)

    def settle(self) -> int:
        """Drop done records from the front; returns how many were dropped."""
        entries = self._entries
        count = 0
        while entries and entries[0].done:
            entries.popleft()
            count += 1
        return count

    def position(self, *, after: int | None) -> int | None:
        """The offset to commit: the first record kept, else ``after`` (one past the last).

        Call :meth:`settle` first, or done records at the front hold the position back.
        """
        if self._entries:
            return self._entries[0].offset
        return after

    def __len__(self) -> int:
        """Records kept: not yet done, or done behind one that is not (after a settle)."""
        return len(self._entries)


class PartitionWindow:
    """Which fetched records of a partition may start, for ``concurrency`` above 1.

    >>> window = PartitionWindow(concurrency=2)
    >>> for offset, key in [(10, b"a"), (11, b"a"), (12, b"b")]:
    ...     window.add(offset, key)
    >>> window.start_ready()          # 11 waits behind 10, which has the same key
    [10, 12]
    >>> window.release(10)
    >>> window.start_ready(), window.running
    ([11], 2)
    """

    __slots__ = ("_busy", "_key_of", "_last_added", "_ready", "_running", "concurrency")

    def __init__(self, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self._key_of: dict[int, Hashable] = {}  # key of each waiting or running offset
        self._busy: dict[Hashable, deque[int]] = {}  # key -> successors queued behind it
        self._ready: list[int] = []  # heap: offsets whose key is free, waiting for a slot
        self._running: set[int] = set()
        self._last_added: int | None = None

    def add(self, offset: int, key: Hashable) -> None:
        """A fetched record; offsets must increase (gaps are fine: compaction, markers)."""
        if self._last_added is not None and offset <= self._last_added:
            raise ValueError(f"offset {offset} added after {self._last_added}")
        self._last_added = offset
        self._key_of[offset] = key
        queue = self._busy.get(key)
        if queue is None:
            self._busy[key] = deque()
            heapq.heappush(self._ready, offset)
        else:
            queue.append(offset)

    def start_ready(self) -> list[int]:
        """Offsets to hand to the handler now (lowest first); they become running."""
        started: list[int] = []
        while self._ready and len(self._running) < self.concurrency:
            offset = heapq.heappop(self._ready)
            self._running.add(offset)
            started.append(offset)
        return started

    def release(self, offset: int) -> None:
        """The handler for ``offset`` returned: its slot and its key are free again."""
        if offset not in self._running:
            raise ValueError(f"offset {offset} released but not running")
        self._running.remove(offset)
        key = self._key_of.pop(offset)
        queue = self._busy[key]
        if queue:
            heapq.heappush(self._ready, queue.popleft())
        else:
            del self._busy[key]

    @property
    def running(self) -> int:
        """Records whose handler is executing."""
        return len(self._running)


class FlowDecision(Enum):
    """What to do with the consumer's partitions after a change in in-flight records."""

    PAUSE = "pause"
    RESUME = "resume"


@dataclass(slots=True)
class FlowControl:
    """Pause partitions when in-flight work stays at ``high`` for ``hold_ms``; resume at ``low``.

    The consumer never takes more records than ``high`` leaves room for, so the records
    the framework holds are bounded anyway. Pausing also makes librdkafka drop what it
    prefetched and stop fetching, which bounds the client's memory while handlers stay
    slower than the input; since a resumed partition takes a fetch round trip to flow
    again, short bursts at the bound do not pause.

    >>> flow = FlowControl(high=100, low=50, hold_ms=1_000)
    >>> flow.update(100, now_ms=0), flow.update(100, now_ms=999), flow.update(100, now_ms=1_000)
    (None, None, <FlowDecision.PAUSE: 'pause'>)
    >>> flow.update(60, now_ms=1_100), flow.update(50, now_ms=1_200)
    (None, <FlowDecision.RESUME: 'resume'>)
    """

    high: int
    low: int = -1
    hold_ms: int = 1_000
    paused: bool = False
    _full_since: int | None = None

    def __post_init__(self) -> None:
        if self.low < 0:
            self.low = self.high // 2
        if not 0 <= self.low < self.high:
            raise ValueError("FlowControl needs 0 <= low < high")

    def room(self, in_flight: int) -> int:
        """How many more records may be taken now."""
        return max(0, self.high - in_flight)

    def update(self, in_flight: int, *, now_ms: int) -> FlowDecision | None:
        """The decision for the current number of in-flight records, if it changes anything."""
        if in_flight < self.high:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = now_ms
        if self.paused:
            if in_flight <= self.low:
                self.paused = False
                return FlowDecision.RESUME
            return None
        if self._full_since is not None and now_ms - self._full_since >= self.hold_ms:
            self.paused = True
            return FlowDecision.PAUSE
        return None


@dataclass(slots=True)
class Pauses:
    """A partition is paused while any reason holds (backpressure, retry backoff, parking).

    >>> pauses: Pauses = Pauses()
    >>> pauses.add(("orders", 0), "flow"), pauses.add(("orders", 0), "backoff")
    (True, False)
    >>> pauses.remove(("orders", 0), "flow"), pauses.remove(("orders", 0), "backoff")
    (False, True)
    """

    _reasons: dict[Hashable, set[str]] = field(default_factory=dict)

    def add(self, partition: Hashable, reason: str) -> bool:
        """Record a reason; ``True`` when the partition must be paused now."""
        reasons = self._reasons.setdefault(partition, set())
        newly = not reasons
        reasons.add(reason)
        return newly

    def remove(self, partition: Hashable, reason: str) -> bool:
        """Drop a reason; ``True`` when the partition must be resumed now."""
        reasons = self._reasons.get(partition)
        if not reasons or reason not in reasons:
            return False
        reasons.remove(reason)
        if reasons:
            return False
        del self._reasons[partition]
        return True

    def forget(self, partition: Hashable) -> None:
        """The partition was revoked: its pauses go with it."""
        self._reasons.pop(partition, None)

    def any(self) -> bool:
        """Whether any partition is paused."""
        return bool(self._reasons)

    def is_paused(self, partition: Hashable) -> bool:
        """Whether any reason holds."""
        return bool(self._reasons.get(partition))

    def has(self, partition: Hashable, reason: str) -> bool:
        """Whether ``reason`` holds for the partition."""
        return reason in self._reasons.get(partition, ())


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """Commit in batches: when ``interval_ms`` has passed or ``max_records`` completed.

    >>> CommitPolicy(interval_ms=1000, max_records=500).due(now_ms=1500, last_ms=1000, pending=3)
    False
    """

    interval_ms: int = 1_000
    max_records: int = 10_000

    def due(self, *, now_ms: int, last_ms: int, pending: int) -> bool:
        """Whether to commit now, given the last commit time and completed-uncommitted records."""
        if pending <= 0:
            return False
        return pending >= self.max_records or now_ms - last_ms >= self.interval_ms
