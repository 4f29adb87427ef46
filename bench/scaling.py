"""Scaling an app out and in under load: is any event lost, or handled twice?

Run with ``./dev bench scaling [options]`` (or ``.venv/bin/python -m bench.scaling``).

A ``rivulet broker`` process holds an input topic of ``--partitions`` partitions, filled
with ``--records`` CloudEvents beforehand. Replicas of one Rivulet app (each a process
of its own running ``app.run()``, what ``rivulet run`` does) then join one consumer
group one after another, each ``--step`` seconds after the group gave the last one its
partitions, up to ``--replicas``; while the group is still working through the backlog,
all but the last leave again with SIGTERM, one every ``--step`` seconds. Each replica's
handler notes the sequence number of every event it handles (in a file of its own, one
line each) and publishes one event, so a revocation finds publishes still unconfirmed.
When every event has been handled, or ``--timeout`` passed, the last replica stops too
and the run prints:

- **never handled**: must be 0. At-least-once delivery loses nothing;
- **handled twice**: how many events a scale step made the group handle again. A
  revocation finishes the records its member started (publishes confirmed, offsets
  committed) before the partitions move, so on graceful steps this is 0; records only
  fetched are left to the new owner, which is not a repeat;
- **revocations** across all replicas (from their logs), and the seconds taken.

Figures, not a test: the numbers depend on timing. A replica killed rather than
stopped would repeat its uncommitted records by design (``tests/interop/test_crash.py``
covers that).
"""

# No `from __future__ import annotations` here: the replica defines its event model
# locally, and the framework reads handler annotations at run time.

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.framework import Headers, cloud_event_headers, produce_all

ROOT = Path(__file__).resolve().parent.parent
_PAD = "x" * 150  # events of about 200 bytes, as in the framework benchmark


def run_replica(args: argparse.Namespace) -> int:
    """One replica: handle ``args.topic`` in group ``args.group`` until SIGTERM."""
    from rivulet import App, Context, Event, Settings  # noqa: PLC0415

    class Step(Event):
        seq: int
        pad: str

    app = App("bench-scaling")
    seen = os.open(args.seen, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @app.handler(args.topic, group=args.group, publishes={args.out: Step})
    async def handle(event: Step, ctx: Context) -> None:
        os.write(seen, b"%d\n" % event.seq)  # appended at once: a killed replica keeps it
        await ctx.publish(args.out, event, key=ctx.key)

    settings = Settings(
        bootstrap_servers=args.bootstrap,
        database_url="sqlite://",
        data_dir=Path(tempfile.mkdtemp()),
        outbox_relay=False,
        log_level="INFO",  # the revocations are counted from the log
        # Rebalances within a heartbeat, as in the framework's tests.
        kafka={"heartbeat.interval.ms": "300", "session.timeout.ms": "6000"},
    )
    app.run(settings)
    return 0


def fill(bootstrap: str, topic: str, records: int) -> None:
    """``records`` Step events with sequence numbers 0 .. records - 1."""

    def step(n: int) -> tuple[bytes, bytes, Headers]:
        value = json.dumps({"seq": n, "pad": _PAD}, separators=(",", ":")).encode()
        return f"entity-{n}".encode(), value, cloud_event_headers("Step")

    produce_all(bootstrap, topic, (step(n) for n in range(records)))


class Replicas:
    """The replica processes of one run, with their logs and files of handled events."""

    def __init__(self, workdir: Path, bootstrap: str, topic: str) -> None:
        self.workdir = workdir
        self.argv = [
            sys.executable, "-m", "bench.scaling", "--replica",
            "--bootstrap", bootstrap, "--topic", topic, "--out", f"{topic}-out",
            "--group", f"scaling-{uuid.uuid4().hex[:8]}",
        ]  # fmt: skip
        self.running: list[tuple[int, subprocess.Popen[bytes]]] = []
        self.started = 0
        self.exit_codes: dict[int, int] = {}

    def start(self) -> None:
        n = self.started
        self.started += 1
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
        with (self.workdir / f"replica-{n}.log").open("wb") as log:
            process = subprocess.Popen(
                [*self.argv, "--seen", str(self.workdir / f"seen-{n}.txt")],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            )  # fmt: skip
        self.running.append((n, process))

    def wait_until_assigned(self, timeout_s: float) -> None:
        """Wait until the newest replica's first assignment (its group has rebalanced)."""
        log = self.workdir / f"replica-{self.started - 1}.log"
        deadline = time.monotonic() + timeout_s
        while ": assigned " not in log.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.started - 1} was not assigned in {timeout_s} s")
            time.sleep(0.05)

    def stop_oldest(self) -> None:
        """SIGTERM the longest-running replica and wait for its graceful stop."""
        n, replica = self.running.pop(0)
        replica.send_signal(signal.SIGTERM)
        self.exit_codes[n] = replica.wait(60)

    def stop_all(self) -> None:
        while self.running:
            self.stop_oldest()

    def kill_all(self) -> None:
        """Kill what is still running (after an error of the benchmark's own)."""
        for _, replica in self.running:
            replica.kill()
            replica.wait(10)

    def handled(self) -> list[int]:
        """Every sequence number handled so far, by any replica, with repeats."""
        seqs: list[int] = []
        for path in self.workdir.glob("seen-*.txt"):
            seqs.extend(int(line) for line in path.read_text().split())
        return seqs

    def revocations(self) -> int:
        return sum(
            path.read_text(errors="replace").count(": revoked ")
            for path in self.workdir.glob("replica-*.log")
        )

    def failures(self) -> list[str]:
        """The end of the log of each replica that did not stop cleanly."""
        return [
            f"replica {n} exited with {code}:\n"
            + (self.workdir / f"replica-{n}.log").read_text(errors="replace")[-2000:]
            for n, code in sorted(self.exit_codes.items())
            if code != 0
        ]


def run(args: argparse.Namespace) -> int:
    from bench._systems import rivulet_broker  # noqa: PLC0415

    rivulet_exe = Path(sys.executable).parent / "rivulet"
    with (
        tempfile.TemporaryDirectory(prefix="rivulet-bench-scaling-") as tmp,
        rivulet_broker(rivulet_exe, Path(tmp), None) as broker,
    ):
        workdir = Path(tmp)
        topic = f"steps-{uuid.uuid4().hex[:8]}"
        broker.create_topic(topic, args.partitions)
        fill(broker.bootstrap, topic, args.records)
        print(f"filled {topic} ({args.partitions} partitions) with {args.records} events")
        replicas = Replicas(workdir, broker.bootstrap, topic)
        started = time.monotonic()
        try:
            for _ in range(args.replicas):
                replicas.start()
                replicas.wait_until_assigned(timeout_s=60)
                time.sleep(args.step)
            while len(replicas.running) > 1:
                replicas.stop_oldest()
                time.sleep(args.step)
            deadline = started + args.timeout
            while len(set(replicas.handled())) < args.records and time.monotonic() < deadline:
                time.sleep(0.5)
            replicas.stop_all()
        finally:
            replicas.kill_all()
        seconds = time.monotonic() - started
        report(replicas.handled(), args.records, replicas.revocations(), seconds)
        for failure in replicas.failures():
            print(failure)
    return 0


def report(handled: list[int], records: int, revocations: int, seconds: float) -> None:
    distinct = set(handled)
    print(f"replicas joined and left under load: {seconds:.1f} s, {revocations} revocations")
    print(f"handled        {len(handled):>10,}")
    print(f"never handled  {records - len(distinct & set(range(records))):>10,}")
    print(f"handled twice  {len(handled) - len(distinct):>10,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=500_000, help="events in the topic")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=3, help="replicas at the peak")
    parser.add_argument("--step", type=float, default=1.0, help="seconds between scale steps")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after (s)")
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    for name in ("--bootstrap", "--topic", "--out", "--group", "--seen"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replica:
        return run_replica(args)
    for name in ("records", "partitions", "replicas"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, not {getattr(args, name)}")
    if args.step < 0 or args.timeout <= 0:
        parser.error("--step must be 0 or more and --timeout more than 0")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
