"""The consumer group coordinator (Kafka's classic group protocol).

:class:`GroupCoordinator` is a pure state machine: every operation takes the time
and returns what to answer and what to persist. The runtime that parks requests,
drives timers on the broker's clock and persists records to ``__consumer_offsets``
sits on top of it.
"""

from rivulet.broker.coordinator.config import GroupCoordinatorConfig
from rivulet.broker.coordinator.coordinator import GroupCoordinator, MemberIdFactory
from rivulet.broker.coordinator.model import (
    Completion,
    CoordinatorResult,
    GroupDescription,
    GroupListing,
    GroupProtocol,
    JoinedMember,
    JoinRequest,
    JoinResponse,
    LeaveResult,
    LeavingMember,
    MemberDescription,
    OffsetCommitRequest,
    OffsetDeleteResult,
    OffsetToCommit,
    SyncRequest,
    SyncResponse,
    TopicPartition,
)
from rivulet.broker.coordinator.records import (
    CommittedOffset,
    GroupMetadataRecord,
    GroupMetadataValue,
    MemberMetadataValue,
    OffsetCommitRecord,
    Record,
)
from rivulet.broker.coordinator.state import GroupState

__all__ = [
    "CommittedOffset",
    "Completion",
    "CoordinatorResult",
    "GroupCoordinator",
    "GroupCoordinatorConfig",
    "GroupDescription",
    "GroupListing",
    "GroupMetadataRecord",
    "GroupMetadataValue",
    "GroupProtocol",
    "GroupState",
    "JoinRequest",
    "JoinResponse",
    "JoinedMember",
    "LeaveResult",
    "LeavingMember",
    "MemberDescription",
    "MemberIdFactory",
    "MemberMetadataValue",
    "OffsetCommitRecord",
    "OffsetCommitRequest",
    "OffsetDeleteResult",
    "OffsetToCommit",
    "Record",
    "SyncRequest",
    "SyncResponse",
    "TopicPartition",
]
