"""Settings of the group coordinator, named after the Kafka broker configs they mirror."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GroupCoordinatorConfig"]

_DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupCoordinatorConfig:
    """Group coordinator settings; defaults are Kafka's.

    * ``min_session_timeout_ms`` / ``max_session_timeout_ms``:
      ``group.min.session.timeout.ms`` / ``group.max.session.timeout.ms``; a JoinGroup
      outside the range gets INVALID_SESSION_TIMEOUT.
    * ``initial_rebalance_delay_ms``: ``group.initial.rebalance.delay.ms``; how long
      the first rebalance of an empty group waits for more members (tests use 0).
    * ``new_member_join_timeout_ms``: how long a new member's parked JoinGroup may
      wait before the member is dropped (Kafka's fixed 5 minutes).
    * ``max_group_size``: ``group.max.size``.
    * ``offsets_retention_ms``: ``offsets.retention.minutes`` in milliseconds.
    * ``offsets_retention_check_interval_ms``: ``offsets.retention.check.interval.ms``.
    * ``offset_metadata_max_bytes``: ``offset.metadata.max.bytes``.
    """

    min_session_timeout_ms: int = 6_000
    max_session_timeout_ms: int = 1_800_000
    initial_rebalance_delay_ms: int = 3_000
    new_member_join_timeout_ms: int = 300_000
    max_group_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * _DAY_MS
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.min_session_timeout_ms <= self.max_session_timeout_ms:
            raise ValueError(
                "group session timeouts need 0 < min_session_timeout_ms <= max_session_timeout_ms"
            )
        if self.initial_rebalance_delay_ms < 0:
            raise ValueError("initial_rebalance_delay_ms must be 0 (no delay) or more")
        if self.max_group_size < 1:
            raise ValueError("max_group_size must be at least 1")
        if self.offsets_retention_ms < 1 or self.offsets_retention_check_interval_ms < 1:
            raise ValueError("offset retention and its check interval must be positive")
