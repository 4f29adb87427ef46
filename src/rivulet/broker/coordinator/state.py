"""The classic consumer group states and the transitions Kafka allows between them.

The table is data, as in Kafka's ``ClassicGroupState``: each state lists the states
a group may come from. :func:`check_transition` is the only way a group changes
state, so a bug that would take a group along an edge Kafka never takes fails
loudly instead of confusing clients.

::

    Empty --------------> PreparingRebalance <---------------+
      ^                     |        ^                       |
      |   (no members left) |        | (join/leave/expiry)   |
      +---------------------+        |                       |
                            v        |                       |
                       CompletingRebalance -------------> Stable
                                        (leader's SyncGroup)

    Dead: reachable from every state (group deleted or expired), never left.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["VALID_PREVIOUS_STATES", "GroupState", "InvalidTransitionError", "check_transition"]


class GroupState(enum.Enum):
    """A classic group's state; the value is the name Kafka reports on the wire."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"

    @classmethod
    def parse(cls, name: str) -> GroupState | None:
        """The state named ``name`` (case-insensitive, as ListGroups filters are)."""
        folded = name.casefold()
        for state in cls:
            if state.value.casefold() == folded:
                return state
        return None


_S = GroupState

VALID_PREVIOUS_STATES: Mapping[GroupState, frozenset[GroupState]] = MappingProxyType(
    {
        # Every member left, or the join phase completed with nobody in it.
        _S.EMPTY: frozenset({_S.PREPARING_REBALANCE}),
        # A member joined, rejoined with new metadata, left or timed out.
        _S.PREPARING_REBALANCE: frozenset({_S.EMPTY, _S.STABLE, _S.COMPLETING_REBALANCE}),
        # The join phase completed: waiting for the leader's assignment.
        _S.COMPLETING_REBALANCE: frozenset({_S.PREPARING_REBALANCE}),
        # The leader's assignment was received and handed out.
        _S.STABLE: frozenset({_S.COMPLETING_REBALANCE}),
        # Deleted (DeleteGroups) or expired (no members and no offsets left).
        _S.DEAD: frozenset(GroupState),
    }
)


class InvalidTransitionError(AssertionError):
    """A coordinator bug: a group was about to take an edge the state table forbids."""


def check_transition(old: GroupState, new: GroupState) -> None:
    """Raise :class:`InvalidTransitionError` unless ``old -> new`` is in the table."""
    if old not in VALID_PREVIOUS_STATES[new]:
        raise InvalidTransitionError(f"a group cannot go from {old.value} to {new.value}")
