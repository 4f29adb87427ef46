"""``rivulet run MODULE:APP``: run a service until SIGTERM or SIGINT.

Several processes running the same app form one consumer group per handler group;
SIGTERM finishes in-flight records, commits and leaves the groups.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["HELP", "NAME", "add_arguments", "run"]

NAME = "run"
HELP = "run a Rivulet service (MODULE:APP) until SIGTERM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("app", metavar="MODULE:APP", help="the app, e.g. shop.inventory:app")
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        help="Kafka to use (default: RIVULET_BOOTSTRAP_SERVERS, else an embedded broker)",
    )
    parser.add_argument(
        "--database-url", metavar="URL", help="sqlite:///path.db or postgresql://... "
        "(default: RIVULET_DATABASE_URL, else <data dir>/<app>.db)",
    )  # fmt: skip
    parser.add_argument(
        "--http", metavar="HOST:PORT", help="serve /metrics, /healthz and /readyz here"
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML settings file")


def run(args: argparse.Namespace) -> int:
    from rivulet.framework import ConfigurationError, Settings  # noqa: PLC0415 - fast --help
    from rivulet.framework._loader import load_app  # noqa: PLC0415

    try:
        settings = Settings.load(args.config)
        overrides = {
            "bootstrap_servers": args.bootstrap_servers,
            "database_url": args.database_url,
            "http_listen": args.http,
        }
        settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
        app = load_app(args.app)
    except ConfigurationError as exc:
        print(f"rivulet run: {exc}", file=sys.stderr)
        return 2
    app.run(settings)
    return 0
