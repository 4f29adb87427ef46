"""``rivulet broker``: run the Kafka-compatible broker until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["HELP", "NAME", "add_arguments", "parse_listen", "run"]

NAME = "broker"
HELP = "run the embedded Kafka-compatible broker as a server"


def parse_listen(value: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:9092`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    number = int(port)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} is not between 0 and 65535")
    return host, number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".rivulet/broker"),
        help="where topics and their data are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--listen",
        type=parse_listen,
        default=("127.0.0.1", 9092),
        metavar="HOST:PORT",
        help="address to listen on (default: 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--advertised-host", help="host clients are told to connect to (default: the listen host)"
    )
    parser.add_argument("--node-id", type=int, default=1, help="broker id (default: %(default)s)")
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="partitions of auto-created topics (default: %(default)s)",
    )
    parser.add_argument(
        "--no-auto-create", action="store_true", help="do not create unknown topics on use"
    )
    parser.add_argument(
        "--fsync",
        action="store_true",
        help="fsync before acknowledging acks=all produce requests (slower, survives power loss)",
    )
    parser.add_argument(
        "--group-initial-rebalance-delay-ms",
        type=int,
        default=3000,
        metavar="MS",
        help="how long a new consumer group waits for more members before its first "
        "rebalance, as Kafka's group.initial.rebalance.delay.ms (default: %(default)s)",
    )
    parser.add_argument(
        "--in-memory", action="store_true", help="keep everything in memory (lost on exit)"
    )
    parser.add_argument(
        "--fetch-transfer",
        choices=["sendfile", "read"],
        default="sendfile",
        help="how log files reach the socket in fetch responses (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - keep `rivulet --help` light
    import logging  # noqa: PLC0415
    import signal  # noqa: PLC0415

    from rivulet.broker import (  # noqa: PLC0415
        Broker,
        BrokerConfig,
        BrokerServer,
        FetchTransfer,
        StorageKind,
    )
    from rivulet.broker.errors import BrokerError  # noqa: PLC0415

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host, port = args.listen
    try:
        config = BrokerConfig(
            data_dir=args.data_dir,
            host=host,
            port=port,
            advertised_host=args.advertised_host,
            node_id=args.node_id,
            num_partitions=args.partitions,
            auto_create_topics=not args.no_auto_create,
            fsync_acks_all=args.fsync,
            group_initial_rebalance_delay_ms=args.group_initial_rebalance_delay_ms,
            storage=StorageKind.MEMORY if args.in_memory else StorageKind.DURABLE,
            fetch_transfer=FetchTransfer(args.fetch_transfer),
        )
    except BrokerError as exc:
        print(f"rivulet broker: {exc}", file=sys.stderr)
        return 2

    async def serve() -> None:
        server = BrokerServer(Broker(config))
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except OSError as exc:
        print(f"rivulet broker: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0
