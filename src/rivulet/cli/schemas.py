"""``rivulet schemas check|register MODULE:APP``: an app's event schemas against a registry.

``check`` is the gate a CI pipeline runs before deploying: for every event schema the
app uses through a registry serializer (see :mod:`rivulet.registry.serde`), it asks the
registry whether the schema may be registered under its subject now (by the subject's
compatibility level), and prints, for each that may not, the rules it breaks and a diff
against the latest registered version. Exit status: 0 all compatible, 1 some are not,
2 the check could not run (bad arguments, app or registry unreachable).

``register`` registers the schemas of the events the app publishes (what a service does
itself at start unless it runs with ``auto_register=False``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rivulet.framework import App
    from rivulet.registry.client import RegistryClient
    from rivulet.registry.serde import PlannedSchema

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "schemas"
HELP = "check (the CI gate) or register an app's event schemas in a schema registry"

_ENV = "RIVULET_SCHEMA_REGISTRY_URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check", "register"], help="what to do")
    parser.add_argument("app", metavar="MODULE:APP", help="the app, e.g. shop.orders:app")
    parser.add_argument(
        "--registry",
        metavar="URL",
        default=os.environ.get(_ENV),
        help=f"the schema registry (default: {_ENV})",
    )
    parser.add_argument(
        "--format",
        choices=["avro", "json"],
        help="treat every event of the app as encoded in this format (for apps whose "
        "serializers do not use the registry yet); default: the app's own serializers",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rivulet --help` light

    from rivulet.framework import ConfigurationError  # noqa: PLC0415
    from rivulet.framework._loader import load_app  # noqa: PLC0415
    from rivulet.registry.client import (  # noqa: PLC0415
        RegistryClient,
        RegistryClientError,
        RegistryUnavailableError,
    )

    if not args.registry:
        print(f"rivulet schemas: pass --registry URL or set {_ENV}", file=sys.stderr)
        return 2
    try:
        app = load_app(args.app)
        planned = _plan(app, args.format)
    except ConfigurationError as exc:
        print(f"rivulet schemas: {exc}", file=sys.stderr)
        return 2
    if not planned:
        print(
            f"app {app.name!r} encodes no events through a schema registry serializer: nothing "
            "to check (use --format avro|json to check its events as such)"
        )
        return 0
    client = RegistryClient(args.registry)
    action = _check if args.action == "check" else _register
    try:
        return asyncio.run(action(client, planned))
    except (RegistryUnavailableError, RegistryClientError) as exc:
        print(f"rivulet schemas: {exc}", file=sys.stderr)
        return 2


def _plan(app: App, fmt: str | None) -> list[PlannedSchema]:
    from rivulet.registry.serde import (  # noqa: PLC0415
        AvroSerializer,
        JsonSchemaSerializer,
        RegistrySerializer,
    )

    topology = app.topology()
    if fmt is not None:
        forced = AvroSerializer() if fmt == "avro" else JsonSchemaSerializer()
        return _without_duplicates(forced.plan(topology, default=True, every_event=True))
    planned: list[PlannedSchema] = []
    for index, serializer in enumerate(app.serializers):
        if isinstance(serializer, RegistrySerializer):
            planned.extend(serializer.plan(topology, default=index == 0))
    return _without_duplicates(planned)


def _without_duplicates(planned: list[PlannedSchema]) -> list[PlannedSchema]:
    seen: dict[tuple[str, str], PlannedSchema] = {}
    for item in planned:
        key = (item.subject, item.text.schema)
        known = seen.get(key)
        seen[key] = item if known is None or item.produced else known
    return list(seen.values())


def _pretty(schema: str) -> list[str]:
    import json  # noqa: PLC0415

    try:
        return json.dumps(json.loads(schema), indent=2).splitlines()
    except ValueError:
        return schema.splitlines()


async def _check(client: RegistryClient, planned: list[PlannedSchema]) -> int:
    import difflib  # noqa: PLC0415

    failed = 0
    try:
        for item in planned:
            what = f"{item.subject} ({item.model.__qualname__}, topic {item.topic})"
            latest = await client.latest(item.subject)
            if latest is None:
                print(f"NEW   {what}: not registered yet")
                continue
            version, schema_id, registered = latest
            if await client.lookup(item.subject, item.text) is not None:
                print(f"OK    {what}: unchanged")
                continue
            compatible, messages = await client.test_compatibility(item.subject, item.text)
            level = await client.compatibility_level(item.subject)
            if compatible:
                print(f"OK    {what}: compatible ({level}) with version {version}")
                continue
            failed += 1
            print(f"FAIL  {what}: incompatible ({level}) with the registered schemas")
            for message in messages:
                if not message.startswith("compatibility:"):  # the level is said above
                    print(f"        {message}")
            diff = difflib.unified_diff(
                _pretty(registered.schema),
                _pretty(item.text.schema),
                fromfile=f"{item.subject} version {version} (id {schema_id})",
                tofile=f"{item.model.__module__}.{item.model.__qualname__}",
                lineterm="",
            )
            for line in diff:
                print(f"        {line}")
    finally:
        await client.aclose()
    print(f"{len(planned)} schemas checked, {failed} incompatible")
    return 1 if failed else 0


async def _register(client: RegistryClient, planned: list[PlannedSchema]) -> int:
    from rivulet.registry.client import RegistryClientError  # noqa: PLC0415

    failed = 0
    try:
        for item in planned:
            if not item.produced:
                continue
            try:
                schema_id = await client.register(item.subject, item.text)
            except RegistryClientError as exc:
                if exc.status >= 500:
                    raise
                failed += 1
                print(f"FAIL  {item.subject} ({item.model.__qualname__}): {exc.message}")
                continue
            print(f"OK    {item.subject} ({item.model.__qualname__}): id {schema_id}")
    finally:
        await client.aclose()
    return 1 if failed else 0
