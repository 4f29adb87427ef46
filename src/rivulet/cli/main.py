"""The ``rivulet`` command: a thin dispatcher to one module per subcommand.

Each subcommand lives in its own module under :mod:`rivulet.cli` and provides::

    NAME = "broker"                           # the word after `rivulet`
    HELP = "run the Kafka-compatible broker"  # one line for `rivulet --help`

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit status

Modules import heavy dependencies inside ``run`` so that ``rivulet --help``
stays fast. To add a subcommand, write its module and add it to
:data:`SUBCOMMANDS` below (one line).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS: tuple[str, ...] = (
    "rivulet.cli.broker",
    "rivulet.cli.demo",
    "rivulet.cli.dlq",
    "rivulet.cli.docs",
    "rivulet.cli.groups",
    "rivulet.cli.k8s",
    "rivulet.cli.projections",
    "rivulet.cli.registry",
    "rivulet.cli.run",
    "rivulet.cli.schemas",
    "rivulet.cli.up",
)
"""Modules implementing a subcommand, in the order ``--help`` lists them."""


def _load(module_name: str) -> ModuleType:
    module = importlib.import_module(module_name)
    for attribute in ("NAME", "HELP", "add_arguments", "run"):
        if not hasattr(module, attribute):
            raise TypeError(f"{module_name} is not a rivulet subcommand: it lacks {attribute}")
    return module


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, every registered subcommand included."""
    parser = argparse.ArgumentParser(
        prog="rivulet",
        description="Event-driven Python services on the Kafka protocol.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    seen: set[str] = set()
    for module_name in SUBCOMMANDS:
        module = _load(module_name)
        if module.NAME in seen:
            raise ValueError(f"two subcommands are called {module.NAME!r}")
        seen.add(module.NAME)
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rivulet`` console script."""
    args = build_parser().parse_args(argv)
    status: int = args._run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
