"""``rivulet docs``: describe an app as an AsyncAPI 3 document or as topology data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "docs"
HELP = "export an app's topology (topics, groups, event schemas), e.g. as AsyncAPI 3"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "format",
        choices=["asyncapi", "topology"],
        help="asyncapi: an AsyncAPI 3.0 document; topology: Rivulet's own JSON",
    )
    parser.add_argument("app", metavar="MODULE:APP", help="the app, e.g. shop.inventory:app")
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="NAME=HOST:PORT",
        help="a Kafka server to list in the AsyncAPI document (repeatable)",
    )
    parser.add_argument("--output", "-o", type=Path, help="write to a file instead of stdout")


def run(args: argparse.Namespace) -> int:
    from rivulet.framework import ConfigurationError  # noqa: PLC0415 - keeps --help fast
    from rivulet.framework._loader import load_app  # noqa: PLC0415

    try:
        app = load_app(args.app)
        servers = dict(_server(item) for item in args.server)
    except (ConfigurationError, ValueError) as exc:
        print(f"rivulet docs: {exc}", file=sys.stderr)
        return 2
    topology = app.topology()
    document = (
        topology.asyncapi(servers=servers) if args.format == "asyncapi" else topology.to_dict()
    )
    text = json.dumps(document, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


def _server(item: str) -> tuple[str, str]:
    name, sep, host = item.partition("=")
    if not sep or not name or not host:
        raise ValueError(f"--server expects NAME=HOST:PORT, not {item!r}")
    return name, host
