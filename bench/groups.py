"""Consumer groups: aggregate consume throughput, and failover after a SIGKILL.

Run with ``./dev bench groups [options]`` (or ``.venv/bin/python -m bench.groups``).
Every consumer is a confluent-kafka client in a process of its own. Against a
``rivulet broker`` this benchmark starts (or ``--bootstrap-servers``, any Kafka):

1. **Throughput.** A topic of ``--partitions`` (8) partitions is filled once with
   2,000,000 records of 100 B (times ``--scale``), spread evenly. Then, round
   after round, a fresh group of 1, 2 and 4 members reads the whole topic: the
   members join, pause every partition they are given, and wait until the group
   is stable with all of them (each owns some partitions, nobody twice); then
   all resume together and each reads its partitions to their end. The clock runs
   from the first record any member receives to the last record of the last
   member; records/s is the group's aggregate. Medians over ``--rounds``.
2. **Failover.** A producer writes ``--rate`` records/s round-robin over an
   ``--partitions`` topic while ``--failover-members`` (3) members consume with
   ``session.timeout.ms`` ``--session-timeout-ms`` and auto-commit. Once every
   partition is flowing, one member is SIGKILLed. For each partition it owned,
   the benchmark records when a survivor consumes that partition's next record;
   the figure per round is the time until every orphaned partition is consumed
   again, printed against the session timeout (it should be about the session
   timeout, not more). Medians over ``--failover-rounds``.

Figures, not a test: nothing here passes or fails on speed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import queue
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from bench._clients import CONSUMER_SETTINGS, PRODUCER_SETTINGS, payload
from bench._procs import BenchError
from bench._systems import rivulet_broker

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
BASE_RECORDS = 2_000_000
# A member process that says nothing for this long while it should be working is stuck.
_STALL_S = 60.0
_WORKER = "_worker"


@dataclass(frozen=True)
class Options:
    """The run's settings, parsed once from the command line."""

    rounds: int
    scale: float
    size: int
    partitions: int
    members: tuple[int, ...]
    failover_rounds: int
    failover_members: int
    session_timeout_ms: int
    heartbeat_ms: int
    rate: int
    bootstrap: str | None
    rivulet: Path
    json_path: Path | None

    @property
    def records(self) -> int:
        """Records in the throughput topic at this scale."""
        return max(self.partitions, round(BASE_RECORDS * self.scale))


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(dict.fromkeys(int(x) for x in text.split(",") if x.strip()))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of counts, not {text!r}")
    return counts


def parse_options(argv: Sequence[str] | None) -> Options:
    """Parse the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(
        prog="./dev bench groups",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rounds", type=int, default=5, help="throughput rounds (default 5; 0 skips it)")
    add("--scale", type=float, default=1.0, help="multiply the 2,000,000 records (e.g. 0.1)")
    add("--size", type=int, default=100, help="bytes per record (default 100)")
    add("--partitions", type=int, default=8, help="partitions per topic (default 8)")
    add("--members", type=_counts, default=(1, 2, 4), help="group sizes (default 1,2,4)")
    add("--failover-rounds", type=int, default=3, help="failover rounds (default 3; 0 skips)")
    add("--failover-members", type=int, default=3, help="members before the kill (default 3)")
    add(
        "--session-timeout-ms",
        type=int,
        default=6000,
        help="members' session.timeout.ms in the failover test (default 6000, Kafka's minimum)",
    )
    add(
        "--heartbeat-ms",
        type=int,
        default=1000,
        help="members' heartbeat.interval.ms in the failover test (default 1000)",
    )
    add("--rate", type=int, default=2000, help="records/s produced during failover (default 2000)")
    add(
        "--bootstrap-servers",
        dest="bootstrap",
        metavar="HOST:PORT",
        help="use this running Kafka-protocol broker instead of starting `rivulet broker`",
    )
    add(
        "--rivulet",
        type=Path,
        default=Path(sys.executable).parent / "rivulet",
        help="the rivulet command (default: the one next to this Python)",
    )
    add("--json", dest="json_path", type=Path, help="also write every sample to this file")
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.failover_rounds < 0 or args.scale <= 0 or args.size < 1:
        parser.error("rounds must be >= 0, --scale above 0 and --size at least 1")
    if max(args.members) > args.partitions:
        parser.error("a group cannot have more busy members than the topic has partitions")
    if not 2 <= args.failover_members <= args.partitions:
        parser.error("--failover-members must be between 2 and --partitions")
    if not 0 < args.heartbeat_ms < args.session_timeout_ms or args.rate < 1:
        parser.error("need 0 < --heartbeat-ms < --session-timeout-ms and --rate >= 1")
    return Options(
        rounds=args.rounds,
        scale=args.scale,
        size=args.size,
        partitions=args.partitions,
        members=args.members,
        failover_rounds=args.failover_rounds,
        failover_members=args.failover_members,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_ms=args.heartbeat_ms,
        rate=args.rate,
        bootstrap=args.bootstrap,
        rivulet=args.rivulet,
        json_path=args.json_path,
    )


# --- worker processes ---------------------------------------------------------------
#
# ``python -m bench.groups _worker <role> ...``: a member, the filler or the steady
# producer. Members print one JSON event per line on stdout ({"ev": ..., "t": ...},
# t from time.monotonic(), which is one clock for every process on Linux) and obey
# "go" and "stop" lines on stdin; end of input means stop.


def _commands() -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            lines.put(line.strip())
        lines.put("stop")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"ev": event, "t": time.monotonic(), **fields}), flush=True)


class _Membership:
    """A member's partitions, kept by its rebalance callbacks (which also report them)."""

    def __init__(self, *, paused: bool) -> None:
        self.paused = paused
        self.owned: set[int] = set()
        self.fresh: set[int] = set()
        """Partitions assigned but not yet read from since."""

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        consumer.assign(partitions)
        if self.paused:
            # Before "go", nothing may be fetched: paused right after assign(),
            # before the fetcher has even looked up its starting offsets.
            consumer.pause(partitions)
        numbers = sorted(tp.partition for tp in partitions)
        self.owned.update(numbers)
        self.fresh.update(numbers)
        _emit("assigned", partitions=numbers)

    def on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        self.owned.difference_update(numbers)
        self.fresh.difference_update(numbers)
        _emit("revoked", partitions=numbers)


def _next_command(commands: queue.Queue[str]) -> str:
    try:
        return commands.get_nowait()
    except queue.Empty:
        return ""


def _member_worker(
    bootstrap: str, topic: str, group: str, config: Mapping[str, Any], ends: Mapping[int, int]
) -> None:
    """A group member: reads to ``ends`` when given (throughput), else consumes for ever."""
    from confluent_kafka import Consumer  # noqa: PLC0415

    commands = _commands()
    membership = _Membership(paused=bool(ends))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **config})
    consumer.subscribe([topic], on_assign=membership.on_assign, on_revoke=membership.on_revoke)
    try:
        if ends:
            _read_to_end(consumer, commands, membership, ends)
        else:
            _consume_until_stopped(consumer, commands, membership)
    finally:
        consumer.close()


def _read_to_end(
    consumer: Any, commands: queue.Queue[str], membership: _Membership, ends: Mapping[int, int]
) -> None:
    """Wait paused for "go"; then read the owned partitions to their ends and report ``done``.

    The fresh group starts every partition at offset 0, so the records to read
    are the owned partitions' end offsets added up: counting, not tracking
    positions, keeps the per-record work that of a plain consume loop.
    """
    while (command := _next_command(commands)) != "go":
        if command == "stop":
            return
        consumer.consume(num_messages=1, timeout=0.1)  # serves rebalances; nothing flows
    membership.paused = False
    consumer.resume(consumer.assignment())
    target = sum(ends.get(p, 0) for p in membership.owned)
    consume = consumer.consume
    records = 0
    first = last = 0.0
    while records < target:
        # The first record starts the clock (asked for alone); later calls never
        # ask for more than is left, or consume() waits out its timeout.
        batch = consume(num_messages=min(10000, target - records) if records else 1, timeout=0.1)
        if not batch:
            if _next_command(commands) == "stop":
                return
            continue
        now = time.monotonic()
        good = sum(1 for message in batch if message.error() is None)
        if good < len(batch):
            _emit("error", message=str(next(m.error() for m in batch if m.error() is not None)))
        records += good
        first = first or now
        last = now
    _emit("done", records=records, first=first, last=last)
    while _next_command(commands) != "stop":
        consumer.consume(num_messages=1, timeout=0.1)  # stays in the group until all are done


def _consume_until_stopped(
    consumer: Any, commands: queue.Queue[str], membership: _Membership
) -> None:
    """Consume until "stop"; report each partition's ``first`` record after every assignment."""
    while _next_command(commands) != "stop":
        for message in consumer.consume(num_messages=1000, timeout=0.1):
            if message.error() is not None:
                _emit("error", message=str(message.error()))
                continue
            partition = message.partition()
            if partition in membership.fresh:
                membership.fresh.discard(partition)
                _emit("first", partition=partition, offset=message.offset())


def _fill_limit_s(records: int) -> float:
    """How long the fill may wait for its records to be acknowledged."""
    return 60 + records / 10_000


def _fill_worker(bootstrap: str, topic: str, records: int, size: int, partitions: int) -> None:
    """Produce ``records`` values evenly over the partitions; print records and seconds."""
    from confluent_kafka import Producer  # noqa: PLC0415

    # librdkafka logs what it could not do (connect, a request timed out) on stderr.
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", **PRODUCER_SETTINGS})
    value = payload(size)
    failed: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(topic, value, partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    # Flush in steps, saying how far it got, so that a broker that stops acknowledging
    # shows in the benchmark's error message rather than as a silent wait.
    deadline = time.monotonic() + _fill_limit_s(records)
    while (left := producer.flush(5)) and time.monotonic() < deadline:
        print(f"fill: {left} of {records} not yet acknowledged", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - start
    if left or failed:
        sys.exit(f"fill: {len(failed)} records failed, {left} unsent; first error {failed[:1]}")
    print(json.dumps({"records": records, "seconds": seconds}), flush=True)


def _steady_worker(bootstrap: str, topic: str, rate: int, size: int, partitions: int) -> None:
    """Produce ``rate`` records/s round-robin over the partitions until told to stop."""
    from confluent_kafka import Producer  # noqa: PLC0415

    commands = _commands()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    value = payload(size)
    tick = 0.01
    sent = 0
    start = time.monotonic()
    try:
        while commands.empty():
            due = int((time.monotonic() - start) * rate)
            for n in range(sent, due):
                producer.produce(topic, value, partition=n % partitions)
            sent = max(sent, due)
            producer.poll(tick)
    finally:
        producer.flush(30)


def _worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.groups _worker")
    parser.add_argument("role", choices=["member", "fill", "steady"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="")
    parser.add_argument("--config", default="{}", help="JSON object of client settings")
    parser.add_argument("--ends", default="{}", help="JSON {partition: end offset}")
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--rate", type=int, default=0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--partitions", type=int, default=1)
    args = parser.parse_args(argv)
    if args.role == "member":
        ends = {int(p): int(o) for p, o in json.loads(args.ends).items()}
        _member_worker(args.bootstrap, args.topic, args.group, json.loads(args.config), ends)
    elif args.role == "fill":
        _fill_worker(args.bootstrap, args.topic, args.records, args.size, args.partitions)
    else:
        _steady_worker(args.bootstrap, args.topic, args.rate, args.size, args.partitions)
    return 0


# --- the benchmark's side -------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _worker_argv(role: str, **options: object) -> list[str]:
    argv = [sys.executable, "-m", "bench.groups", _WORKER, role]
    for name, value in options.items():
        argv += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return argv


class _Process:
    """A worker process: its stdout lines go to a shared queue, its stderr to a log file."""

    def __init__(
        self, index: int, argv: list[str], log: Path, events: queue.Queue[tuple[int, Any]]
    ) -> None:
        self.index = index
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self.killed = False
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout, events), daemon=True).start()

    def _read(self, stream: IO[str], events: queue.Queue[tuple[int, Any]]) -> None:
        for line in stream:
            with contextlib.suppress(ValueError):
                events.put((self.index, json.loads(line)))

    def send(self, command: str) -> None:
        """Write one command line to the worker (ignored once it has gone)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the worker's stderr if it died unasked."""
        code = self.proc.poll()
        if code is not None and not self.killed:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
            raise BenchError(f"worker {self.index} exited with status {code}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the worker, as a crashed machine would stop it."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the worker to stop (it closes its client), then kill it if it lingers."""
        if self.proc.poll() is None:
            self.send("stop")
            with contextlib.suppress(BrokenPipeError, ValueError, OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class _Group:
    """What the members of one group have reported so far."""

    members: list[_Process]
    partitions: int
    events: queue.Queue[tuple[int, Any]] = field(default_factory=queue.Queue)
    owned: dict[int, set[int]] = field(default_factory=dict)
    assigned_at: dict[int, float] = field(default_factory=dict)
    firsts: list[tuple[float, int, int]] = field(default_factory=list)
    """(time, member, partition) of each first record after an assignment."""
    revokes: list[tuple[float, int]] = field(default_factory=list)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)

    def apply(self, index: int, event: Mapping[str, Any]) -> None:
        kind = event["ev"]
        if kind == "assigned":
            self.owned.setdefault(index, set()).update(event["partitions"])
            self.assigned_at[index] = event["t"]
        elif kind == "revoked":
            self.owned.setdefault(index, set()).difference_update(event["partitions"])
            self.revokes.append((event["t"], index))
        elif kind == "first":
            self.firsts.append((event["t"], index, event["partition"]))
        elif kind == "done":
            self.done[index] = dict(event)
        elif kind == "error":
            _say(f"  member {index}: consumer error: {event['message']}")

    def live(self) -> list[_Process]:
        return [m for m in self.members if not m.killed]

    def stable(self) -> bool:
        """Every live member owns partitions, and together they own each exactly once."""
        held = [sorted(self.owned.get(m.index, ())) for m in self.live()]
        return all(held) and sorted(p for h in held for p in h) == list(range(self.partitions))

    def flowing(self) -> bool:
        """Stable, and every owned partition has delivered a record since its assignment."""
        if not self.stable():
            return False
        latest = {(i, p): t for t, i, p in self.firsts}
        return all(
            latest.get((m.index, p), -1.0) >= self.assigned_at[m.index]
            for m in self.live()
            for p in self.owned[m.index]
        )

    def pump(self, until: Callable[[], bool], what: str, timeout_s: float) -> None:
        """Apply events until ``until()`` holds; raise :class:`BenchError` on a timeout."""
        deadline = time.monotonic() + timeout_s
        while not until():
            if time.monotonic() > deadline:
                owners = {i: sorted(p) for i, p in self.owned.items()}
                raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}: {owners}")
            for member in self.members:
                member.check_alive()
            with contextlib.suppress(queue.Empty):
                self.apply(*self.events.get(timeout=0.2))
            while not self.events.empty():
                self.apply(*self.events.get_nowait())


@contextlib.contextmanager
def _group(
    count: int, workdir: Path, partitions: int, argv: Callable[[int], list[str]]
) -> Iterator[_Group]:
    """Start ``count`` member processes; stop every one still running at the end."""
    group = _Group([], partitions)
    try:
        for i in range(count):
            log = workdir / f"member-{uuid.uuid4().hex[:6]}-{i}.log"
            group.members.append(_Process(i, argv(i), log, group.events))
        yield group
    finally:
        for member in group.members:
            member.send("stop")
        for member in group.members:
            member.stop()


@dataclass(frozen=True)
class ThroughputSample:
    """One group reading the whole topic."""

    round: int
    members: int
    records: int
    seconds: float
    start_s: float
    """From resuming the paused members to the first record (not in ``seconds``): mostly
    librdkafka's idle of about a second after an assignment before its first fetch."""

    @property
    def rate(self) -> float:
        """Aggregate records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class FailoverSample:
    """One SIGKILL and the survivors taking over."""

    round: int
    members: int
    orphaned: tuple[int, ...]
    rebalance_s: float
    """From the kill to the first survivor seeing its partitions revoked (the rebalance)."""
    takeover_s: tuple[float, ...]
    """Per orphaned partition: from the kill to a survivor consuming its next record."""

    @property
    def all_consumed_s(self) -> float:
        """From the kill until every orphaned partition was consumed again."""
        return max(self.takeover_s)


class _Cluster:
    """Topics on the broker under test, through one AdminClient."""

    def __init__(self, bootstrap: str, check_alive: Callable[[], None]) -> None:
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415

        self.bootstrap = bootstrap
        self.check_alive = check_alive
        self.admin: Any = AdminClient({"bootstrap.servers": bootstrap, "log_level": "3"})
        self.topics: list[str] = []

    def create_topic(self, topic: str, partitions: int) -> None:
        from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

        self.check_alive()
        futures = self.admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)
        futures[topic].result(60)
        self.topics.append(topic)

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        from confluent_kafka import TopicPartition, admin  # noqa: PLC0415

        latest: Any = vars(admin)["OffsetSpec"].latest()
        request = {TopicPartition(topic, p): latest for p in range(partitions)}
        futures = self.admin.list_offsets(request, request_timeout=60)
        return {tp.partition: int(f.result(60).offset) for tp, f in futures.items()}

    def close(self) -> None:
        """Delete this run's topics (best effort) and let the client go before the broker."""
        if self.topics:
            with contextlib.suppress(Exception):
                for future in self.admin.delete_topics(self.topics, operation_timeout=10).values():
                    future.result(15)
        self.admin = None


class Bench:
    """Runs the measurements against one broker and keeps the samples."""

    def __init__(self, opts: Options, workdir: Path, cluster: _Cluster) -> None:
        self.opts = opts
        self.workdir = workdir
        self.cluster = cluster
        self.run_id = uuid.uuid4().hex[:8]
        self.fill_rate = 0.0
        self.throughput: list[ThroughputSample] = []
        self.failover: list[FailoverSample] = []

    def _member_argv(
        self, topic: str, group: str, config: Mapping[str, Any], ends: Mapping[str, int]
    ) -> Callable[[int], list[str]]:
        return lambda _index: _worker_argv(
            "member",
            bootstrap=self.cluster.bootstrap,
            topic=topic,
            group=group,
            config=dict(config),
            ends=dict(ends),
        )

    def fill(self, topic: str) -> dict[int, int]:
        """Create and fill the throughput topic; return its end offsets."""
        opts = self.opts
        self.cluster.create_topic(topic, opts.partitions)
        _say(f"filling {topic}: {opts.records:,} x {opts.size} B over {opts.partitions} partitions")
        argv = _worker_argv(
            "fill",
            bootstrap=self.cluster.bootstrap,
            topic=topic,
            records=opts.records,
            size=opts.size,
            partitions=opts.partitions,
        )
        # A broker that stops acknowledging must end the run with the fill's story, not
        # hang it: the fill's own flush gives up first, this is for a fill stuck elsewhere.
        limit_s = _fill_limit_s(opts.records) + 30
        try:
            done = subprocess.run(
                argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=limit_s
            )
        except subprocess.TimeoutExpired as exc:
            self.cluster.check_alive()
            raw: str | bytes = exc.stderr or b""  # bytes so far, whatever text= says
            said = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            raise BenchError(
                f"filling {topic} did not end in {limit_s:.0f} s: {said.strip()[-2000:]}"
            ) from None
        if done.returncode != 0:
            self.cluster.check_alive()
            raise BenchError(f"filling {topic} failed: {done.stderr.strip()[-2000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        self.fill_rate = result["records"] / result["seconds"]
        ends = self.cluster.end_offsets(topic, opts.partitions)
        if sum(ends.values()) != opts.records:
            raise BenchError(f"{topic} holds {sum(ends.values())} records, not {opts.records}")
        return ends

    def measure_throughput(
        self, round_no: int, count: int, topic: str, ends: Mapping[int, int]
    ) -> None:
        """A fresh group of ``count`` members reads the whole topic."""
        config = {
            **CONSUMER_SETTINGS,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
        group_id = f"bench-{self.run_id}-r{round_no}-n{count}"
        argv = self._member_argv(topic, group_id, config, {str(p): o for p, o in ends.items()})
        with _group(count, self.workdir, self.opts.partitions, argv) as group:
            group.pump(group.stable, f"{count} member(s) to share the partitions", _STALL_S)
            # A rebalance still in flight would show as a member losing its partitions.
            settle = time.monotonic() + 0.5
            group.pump(lambda: time.monotonic() > settle, "settling", 5)
            if not group.stable():
                group.pump(group.stable, "the group to settle", _STALL_S)
            go_at = time.monotonic()
            for member in group.members:
                member.send("go")
            group.pump(lambda: len(group.done) == count, "every member to read its partitions", 900)
        if any(t > go_at for t, _ in group.revokes):
            raise BenchError(
                f"the group of {count} rebalanced while it was measured (a member stalled for "
                "longer than its session timeout?); its figure would include the rebalance"
            )
        done = group.done.values()
        records = sum(int(d["records"]) for d in done)
        first = min(float(d["first"]) for d in done)
        seconds = max(float(d["last"]) for d in done) - first
        if records < self.opts.records:
            raise BenchError(f"the group read {records} records, expected {self.opts.records}")
        # The first record starts the clock, so it is not counted.
        sample = ThroughputSample(round_no, count, records - 1, seconds, first - go_at)
        self.throughput.append(sample)
        _say(
            f"round {round_no}/{self.opts.rounds}  {count} member(s): "
            f"{sample.rate:>12,.0f} records/s ({seconds:.2f} s)"
        )

    def measure_failover(self, round_no: int, topic: str) -> None:
        """Kill one of the members while records flow; time the survivors' takeover."""
        opts = self.opts
        config = {
            "session.timeout.ms": opts.session_timeout_ms,
            "heartbeat.interval.ms": opts.heartbeat_ms,
            # New groups start at the log end: no backlog to chew through first.
            "auto.offset.reset": "latest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": 1000,
            "enable.partition.eof": False,
        }
        group_id = f"bench-{self.run_id}-failover-{round_no}"
        argv = self._member_argv(topic, group_id, config, {})
        count = opts.failover_members
        with _group(count, self.workdir, opts.partitions, argv) as group:
            group.pump(group.flowing, "every partition to flow", _STALL_S)
            settle = time.monotonic() + 0.5
            group.pump(lambda: time.monotonic() > settle, "settling", 5)
            group.pump(group.flowing, "every partition to flow", _STALL_S)
            victim = group.members[(round_no - 1) % count]
            orphaned = tuple(sorted(group.owned[victim.index]))
            killed_at = time.monotonic()
            victim.kill()
            group.owned[victim.index] = set()

            def taken_over() -> dict[int, float]:
                return {
                    p: min(
                        t
                        for t, i, q in group.firsts
                        if q == p and t > killed_at and i != victim.index
                    )
                    for p in orphaned
                    if any(
                        q == p and t > killed_at and i != victim.index for t, i, q in group.firsts
                    )
                }

            limit = 3 * opts.session_timeout_ms / 1000 + _STALL_S
            group.pump(
                lambda: len(taken_over()) == len(orphaned), "the survivors to take over", limit
            )
            times = taken_over()
            revoked = [t for t, i in group.revokes if t > killed_at and i != victim.index]
        sample = FailoverSample(
            round_no,
            count,
            orphaned,
            rebalance_s=min(revoked) - killed_at if revoked else float("nan"),
            takeover_s=tuple(times[p] - killed_at for p in orphaned),
        )
        self.failover.append(sample)
        _say(
            f"failover {round_no}/{opts.failover_rounds}: killed member {victim.index} "
            f"(partitions {','.join(map(str, orphaned))}); rebalance seen after "
            f"{sample.rebalance_s:.2f} s, all consumed again after {sample.all_consumed_s:.2f} s"
        )

    def run(self) -> None:
        """Throughput rounds (1, 2, 4 members in turn), then failover rounds."""
        opts = self.opts
        if opts.rounds:
            topic = f"bench-groups-{self.run_id}"
            ends = self.fill(topic)
            for round_no in range(1, opts.rounds + 1):
                for count in opts.members:
                    self.measure_throughput(round_no, count, topic, ends)
        if opts.failover_rounds:
            topic = f"bench-groups-{self.run_id}-failover"
            self.cluster.create_topic(topic, opts.partitions)
            steady = _Process(
                -1,
                _worker_argv(
                    "steady",
                    bootstrap=self.cluster.bootstrap,
                    topic=topic,
                    rate=opts.rate,
                    size=opts.size,
                    partitions=opts.partitions,
                ),
                self.workdir / "steady.log",
                queue.Queue(),
            )
            try:
                for round_no in range(1, opts.failover_rounds + 1):
                    steady.check_alive()
                    self.measure_failover(round_no, topic)
            finally:
                steady.stop()


def _throughput_table(opts: Options, samples: Sequence[ThroughputSample]) -> list[str]:
    rows: list[tuple[str, ...]] = [
        ("members", "records/s", "MB/s", "per member", "vs 1 member", "rounds (records/s)")
    ]
    base = None
    for count in opts.members:
        mine = [s for s in samples if s.members == count]
        rates = [s.rate for s in mine]
        median = statistics.median(rates)
        if count == 1:
            base = median
        rows.append(
            (
                str(count),
                f"{median:,.0f}",
                f"{median * opts.size / 1e6:.1f}",
                f"{median / count:,.0f}",
                f"{median / base:.2f}x" if base else "-",
                " ".join(f"{r / 1e3:,.0f}k" for r in rates),
            )
        )
    title = (
        f"Consume throughput of a consumer group: {opts.records:,} x {opts.size} B records "
        f"over {opts.partitions} partitions, median of {opts.rounds} round(s)"
    )
    return [title, "", *_columns(rows)]


def _failover_table(opts: Options, samples: Sequence[FailoverSample]) -> list[str]:
    session_s = opts.session_timeout_ms / 1000
    rows: list[tuple[str, ...]] = [
        ("round", "orphaned", "rebalance seen (s)", "each orphan consumed again (s)",
         "all (s)", "all / session timeout")
    ]  # fmt: skip
    rows += [
        (
            str(s.round),
            ",".join(map(str, s.orphaned)),
            f"{s.rebalance_s:.2f}",
            " ".join(f"{t:.2f}" for t in s.takeover_s),
            f"{s.all_consumed_s:.2f}",
            f"{s.all_consumed_s / session_s:.2f}x",
        )
        for s in samples
    ]
    median = statistics.median(s.all_consumed_s for s in samples)
    rows.append(("median", "", "", "", f"{median:.2f}", f"{median / session_s:.2f}x"))
    title = (
        f"Failover: {opts.failover_members} members, one SIGKILLed per round, "
        f"session.timeout.ms={opts.session_timeout_ms}, "
        f"heartbeat.interval.ms={opts.heartbeat_ms}, producing {opts.rate:,} records/s"
    )
    return [title, "", *_columns(rows)]


def _report(opts: Options, bench: Bench) -> str:
    lines = []
    if bench.throughput:
        lines += [*_throughput_table(opts, bench.throughput), ""]
        lines.append(f"(The topic was filled at {bench.fill_rate:,.0f} records/s.)")
        lines.append("")
    if bench.failover:
        lines += _failover_table(opts, bench.failover)
    return "\n".join(lines)


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return out


def _versions() -> str:
    import importlib.metadata  # noqa: PLC0415

    import confluent_kafka  # noqa: PLC0415

    client = importlib.metadata.version("confluent-kafka")
    return (
        f"Python {platform.python_version()}, confluent-kafka {client} "
        f"(librdkafka {confluent_kafka.libversion()[0]}), {os.cpu_count()} CPUs"
    )


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _broker(opts: Options, workdir: Path) -> Iterator[_Cluster]:
    if opts.bootstrap is not None:
        _say(f"using the broker at {opts.bootstrap}")
        yield _Cluster(opts.bootstrap, lambda: None)
        return
    _say("starting rivulet broker")
    with rivulet_broker(opts.rivulet, workdir, shutil.which("kcat")) as system:
        yield _Cluster(system.bootstrap, system.server.check_alive)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its tables; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == [_WORKER]:
        return _worker_main(args[1:])
    opts = parse_options(args)
    signal.signal(signal.SIGINT, _interrupted)
    signal.signal(signal.SIGTERM, _interrupted)
    workdir = Path(tempfile.mkdtemp(prefix="rivulet-bench-groups-"))
    bench: Bench | None = None
    try:
        with _broker(opts, workdir) as cluster:
            bench = Bench(opts, workdir, cluster)
            try:
                bench.run()
            finally:
                cluster.close()
    except BenchError as exc:
        _say(f"benchmark stopped: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted; every process this run started has been stopped")
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert bench is not None
    print(_versions())
    print(f"command: {shlex.join(['./dev', 'bench', 'groups', *args])}")
    print()
    print(_report(opts, bench))
    if opts.json_path is not None:
        opts.json_path.write_text(
            json.dumps(
                {
                    "argv": args,
                    "options": {
                        k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()
                    },
                    "fill_rate": bench.fill_rate,
                    "throughput": [asdict(s) | {"rate": s.rate} for s in bench.throughput],
                    "failover": [
                        asdict(s) | {"all_consumed_s": s.all_consumed_s} for s in bench.failover
                    ],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
