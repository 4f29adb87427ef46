"""``rivulet dlq list|show|replay``: inspect and re-drive dead letters.

::

    rivulet dlq list orders-dlt
    rivulet dlq show orders-dlt 0:42
    rivulet dlq replay orders-dlt --group inventory --key o-17
    rivulet dlq replay orders-dlt --all

Replaying republishes to the original topic, addressed to the group that failed the
record, with fresh attempts; the dead-letter topic itself is left as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "dlq"
HELP = "list, show and replay dead letters (<topic>-dlt)"


def _position(value: str) -> tuple[int, int]:
    partition, sep, offset = value.partition(":")
    if not sep or not partition.isdigit() or not offset.isdigit():
        raise argparse.ArgumentTypeError(f"expected PARTITION:OFFSET, not {value!r}")
    return int(partition), int(offset)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka (default: RIVULET_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    commands = parser.add_subparsers(dest="dlq_command", metavar="ACTION", required=True)
    listing = commands.add_parser("list", help="one line per dead letter")
    listing.add_argument("topic", help="the dead-letter topic, e.g. orders-dlt")
    listing.add_argument("--group", help="only those a given consumer group failed")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    show = commands.add_parser("show", help="everything about one dead letter")
    show.add_argument("topic")
    show.add_argument("position", type=_position, metavar="PARTITION:OFFSET")
    replay = commands.add_parser("replay", help="republish dead letters to their original topic")
    replay.add_argument("topic")
    replay.add_argument("--group", help="only those a given consumer group failed")
    replay.add_argument("--key", action="append", default=[], help="only this key (repeatable)")
    replay.add_argument(
        "--at", action="append", default=[], type=_position, metavar="PARTITION:OFFSET",
        help="only this record (repeatable)",
    )  # fmt: skip
    replay.add_argument("--all", action="store_true", help="replay without any filter")
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")


def run(args: argparse.Namespace) -> int:
    from rivulet.framework import Settings  # noqa: PLC0415 - keeps --help fast

    settings = Settings.load()
    bootstrap = args.bootstrap_servers or settings.bootstrap_servers or "127.0.0.1:9092"
    config: dict[str, object] = {"bootstrap.servers": bootstrap, **settings.kafka}
    try:
        if args.dlq_command == "list":
            return _list(config, args)
        if args.dlq_command == "show":
            return _show(config, args)
        return _replay(config, args)
    except (LookupError, TimeoutError, ValueError) as exc:
        print(f"rivulet dlq: {exc}", file=sys.stderr)
        return 2


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _key(key: bytes | None) -> str:
    return "-" if key is None else key.decode("utf-8", "replace")


def _list(config: dict[str, object], args: argparse.Namespace) -> int:
    from rivulet.framework._dlq import describe, read_topic, select  # noqa: PLC0415

    letters = [describe(r) for r in select(read_topic(config, args.topic), group=args.group)]
    if args.json:
        for d in letters:
            print(json.dumps(_as_json(d, full=False)))
        return 0
    print(f"{'POSITION':<12} {'TIME':<24} {'KEY':<20} {'GROUP':<16} {'REASON':<16} ERROR")
    for d in letters:
        error = f"{d.exception or '-'}: {d.message or ''}".strip()
        print(
            f"{d.partition}:{d.offset:<10} {_time(d.timestamp_ms):<24} {_key(d.key)[:20]:<20} "
            f"{(d.group or '-')[:16]:<16} {(d.reason or '-')[:16]:<16} {error[:80]}"
        )
    print(f"{len(letters)} dead letters in {args.topic}")
    return 0


def _show(config: dict[str, object], args: argparse.Namespace) -> int:
    from rivulet.framework._dlq import describe, read_topic, select  # noqa: PLC0415

    partition, offset = args.position
    found = select(read_topic(config, args.topic), positions=[(partition, offset)])
    if not found:
        raise LookupError(f"no record at {partition}:{offset} of {args.topic}")
    record = found[0]
    print(json.dumps(_as_json(describe(record), full=True), indent=2))
    print("headers:")
    for name, value in record.headers:
        shown = "null" if value is None else value.decode("utf-8", "replace")
        if name == "kafka_dlt-exception-stacktrace":
            shown = "(above)"
        print(f"  {name}: {shown}")
    return 0


def _as_json(d: Any, *, full: bool) -> dict[str, Any]:
    data = {
        "position": f"{d.partition}:{d.offset}",
        "time": _time(d.timestamp_ms),
        "key": None if d.key is None else _key(d.key),
        "event_id": d.event_id,
        "event_type": d.event_type,
        "original": f"{d.original_topic}[{d.original_partition}]@{d.original_offset}",
        "original_time": _time(d.original_timestamp_ms),
        "group": d.group,
        "reason": d.reason,
        "exception": d.exception,
        "message": d.message,
        "attempts": d.attempts,
    }
    if full:
        data["payload"] = None if d.value is None else d.value.decode("utf-8", "replace")
        data["stacktrace"] = d.stacktrace
    return data


def _replay(config: dict[str, object], args: argparse.Namespace) -> int:
    from rivulet.framework._dlq import (  # noqa: PLC0415
        new_batch_id,
        read_topic,
        replay_records,
        select,
    )

    if not (args.all or args.group or args.key or args.at):
        raise ValueError("say what to replay: --group, --key, --at, or --all")
    chosen = select(
        read_topic(config, args.topic),
        group=args.group,
        keys=[k.encode() for k in args.key],
        positions=args.at,
    )
    batch = new_batch_id()
    records = replay_records(chosen, batch)
    verb = "would replay" if args.dry_run else "replaying"
    for record in records:
        print(f"{verb} {_key(record.key)} -> {record.topic}")
    if not args.dry_run and records:
        asyncio.run(_publish(config, records))
    print(f"{len(records)} records {'selected' if args.dry_run else 'replayed'} (batch {batch})")
    return 0


async def _publish(config: dict[str, object], records: list[Any]) -> None:
    from rivulet.framework._kafka import Producer, producer_config  # noqa: PLC0415

    extra = {k: str(v) for k, v in config.items() if k != "bootstrap.servers"}
    producer = Producer(producer_config(str(config["bootstrap.servers"]), extra))
    producer.start()
    try:
        await producer.send_and_wait(records)
    finally:
        await producer.close(30)
