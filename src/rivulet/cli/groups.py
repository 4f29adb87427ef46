"""``rivulet groups list|describe|reset-offsets``: consumer groups, their lag, and rewinds.

::

    rivulet groups list
    rivulet groups describe orders-service            # like kafka-consumer-groups --describe
    rivulet groups describe orders-service --json
    rivulet groups reset-offsets orders-service --topic orders --to-earliest --dry-run
    rivulet groups reset-offsets orders-service --topic orders:0,2 --to-offset 1000
    rivulet groups reset-offsets orders-service --topic orders --to-datetime 2024-05-01T12:00:00Z

Everything goes through the Kafka protocol (confluent-kafka's AdminClient), so the
commands work against Apache Kafka as well as the embedded broker. The cluster is
``--bootstrap-servers``, else ``RIVULET_BOOTSTRAP_SERVERS``, else 127.0.0.1:9092;
``RIVULET_KAFKA_*`` client properties (security, ...) apply as for services.

LAG is LOG-END-OFFSET minus CURRENT-OFFSET (the committed offset), per partition,
as Kafka's tool computes it; a partition without a committed offset shows ``-``.

A reset is refused while the group has members: they would overwrite the new
offsets with their own next commit. Like Kafka's tool, ``--to-offset`` is clamped
to each partition's earliest and log end offsets, and ``--to-datetime`` moves to
the first record at or after the time (the log end when there is none); a date
and time without a zone is local time. Unlike Kafka's tool, which only shows the
plan unless given ``--execute``, the reset is applied unless ``--dry-run`` is given.

Exit status: 0 done, 1 refused or failed (the message says why), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rivulet.cli._group_admin import Group, GroupAdmin, Member, Partition

__all__ = [
    "HELP",
    "NAME",
    "Move",
    "PartitionLag",
    "ResetTo",
    "TopicSelection",
    "add_arguments",
    "lag_rows",
    "parse_datetime",
    "parse_topic",
    "plan_reset",
    "run",
]

NAME = "groups"
HELP = "list and describe consumer groups (members, lag); reset their offsets"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NONE = "-"


@dataclass(frozen=True)
class TopicSelection:
    """``--topic T`` (every partition) or ``--topic T:0,2`` (those partitions)."""

    topic: str
    partitions: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ResetTo:
    """Where a reset moves each partition."""

    kind: Literal["earliest", "latest", "offset", "datetime"]
    offset: int = 0
    """The target of ``--to-offset``."""
    timestamp_ms: int = 0
    """The time of ``--to-datetime``, in ms since the epoch."""


@dataclass(frozen=True)
class Move:
    """One partition of a reset plan."""

    topic: str
    partition: int
    current: int | None
    new: int
    note: str = ""


@dataclass(frozen=True)
class PartitionLag:
    """One line of ``describe``: a partition assigned to, or committed by, the group."""

    topic: str
    partition: int
    committed: int | None
    log_end: int | None
    member: Member | None

    @property
    def lag(self) -> int | None:
        """Log end offset minus committed offset (unclamped, as Kafka's tool shows it)."""
        if self.committed is None or self.log_end is None:
            return None
        return self.log_end - self.committed


def parse_topic(text: str) -> TopicSelection:
    """Parse ``TOPIC`` or ``TOPIC:P[,P...]``.

    >>> parse_topic("orders:0,2")
    TopicSelection(topic='orders', partitions=(0, 2))
    """
    topic, sep, numbers = text.partition(":")
    if not topic:
        raise argparse.ArgumentTypeError(f"expected TOPIC or TOPIC:P,P,..., not {text!r}")
    if not sep:
        return TopicSelection(topic)
    parts = [n.strip() for n in numbers.split(",")]
    if not all(n.isdigit() for n in parts):
        raise argparse.ArgumentTypeError(
            f"expected TOPIC:P,P,... with partition numbers, not {text!r}"
        )
    return TopicSelection(topic, tuple(sorted({int(n) for n in parts})))


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date and time; without a zone it is local time (as Kafka's tool reads it).

    >>> parse_datetime("2024-05-01T12:00:00Z").isoformat()
    '2024-05-01T12:00:00+00:00'
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date and time; "
            "write e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00"
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


def _offset(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--to-offset wants a non-negative offset, not {text!r}")
    return int(text)


def _connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the action (`rivulet groups describe G --bootstrap-servers
    # ...` reads naturally); the action's copies only override what was given.
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        default=None if top else argparse.SUPPRESS,
        help="Kafka (default: RIVULET_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0 if top else argparse.SUPPRESS,
        metavar="SECONDS",
        help="how long to wait for each answer (default: 30)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="groups_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="every consumer group, its state and members")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    _connection_options(listing, top=False)
    describe = commands.add_parser(
        "describe", help="members, assignments, committed offsets and lag of one group"
    )
    describe.add_argument("group")
    describe.add_argument("--json", action="store_true", help="JSON instead of tables")
    _connection_options(describe, top=False)
    reset = commands.add_parser(
        "reset-offsets", help="move a stopped group's committed offsets (refused while it runs)"
    )
    reset.add_argument("group")
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--topic",
        action="append",
        type=parse_topic,
        metavar="TOPIC[:P,...]",
        help="a topic, or some of its partitions (repeatable)",
    )
    which.add_argument(
        "--all-topics", action="store_true", help="every topic the group has committed offsets for"
    )
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="the earliest offset still kept")
    to.add_argument("--to-latest", action="store_true", help="the log end: skip everything")
    to.add_argument("--to-offset", type=_offset, metavar="N", help="offset N (clamped)")
    to.add_argument(
        "--to-datetime",
        type=parse_datetime,
        metavar="ISO8601",
        help="the first record at or after this time, e.g. 2024-05-01T12:00:00Z",
    )
    reset.add_argument("--dry-run", action="store_true", help="print the plan, commit nothing")
    reset.add_argument("--json", action="store_true", help="the plan as JSON")
    _connection_options(reset, top=False)


def _reset_to(args: argparse.Namespace) -> ResetTo:
    if args.to_earliest:
        return ResetTo("earliest")
    if args.to_latest:
        return ResetTo("latest")
    if args.to_offset is not None:
        return ResetTo("offset", offset=args.to_offset)
    moment: datetime = args.to_datetime
    return ResetTo("datetime", timestamp_ms=(moment - _EPOCH) // timedelta(milliseconds=1))


def run(args: argparse.Namespace) -> int:
    from rivulet.cli._group_admin import GroupAdmin, GroupsError  # noqa: PLC0415
    from rivulet.framework import ConfigurationError, Settings  # noqa: PLC0415

    try:
        settings = Settings.load()
    except ConfigurationError as exc:
        print(f"rivulet groups: {exc}", file=sys.stderr)
        return 2
    bootstrap = args.bootstrap_servers or settings.bootstrap_servers or "127.0.0.1:9092"
    admin = GroupAdmin(bootstrap, config=settings.kafka, timeout_s=args.timeout)
    try:
        if args.groups_command == "list":
            _list(admin, as_json=args.json)
        elif args.groups_command == "describe":
            _describe(admin, args.group, as_json=args.json)
        else:
            _reset(admin, args)
    except GroupsError as exc:
        print(f"rivulet groups: {exc}", file=sys.stderr)
        return 1
    return 0


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = [list(header), *([_NONE if c is None else str(c) for c in r] for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _list(admin: GroupAdmin, *, as_json: bool) -> None:
    listings = admin.list_groups()
    described = admin.describe([g.group_id for g in listings]) if listings else {}
    rows = []
    for g in listings:
        group = described.get(g.group_id)
        # The description is fresher than the listing (one more round trip later).
        state = group.state if group is not None else g.state
        rows.append((g.group_id, state, len(group.members) if group is not None else 0))
    if as_json:
        print(json.dumps([{"group": n, "state": s, "members": m} for n, s, m in rows], indent=2))
    elif rows:
        print(_table(("GROUP", "STATE", "MEMBERS"), rows))
    else:
        print(f"no consumer groups at {admin.bootstrap_servers}")


def lag_rows(
    group: Group | None,
    committed: Mapping[Partition, int],
    log_ends: Mapping[Partition, int | None],
) -> list[PartitionLag]:
    """One row per partition that is assigned to a member or has a committed offset."""
    owners: dict[Partition, Member] = {}
    for member in group.members if group is not None else ():
        for tp in member.assignment:
            owners[tp] = member
    return [
        PartitionLag(tp[0], tp[1], committed.get(tp), log_ends.get(tp), owners.get(tp))
        for tp in sorted(owners.keys() | committed.keys())
    ]


def _unknown_group(admin: GroupAdmin, group_id: str) -> str:
    return (
        f"consumer group {group_id!r} does not exist at {admin.bootstrap_servers} "
        "(`rivulet groups list` shows the groups there are)"
    )


def _describe(admin: GroupAdmin, group_id: str, *, as_json: bool) -> None:
    from rivulet.cli._group_admin import GroupsError  # noqa: PLC0415

    group = admin.describe([group_id])[group_id]
    committed = admin.committed(group_id)
    if group is None and not committed:
        raise GroupsError(_unknown_group(admin, group_id))
    assigned = {tp for m in group.members for tp in m.assignment} if group is not None else set()
    log_ends = admin.offsets(assigned | committed.keys(), "latest")
    rows = lag_rows(group, committed, log_ends)
    state = group.state if group is not None else "Empty"
    assignor = group.assignor if group is not None else ""
    members = group.members if group is not None else ()
    if as_json:
        print(json.dumps(_describe_json(group_id, state, assignor, members, rows), indent=2))
        return
    total = sum(r.lag for r in rows if r.lag is not None)
    print(
        f"Consumer group {group_id!r}: state {state}, assignor {assignor or _NONE}, "
        f"{len(members)} member(s), total lag {total}"
    )
    print()
    if not members:
        print(f"Consumer group {group_id!r} has no active members.")
        print()
    if rows:
        print(
            _table(
                ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
                 "CONSUMER-ID", "HOST", "CLIENT-ID"),
                (
                    (group_id, r.topic, r.partition, r.committed, r.log_end, r.lag,
                     r.member.member_id if r.member else None,
                     r.member.host if r.member else None,
                     r.member.client_id if r.member else None)
                    for r in rows
                ),
            )
        )  # fmt: skip
    else:
        print("No partitions are assigned to the group and it has committed no offsets.")
    if members:
        print()
        print(
            _table(
                ("CONSUMER-ID", "GROUP-INSTANCE-ID", "HOST", "CLIENT-ID", "#PARTITIONS",
                 "ASSIGNMENT"),
                (
                    (m.member_id, m.group_instance_id, m.host, m.client_id, len(m.assignment),
                     _assignment_text(m.assignment))
                    for m in members
                ),
            )
        )  # fmt: skip


def _assignment_text(assignment: Sequence[Partition]) -> str:
    """Kafka's ``--members --verbose`` style: ``orders(0,1,2), payments(0)``."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in assignment:
        by_topic.setdefault(topic, []).append(partition)
    text = ", ".join(f"{t}({','.join(map(str, ps))})" for t, ps in sorted(by_topic.items()))
    return text or _NONE


def _describe_json(
    group_id: str,
    state: str,
    assignor: str,
    members: Sequence[Member],
    rows: Sequence[PartitionLag],
) -> dict[str, Any]:
    return {
        "group": group_id,
        "state": state,
        "assignor": assignor,
        "members": [
            {
                "member_id": m.member_id,
                "group_instance_id": m.group_instance_id,
                "client_id": m.client_id,
                "host": m.host,
                "assignment": [{"topic": t, "partition": p} for t, p in m.assignment],
            }
            for m in members
        ],
        "partitions": [
            {
                "topic": r.topic,
                "partition": r.partition,
                "committed_offset": r.committed,
                "log_end_offset": r.log_end,
                "lag": r.lag,
                "member_id": r.member.member_id if r.member else None,
            }
            for r in rows
        ],
        "total_lag": sum(r.lag for r in rows if r.lag is not None),
    }


def _chosen_partitions(
    selections: Sequence[TopicSelection] | None,
    topics: Mapping[str, Sequence[int]],
    committed: Mapping[Partition, int],
) -> list[Partition]:
    from rivulet.cli._group_admin import GroupsError  # noqa: PLC0415

    if selections is None:
        return sorted(tp for tp in committed if tp[0] in topics)
    chosen: set[Partition] = set()
    for s in selections:
        if s.topic not in topics:
            raise GroupsError(f"topic {s.topic!r} does not exist")
        existing = topics[s.topic]
        wanted = s.partitions if s.partitions is not None else tuple(existing)
        missing = [p for p in wanted if p not in existing]
        if missing:
            raise GroupsError(
                f"topic {s.topic!r} has partitions 0-{len(existing) - 1}, "
                f"not {', '.join(map(str, missing))}"
            )
        chosen.update((s.topic, p) for p in wanted)
    return sorted(chosen)


def plan_reset(
    partitions: Iterable[Partition],
    to: ResetTo,
    *,
    committed: Mapping[Partition, int],
    earliest: Mapping[Partition, int | None],
    latest: Mapping[Partition, int | None],
    at_time: Mapping[Partition, int | None] | None = None,
) -> list[Move]:
    """Where each partition goes: the rules of Kafka's ``--reset-offsets``.

    ``at_time`` holds, for ``--to-datetime``, the first offset at or after the
    time (``-1`` or ``None``: no such record, so the log end).

    >>> tp = ("t", 0)
    >>> plan_reset([tp], ResetTo("offset", offset=99), committed={tp: 3},
    ...            earliest={tp: 0}, latest={tp: 10})
    [Move(topic='t', partition=0, current=3, new=10, note='clamped from 99 to the log end')]
    """
    from rivulet.cli._group_admin import GroupsError  # noqa: PLC0415

    moves = []
    for tp in sorted(partitions):
        low, high = earliest.get(tp), latest.get(tp)
        if low is None or high is None:
            raise GroupsError(f"the broker gave no earliest/latest offset for {tp[0]}[{tp[1]}]")
        note = ""
        if to.kind == "earliest":
            new = low
        elif to.kind == "latest":
            new = high
        elif to.kind == "offset":
            new = min(max(to.offset, low), high)
            if new != to.offset:
                where = "the log end" if new == high else "the earliest offset"
                note = f"clamped from {to.offset} to {where}"
        else:
            found = (at_time or {}).get(tp)
            if found is None or found < 0:
                new, note = high, "no record at or after the time: the log end"
            else:
                new = found
        moves.append(Move(tp[0], tp[1], committed.get(tp), new, note))
    return moves


def _refusal(group: Group) -> str:
    names = ", ".join(
        m.member_id + (f" ({m.group_instance_id})" if m.group_instance_id else "")
        for m in group.members
    )
    text = (
        f"consumer group {group.group_id!r} is active (state {group.state}, "
        f"{len(group.members)} member(s): {names or _NONE}): stop its consumers first, "
        "or their next commit would overwrite the new offsets"
    )
    if any(m.group_instance_id for m in group.members):
        text += (
            "; a static member (group.instance.id) that stopped without leaving "
            "keeps its place until its session.timeout.ms runs out"
        )
    return text


def _reset(admin: GroupAdmin, args: argparse.Namespace) -> None:
    from rivulet.cli._group_admin import GroupsError  # noqa: PLC0415

    group_id: str = args.group
    group = admin.describe([group_id])[group_id]
    if group is not None and group.active:
        raise GroupsError(_refusal(group))
    committed = admin.committed(group_id)
    partitions = _chosen_partitions(args.topic, admin.topic_partitions(), committed)
    if not partitions:
        raise GroupsError(
            f"consumer group {group_id!r} has no committed offsets, so --all-topics "
            "selects nothing: name the topics with --topic"
        )
    to = _reset_to(args)
    moves = plan_reset(
        partitions,
        to,
        committed=committed,
        earliest=admin.offsets(partitions, "earliest"),
        latest=admin.offsets(partitions, "latest"),
        at_time=admin.offsets(partitions, to.timestamp_ms) if to.kind == "datetime" else None,
    )
    if not args.dry_run:
        admin.commit(group_id, {(m.topic, m.partition): m.new for m in moves})
    if args.json:
        print(json.dumps(_plan_json(group_id, moves, applied=not args.dry_run), indent=2))
        return
    if group is None and not committed:
        print(f"Consumer group {group_id!r} does not exist yet: the reset creates its offsets.")
    print(
        _table(
            ("GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "NOTE"),
            ((group_id, m.topic, m.partition, m.current, m.new, m.note) for m in moves),
        )
    )
    if args.dry_run:
        print("Dry run: nothing committed (run again without --dry-run to apply).")
    else:
        print(f"Committed the new offsets of {len(moves)} partition(s) for group {group_id!r}.")


def _plan_json(group_id: str, moves: Sequence[Move], *, applied: bool) -> dict[str, Any]:
    return {
        "group": group_id,
        "applied": applied,
        "partitions": [
            {
                "topic": m.topic,
                "partition": m.partition,
                "current_offset": m.current,
                "new_offset": m.new,
                "note": m.note or None,
            }
            for m in moves
        ],
    }
