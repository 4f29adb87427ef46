"""Timers as data: keyed deadlines the coordinator schedules and the runtime drives.

The state machine never sleeps. It schedules a deadline under a key (a member's
session, a group's join or sync phase); scheduling the same key again moves the
deadline, cancelling it forgets it. The runtime asks for :meth:`TimerQueue.next_deadline`,
waits until then on the broker's clock and hands the time back, and the
coordinator pops the keys that are due.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["TimerQueue"]

K = TypeVar("K", bound=Hashable)


class TimerQueue(Generic[K]):
    """Deadlines by key with replace-on-schedule semantics.

    A heap holds every scheduled ``(deadline, seq, key)``; an entry is live only
    while the dict still maps its key to its deadline and sequence number, so
    rescheduling and cancelling are O(1) and stale entries are dropped lazily.
    """

    def __init__(self) -> None:
        self._live: dict[K, tuple[int, int]] = {}
        self._heap: list[tuple[int, int, K]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def schedule(self, key: K, deadline_ms: int) -> None:
        """Fire ``key`` at ``deadline_ms``, replacing any deadline it had."""
        seq = next(self._seq)
        self._live[key] = (deadline_ms, seq)
        heapq.heappush(self._heap, (deadline_ms, seq, key))
        # Heartbeats reschedule constantly; rebuild before stale entries dominate.
        if len(self._heap) > 64 + 4 * len(self._live):
            self._heap = [(d, s, k) for k, (d, s) in self._live.items()]
            heapq.heapify(self._heap)

    def cancel(self, key: K) -> None:
        """Forget ``key``'s deadline, if it has one."""
        self._live.pop(key, None)

    def deadline(self, key: K) -> int | None:
        """When ``key`` fires, or ``None`` if it is not scheduled."""
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def next_deadline(self) -> int | None:
        """The earliest live deadline, or ``None`` when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now_ms: int) -> tuple[int, K] | None:
        """Remove the earliest key whose deadline is ``<= now_ms``; return (deadline, key)."""
        self._drop_stale()
        if not self._heap or self._heap[0][0] > now_ms:
            return None
        deadline, _seq, key = heapq.heappop(self._heap)
        del self._live[key]
        return deadline, key

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            if self._live.get(key) == (deadline, seq):
                return
            heapq.heappop(heap)
