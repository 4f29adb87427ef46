"""The cluster calls behind ``rivulet groups``, over confluent-kafka's AdminClient.

The AdminClient speaks the Kafka protocol (ListGroups, DescribeGroups, OffsetFetch,
OffsetCommit, ListOffsets, Metadata), so everything here works against Apache Kafka
as well as the embedded broker. Answers come back as small frozen records of our own,
so that the command's formatting and planning never touch librdkafka objects.

An unreachable cluster fails fast: librdkafka reports "all brokers are down" through
its error callback long before a request times out, and :meth:`GroupAdmin._wait`
turns that report into a :class:`GroupsError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Group",
    "GroupAdmin",
    "GroupListing",
    "GroupsError",
    "Member",
    "Partition",
]

Partition = tuple[str, int]
"""(topic, partition)."""

# librdkafka's state names, as Kafka's own tools spell them.
_STATE_NAMES: Mapping[str, str] = {
    "UNKNOWN": "Unknown",
    "PREPARING_REBALANCING": "PreparingRebalance",
    "COMPLETING_REBALANCING": "CompletingRebalance",
    "STABLE": "Stable",
    "DEAD": "Dead",
    "EMPTY": "Empty",
    "ASSIGNING": "Assigning",
    "RECONCILING": "Reconciling",
}
# What the coordinator answers for a group id it has never heard of: the classic
# DescribeGroups gives state Dead without an error; newer Kafka versions give
# GROUP_ID_NOT_FOUND, which librdkafka raises.
_NOT_FOUND = "GROUP_ID_NOT_FOUND"


class GroupsError(Exception):
    """``rivulet groups`` cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class GroupListing:
    """One line of ListGroups."""

    group_id: str
    state: str


@dataclass(frozen=True)
class Member:
    """A member of a group as DescribeGroups tells it."""

    member_id: str
    client_id: str
    host: str
    group_instance_id: str | None
    assignment: tuple[Partition, ...]


@dataclass(frozen=True)
class Group:
    """A group's state, assignor and members."""

    group_id: str
    state: str
    assignor: str
    members: tuple[Member, ...]

    @property
    def active(self) -> bool:
        """Whether consumers are in the group (it is neither Empty nor Dead)."""
        return bool(self.members) or self.state not in {"Empty", "Dead", "Unknown"}


def _state_name(state: Any) -> str:
    name = str(getattr(state, "name", state))
    return _STATE_NAMES.get(name, name.title())


def _assignment(assignment: Any) -> tuple[Partition, ...]:
    if assignment is None:
        return ()
    return tuple(sorted((tp.topic, tp.partition) for tp in assignment.topic_partitions))


def _error_name(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else None
    name = getattr(error, "name", None)
    return str(name()) if callable(name) else ""


def _error_text(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else exc
    text = getattr(error, "str", None)
    return str(text()) if callable(text) else str(error)


class GroupAdmin:
    """Reads and commits consumer group offsets through one AdminClient.

    ``config`` holds extra librdkafka properties (security, ...); ``timeout_s``
    bounds every request.
    """

    def __init__(
        self, bootstrap_servers: str, *, config: Mapping[str, str] | None = None, timeout_s: float
    ) -> None:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415 - keeps --help fast

        self.bootstrap_servers = bootstrap_servers
        self._timeout_s = timeout_s
        self._errors: list[Any] = []
        settings: dict[str, Any] = {
            # The command prints its own messages; librdkafka's log lines would
            # only repeat them (RIVULET_KAFKA_LOG_LEVEL=7 brings them back).
            "log_level": "0",
            **(config or {}),
            "bootstrap.servers": bootstrap_servers,
            "error_cb": self._errors.append,
        }
        self._admin = AdminClient(settings)

    def _wait(self, futures: Iterable[Future[Any]], doing: str) -> None:
        """Serve the client until every future is done; fail fast if no broker answers."""
        from confluent_kafka import KafkaError  # noqa: PLC0415

        pending = list(futures)
        while not all(f.done() for f in pending):
            self._admin.poll(0.05)
            if any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in self._errors):
                detail = next(
                    (e.str() for e in self._errors if e.code() != KafkaError._ALL_BROKERS_DOWN),
                    "all brokers are down",
                )
                raise GroupsError(
                    f"cannot reach Kafka at {self.bootstrap_servers} while {doing}: {detail}. "
                    "Is the broker running? Pass --bootstrap-servers HOST:PORT "
                    "or set RIVULET_BOOTSTRAP_SERVERS."
                )

    def _result(self, future: Future[Any], doing: str) -> Any:
        self._wait([future], doing)
        try:
            return future.result()
        except Exception as exc:
            raise GroupsError(f"{doing} failed: {_error_text(exc)}") from exc

    def list_groups(self) -> list[GroupListing]:
        """Every group the cluster knows, sorted by id."""
        doing = "listing groups"
        result = self._result(
            self._admin.list_consumer_groups(request_timeout=self._timeout_s), doing
        )
        if result.errors:
            raise GroupsError(f"{doing} failed: {_error_text(result.errors[0])}")
        listings = [
            GroupListing(g.group_id, _state_name(getattr(g, "state", "UNKNOWN")))
            for g in result.valid or []
        ]
        return sorted(listings, key=lambda g: g.group_id)

    def describe(self, group_ids: Sequence[str]) -> dict[str, Group | None]:
        """Each group's description; ``None`` for a group the coordinator does not know."""
        doing = "describing groups"
        futures = self._admin.describe_consumer_groups(
            list(group_ids), request_timeout=self._timeout_s
        )
        self._wait(futures.values(), doing)
        found: dict[str, Group | None] = {}
        for group_id, future in futures.items():
            try:
                d = future.result()
            except Exception as exc:
                if _error_name(exc) == _NOT_FOUND:
                    found[group_id] = None
                    continue
                raise GroupsError(
                    f"describing group {group_id!r} failed: {_error_text(exc)}"
                ) from exc
            state = _state_name(getattr(d, "state", "UNKNOWN"))
            members = tuple(
                Member(
                    member_id=m.member_id,
                    client_id=m.client_id,
                    host=m.host,
                    group_instance_id=m.group_instance_id or None,
                    assignment=_assignment(m.assignment),
                )
                for m in d.members
            )
            unknown = state == "Dead" and not members
            found[group_id] = (
                None if unknown else Group(group_id, state, d.partition_assignor or "", members)
            )
        return found

    def committed(self, group_id: str) -> dict[Partition, int]:
        """The group's committed offsets (partitions without one are left out)."""
        from confluent_kafka import ConsumerGroupTopicPartitions  # noqa: PLC0415

        doing = f"reading the committed offsets of group {group_id!r}"
        futures = self._admin.list_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group_id)], request_timeout=self._timeout_s
        )
        result = self._result(futures[group_id], doing)
        offsets: dict[Partition, int] = {}
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise GroupsError(
                    f"{doing} failed for {tp.topic}[{tp.partition}]: {tp.error.str()}"
                )
            if tp.offset >= 0:
                offsets[(tp.topic, tp.partition)] = tp.offset
        return offsets

    def topic_partitions(self) -> dict[str, list[int]]:
        """Every topic's partition numbers.

        Asking for all topics, not one by name, so that a broker that creates
        topics on use does not create a mistyped one.
        """
        from confluent_kafka import KafkaException  # noqa: PLC0415

        try:
            topics = self._admin.list_topics(timeout=self._timeout_s).topics
        except KafkaException as exc:
            raise GroupsError(
                f"reading topic metadata from {self.bootstrap_servers} failed: {_error_text(exc)}"
            ) from exc
        return {
            name: sorted(meta.partitions) for name, meta in topics.items() if meta.error is None
        }

    def offsets(
        self, partitions: Iterable[Partition], spec: str | int
    ) -> dict[Partition, int | None]:
        """ListOffsets: ``"earliest"``, ``"latest"`` or a timestamp in ms, per partition.

        A timestamp finds the first record at or after it; ``-1`` means there is
        none. A partition the broker could not answer for maps to ``None``.
        """
        from confluent_kafka import TopicPartition, admin  # noqa: PLC0415

        specs: Any = vars(admin)["OffsetSpec"]  # neither exported nor typed in the stubs
        if spec == "earliest":
            offset_spec = specs.earliest()
        elif spec == "latest":
            offset_spec = specs.latest()
        elif isinstance(spec, int):
            offset_spec = specs.for_timestamp(spec)
        else:
            raise ValueError(f"unknown offset spec {spec!r}")
        wanted = sorted(set(partitions))
        if not wanted:
            return {}
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): offset_spec for t, p in wanted},
            request_timeout=self._timeout_s,
        )
        self._wait(futures.values(), "listing offsets")
        found: dict[Partition, int | None] = {}
        for tp, future in futures.items():
            try:
                found[(tp.topic, tp.partition)] = int(future.result().offset)
            except Exception:  # noqa: BLE001 - a deleted topic's partition: shown as unknown
                found[(tp.topic, tp.partition)] = None
        return found

    def commit(self, group_id: str, offsets: Mapping[Partition, int]) -> None:
        """Commit ``offsets`` for ``group_id`` (OffsetCommit as a non-member, like Kafka's tool)."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition  # noqa: PLC0415

        doing = f"committing offsets for group {group_id!r}"
        request = ConsumerGroupTopicPartitions(
            group_id, [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        )
        futures = self._admin.alter_consumer_group_offsets(
            [request], request_timeout=self._timeout_s
        )
        result = self._result(futures[group_id], doing)
        failed = [tp for tp in result.topic_partitions or [] if tp.error is not None]
        if failed:
            first = failed[0].error
            hint = (
                " (a consumer joined the group meanwhile: stop it and run the reset again)"
                if first.name()
                in {"UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "REBALANCE_IN_PROGRESS"}
                else ""
            )
            raise GroupsError(
                f"{doing}: {len(failed)} partition(s) refused, e.g. "
                f"{failed[0].topic}[{failed[0].partition}]: {first.str()}{hint}"
            )
