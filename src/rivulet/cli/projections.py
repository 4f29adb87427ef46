"""``rivulet projections rebuild NAME``: rebuild a read model by replaying its source topics.

A projection (such as the shop's ``analytics``, :data:`shop.analytics.projection`)
stores, with its rows, the next offset to fold in each source partition. A rebuild
reads every source partition from its first offset up to those positions, folds the
events afresh with the projection's own fold, and replaces the rows in one
transaction that holds the live service's writes off (SQLite's write lock; a table
lock on PostgreSQL) while it folds what the live service folded meanwhile. So it runs
next to the live service, which waits only for that last step, and ends at exactly
the positions the live rows had: the report says whether the rebuilt rows are
identical to the ones replaced (``--dry-run`` compares without replacing).

Records that are not events of the projection's types (undecodable, other types)
are skipped, as the live service skips (dead-letters) them.

By default the Kafka address and database come from ``<data-dir>/up.json``, written
by ``rivulet up``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["HELP", "KNOWN", "NAME", "RebuildReport", "add_arguments", "rebuild", "run"]

NAME = "projections"
HELP = "rebuild a projection (read model) by replaying its source topics"

KNOWN: Mapping[str, str] = {"analytics": "shop.analytics:projection"}
"""Projections known by name; any other is given as ``MODULE:ATTRIBUTE``."""

Position = tuple[str, int]


class ProjectionSpec(Protocol):
    """What a rebuildable projection provides (see :class:`shop.analytics.Projection`)."""

    @property
    def name(self) -> str: ...
    @property
    def app_name(self) -> str: ...
    @property
    def sources(self) -> Mapping[str, tuple[type[Any], ...]]: ...

    def fold(self, facts: Any, event: Any) -> Any: ...
    async def create_tables(self, tx: Any) -> None: ...
    async def lock(self, tx: Any) -> None: ...
    async def positions(self, tx: Any) -> dict[Position, int]: ...
    async def all_facts(self, tx: Any) -> dict[str, Any]: ...
    async def replace(self, tx: Any, facts: Any, positions: Mapping[Position, int]) -> None: ...


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did."""

    name: str
    events: int
    skipped: int
    rows: int
    rounds: int
    identical: bool
    differing: tuple[str, ...]
    replaced: bool
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the projections known by name")
    listing.set_defaults(projection=None)
    rebuild_cmd = actions.add_parser(
        "rebuild", help="rebuild a projection from its source topics", description=__doc__
    )
    rebuild_cmd.add_argument("projection", metavar="NAME", help="e.g. analytics, or MODULE:ATTR")
    rebuild_cmd.add_argument("--data-dir", type=Path, default=Path(".rivulet"))
    rebuild_cmd.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        default=os.environ.get("RIVULET_BOOTSTRAP_SERVERS") or None,
        help="default: RIVULET_BOOTSTRAP_SERVERS, else the broker of `rivulet up`",
    )
    rebuild_cmd.add_argument(
        "--database-url",
        metavar="URL",
        help="the projection's database (default: the one `rivulet up` gave its service)",
    )
    rebuild_cmd.add_argument(
        "--dry-run", action="store_true", help="compare with the live rows, replace nothing"
    )


def _load(name: str) -> ProjectionSpec:
    target = KNOWN.get(name, name)
    module_name, sep, attribute = target.partition(":")
    if not sep:
        raise LookupError(f"unknown projection {name!r}: known {sorted(KNOWN)}, or MODULE:ATTR")
    spec: ProjectionSpec = getattr(importlib.import_module(module_name), attribute)
    return spec


def _read(
    bootstrap: str,
    start: Mapping[Position, int],
    end: Mapping[Position, int],
) -> list[tuple[str, int, int, list[tuple[str, bytes | None]], bytes | None]]:
    """Records of each partition in ``[start, end)``, in offset order per partition."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    wanted = {tp: (start.get(tp, 0), stop) for tp, stop in end.items() if stop > start.get(tp, 0)}
    if not wanted:
        return []
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "rivulet-projections-rebuild",
         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10}
    )  # fmt: skip
    records: list[Any] = []
    try:
        consumer.assign([TopicPartition(t, p, first) for (t, p), (first, _) in wanted.items()])
        left = dict(wanted)
        deadline = time.monotonic() + 300
        while left:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {sorted(left)} within 300 s")
            for message in consumer.consume(1000, 1.0):
                offset, topic, partition = message.offset(), message.topic(), message.partition()
                if message.error() is not None or offset is None or topic is None:
                    continue
                key = (topic, partition)
                if key not in left or offset >= left[key][1]:
                    continue
                records.append((topic, partition, offset, list(message.headers() or []),
                                message.value()))  # fmt: skip
                if offset + 1 >= left[key][1]:
                    del left[key]
        return records
    finally:
        consumer.close()


def _decode(
    spec: ProjectionSpec, topic: str, headers: list[tuple[str, bytes | None]], value: bytes | None
) -> Any | None:
    from rivulet.framework import FrameworkError, JsonSerializer  # noqa: PLC0415

    event_type = next((v.decode() for k, v in headers if k == "ce_type" and v is not None), None)
    models = {model.__name__: model for model in spec.sources.get(topic, ())}
    model = models.get(event_type or "")
    if model is None or value is None:
        return None
    try:
        return JsonSerializer().decode(value, model, topic=topic)
    except FrameworkError:
        return None


async def rebuild(
    spec: ProjectionSpec, *, bootstrap_servers: str, database_url: str, dry_run: bool = False
) -> RebuildReport:
    """Rebuild ``spec`` from its topics into its database (see the module docstring)."""
    import asyncio  # noqa: PLC0415

    from rivulet import App, Settings  # noqa: PLC0415

    started = time.monotonic()
    app = App(f"{spec.name}-rebuild")
    settings = Settings(
        bootstrap_servers=bootstrap_servers,
        database_url=database_url,
        create_topics=False,
        outbox_relay=False,
        log_level="WARNING",
    )
    facts: dict[str, Any] = {}
    counts = [0, 0]  # events folded, records skipped

    async def fold_up_to(start: Mapping[Position, int], end: Mapping[Position, int]) -> None:
        records = await asyncio.to_thread(_read, bootstrap_servers, start, end)
        for topic, _, _, headers, value in records:
            event = _decode(spec, topic, headers, value)
            if event is None:
                counts[1] += 1
                continue
            counts[0] += 1
            order_id = getattr(event, "order_id", None)
            if isinstance(order_id, str):
                folded = spec.fold(facts.get(order_id), event)
                if folded is not None:
                    facts[order_id] = folded

    async with app.running(settings):
        async with app.transaction() as tx:
            await spec.create_tables(tx)
            target = await spec.positions(tx)
        # The bulk of the history, while the live service goes on folding.
        await fold_up_to({}, target)
        async with app.transaction() as tx:
            # Then, with the live service held off, what it folded meanwhile (little),
            # so the swap lands at exactly the positions of the rows it replaces.
            await spec.lock(tx)
            current = await spec.positions(tx)
            rounds = 1 if current == target else 2
            if current != target:
                await fold_up_to(target, current)
            live = await spec.all_facts(tx)
            differing = tuple(
                sorted(k for k in set(live) | set(facts) if live.get(k) != facts.get(k))
            )
            if not dry_run:
                await spec.replace(tx, facts.values(), current)
    events, skipped = counts
    return RebuildReport(
        name=spec.name,
        events=events,
        skipped=skipped,
        rows=len(facts),
        rounds=rounds,
        identical=not differing,
        differing=differing,
        replaced=not dry_run,
        seconds=time.monotonic() - started,
    )


def _defaults(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "up.json"
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    if args.action == "list":
        for name, target in KNOWN.items():
            print(f"{name:<12}{target}")
        return 0
    try:
        spec = _load(args.projection)
    except (LookupError, ImportError, AttributeError) as exc:
        print(f"rivulet projections: {exc}", file=sys.stderr)
        return 2
    defaults = _defaults(args.data_dir)
    bootstrap = args.bootstrap_servers or defaults.get("bootstrap_servers")
    database = args.database_url or defaults.get("databases", {}).get(spec.app_name)
    if not bootstrap or not database:
        print(
            "rivulet projections: give --bootstrap-servers and --database-url (no running "
            f"`rivulet up` was found in {args.data_dir})",
            file=sys.stderr,
        )
        return 2
    report = asyncio.run(
        rebuild(spec, bootstrap_servers=bootstrap, database_url=database, dry_run=args.dry_run)
    )
    verb = "rebuilt" if report.replaced else "replayed (dry run)"
    print(
        f"{verb} {report.name}: {report.events} events folded into {report.rows} rows "
        f"({report.skipped} records skipped, {report.rounds} rounds) in {report.seconds:.1f} s"
    )
    if report.identical:
        print("the rebuilt rows are identical to the live ones")
    else:
        print(f"{len(report.differing)} rows differed from the live ones, e.g. "
              f"{', '.join(report.differing[:5])}")  # fmt: skip
    return 0
