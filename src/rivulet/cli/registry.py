"""``rivulet registry``: serve the Confluent-compatible schema registry until SIGTERM.

Schemas live in a compacted topic (``_schemas``) of the Kafka cluster named by
``--bootstrap-servers`` (or ``RIVULET_BOOTSTRAP_SERVERS``); the registry keeps nothing
else, so it can be stopped, moved and restarted freely.

Its Kafka clients take the same client settings as a service's: ``RIVULET_KAFKA_<PROPERTY>``
variables and the ``[kafka]`` table of the ``RIVULET_CONFIG`` file (read by
:class:`rivulet.framework.Settings`), so it authenticates like the services do
(``RIVULET_KAFKA_SECURITY_PROTOCOL=SASL_SSL``, ``RIVULET_KAFKA_SASL_MECHANISM=SCRAM-SHA-512``,
``RIVULET_KAFKA_SASL_USERNAME``, ...).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rivulet.cli.broker import parse_listen

if TYPE_CHECKING:
    from rivulet.registry import RegistrySettings

__all__ = ["HELP", "NAME", "add_arguments", "registry_settings", "run"]

NAME = "registry"
HELP = "run the Confluent-compatible schema registry (schemas kept in a compacted topic)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        metavar="HOST:PORT",
        default=os.environ.get("RIVULET_BOOTSTRAP_SERVERS"),
        help="the Kafka cluster holding the schemas topic (default: RIVULET_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 8081),
        metavar="HOST:PORT",
        help="address of the REST API (default: 127.0.0.1:8081)",
    )
    parser.add_argument(
        "--topic", default="_schemas", help="the compacted topic of schemas (default: %(default)s)"
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=-1,
        help="of the topic when it is created (default: the broker's default)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: %(default)s)",
    )


def registry_settings(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> RegistrySettings:
    """The registry's settings from its options, with the Kafka client properties of
    ``environ`` (``RIVULET_KAFKA_*``, ``RIVULET_CONFIG``'s ``[kafka]`` table).

    Raises ``rivulet.ConfigurationError`` when a ``RIVULET_*`` setting is invalid.
    """
    # The framework's parsing, so a service and the registry read one environment alike.
    from rivulet.framework import Settings  # noqa: PLC0415
    from rivulet.registry import RegistrySettings  # noqa: PLC0415

    host, port = args.listen
    return RegistrySettings(
        bootstrap_servers=args.bootstrap_servers,
        host=host,
        port=port,
        topic=args.topic,
        replication_factor=args.replication_factor,
        kafka=Settings.from_sources(environ).kafka,
    )


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rivulet --help` light
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from rivulet.framework import ConfigurationError  # noqa: PLC0415
    from rivulet.registry import RegistryError, RegistryServer  # noqa: PLC0415

    if not args.bootstrap_servers:
        print(
            "rivulet registry: no Kafka to keep schemas in: pass --bootstrap-servers HOST:PORT "
            "or set RIVULET_BOOTSTRAP_SERVERS",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = args.listen
    try:
        settings = registry_settings(args)
    except ConfigurationError as exc:
        print(f"rivulet registry: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with RegistryServer(settings) as server:
            print(f"schema registry listening on {server.url}", flush=True)
            stopped = loop.create_task(server.wait_stopped())
            signalled = loop.create_task(stop.wait())
            await asyncio.wait({stopped, signalled}, return_when=asyncio.FIRST_COMPLETED)
            signalled.cancel()
            if stopped.done():
                stopped.result()  # a failed reader or server ends the process with an error
            else:
                stopped.cancel()

    try:
        asyncio.run(serve())
    except RegistryError as exc:
        print(f"rivulet registry: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"rivulet registry: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
