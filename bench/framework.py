"""Framework throughput: Rivulet against FastStream and Quix Streams on the embedded broker.

Run with ``./dev bench framework [options]`` (or ``.venv/bin/python -m bench.framework``).

The work (issue 4): consume JSON events of ~220 bytes, validate each into a typed
pydantic model, run a trivial handler that publishes one event, commit. A
``rivulet broker`` process (durable storage) holds one input topic of one partition,
filled with ``--events`` events beforehand (with CloudEvents headers, which the peers
ignore). Then, round after round (in alternating order), each framework runs in a
process of its own, as a fresh consumer group with a fresh output topic, and reports
the seconds from its first event to the end of its graceful stop, which includes the
confirmation of every published event and the final offset commit. Medians per
framework and Rivulet's ratios are printed. Figures, not a test.

Each framework is written the way its documentation shows:

- **Rivulet**: ``@app.handler`` taking the typed event, ``await ctx.publish(...)``;
  offsets committed after processing (at-least-once), outputs confirmed before commit;
  run with ``app.run()`` (what ``rivulet run`` does), stopped by SIGTERM.
- **FastStream** 0.7 (Kafka, aiokafka): ``@broker.subscriber`` + ``@broker.publisher``
  returning the typed output; its default acknowledgement (auto-commit every 5 s, which
  may commit before processing) and logging off. ``faststream-ack`` is the same with
  ``AckPolicy.ACK``: commit after processing, Rivulet's guarantee.
- **Quix Streams** 3.x: ``app.dataframe(topic).apply(fn).to_topic(out)``, ``fn``
  validating into the model; its checkpoints flush the producer then commit.

FastStream and Quix Streams pin versions of confluent-kafka and pydantic other than
Rivulet's, so they run from their own virtual environment, ``.bench/framework-peers``,
which this benchmark creates on first use (from PyPI, before anything is timed).

``--instructions`` instead counts the instructions each framework executes per event,
with valgrind's cachegrind: every framework runs twice under valgrind, for a quarter of
``--instr-events`` and for all of them, and the difference between the two counts,
divided by the difference in events, leaves out start-up and shutdown. Unlike rates
and CPU times on a shared machine, these counts repeat to within a few per cent; they
do not see cache misses, so they complement the timed rounds rather than replace them.
FastStream is slow under valgrind (minutes per run); ``--systems rivulet,quix`` skips it.

``--codec`` instead measures the JSON codec choices of
docs/decisions/0005-framework-json-codec.md.
"""

# No `from __future__ import annotations` here: the worker functions define their event
# models locally, and the frameworks read handler annotations at run time.

import argparse
import asyncio
import importlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Not at run time: the workers run this file in the peers' environment.
    from bench._systems import KafkaProtocolSystem

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".bench" / "framework-peers"
PEER_PACKAGES = ("faststream[kafka]==0.7.8", "quixstreams==3.28.1")
SYSTEMS = ("rivulet", "faststream", "faststream-ack", "quix")

SAMPLE = {
    "order_id": "ord-7f3a9c2e-5b1d-4e8a",
    "customer_id": "cust-000123456",
    "sku": "SKU-ABC-12345",
    "qty": 3,
    "unit_price": 1299.99,
    "currency": "EUR",
    "placed_at": "2024-05-01T12:00:00.123000Z",
    "note": "leave at the door please, ring twice",
}


def models(base: Any) -> tuple[Any, Any]:
    """The input and output event models, on ``base`` (Rivulet's Event or BaseModel)."""

    class OrderPlaced(base):  # type: ignore[misc]
        order_id: str
        customer_id: str
        sku: str
        qty: int
        unit_price: float
        currency: str
        placed_at: datetime
        note: str | None = None

    class OrderConfirmed(base):  # type: ignore[misc]
        order_id: str
        customer_id: str
        total: float
        currency: str

    return OrderPlaced, OrderConfirmed


def confirm(order: Any, output: Any) -> Any:
    """The trivial business logic every framework runs."""
    return output(
        order_id=order.order_id,
        customer_id=order.customer_id,
        total=order.qty * order.unit_price,
        currency=order.currency,
    )


# --------------------------------------------------------------------------- workers
# Each runs in its own process and prints its Stopwatch's figures as one JSON line.


class Stopwatch:
    """Counts a worker's events and what they cost, from the first event on."""

    def __init__(self, expected: int) -> None:
        self.count = 0
        self.expected = expected
        self._t0 = 0.0
        self._t_last = 0.0
        self._usage0: Any = None

    def tick(self) -> int:
        """Count one event (the first starts the clock); the count so far."""
        if not self.count:
            self._t0 = time.perf_counter()
            self._usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self.count += 1
        if self.count == self.expected:
            self._t_last = time.perf_counter()
        return self.count

    def figures(self) -> dict[str, float]:
        """Events, seconds, and the process's CPU time and context switches (all threads)."""
        end = time.perf_counter()
        now = resource.getrusage(resource.RUSAGE_SELF)
        then = self._usage0 or now
        return {
            "records": self.count,
            "seconds": end - self._t0,
            # From the last event's handler to the end of the graceful stop (flushing,
            # committing, leaving the group): part of "seconds", paid once per run.
            "stop_seconds": end - self._t_last if self._t_last else 0.0,
            "cpu_seconds": now.ru_utime - then.ru_utime + now.ru_stime - then.ru_stime,
            "system_seconds": now.ru_stime - then.ru_stime,
            "voluntary_switches": now.ru_nvcsw - then.ru_nvcsw,
            "involuntary_switches": now.ru_nivcsw - then.ru_nivcsw,
        }


def worker_rivulet(args: argparse.Namespace) -> dict[str, float]:
    from rivulet import App, Context, Event, Settings  # noqa: PLC0415

    order_placed, order_confirmed = models(Event)
    app = App("bench-rivulet")
    watch = Stopwatch(args.events)

    @app.handler(args.topic, group=args.group)
    async def handle(event: order_placed, ctx: Context) -> None:  # type: ignore[valid-type]
        count = watch.tick()
        await ctx.publish(args.out, confirm(event, order_confirmed), key=ctx.key)
        if count == args.events:
            os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop, as in production

    settings = Settings(
        bootstrap_servers=args.bootstrap,
        database_url="sqlite://",
        data_dir=Path(tempfile.mkdtemp()),
        outbox_relay=False,
        log_level="WARNING",
    )
    app.run(settings)  # what `rivulet run` does: until SIGTERM, then a graceful stop
    return watch.figures()


def worker_faststream(args: argparse.Namespace, *, ack: bool) -> dict[str, float]:
    # Imported by name: the peers live in their own environment, not Rivulet's.
    faststream: Any = importlib.import_module("faststream")
    faststream_kafka: Any = importlib.import_module("faststream.kafka")
    from pydantic import BaseModel  # noqa: PLC0415

    order_placed, order_confirmed = models(BaseModel)
    broker = faststream_kafka.KafkaBroker(args.bootstrap, logger=None)
    done = asyncio.Event()
    watch = Stopwatch(args.events)
    options: dict[str, Any] = {"group_id": args.group, "auto_offset_reset": "earliest"}
    if ack:
        options["ack_policy"] = faststream.AckPolicy.ACK

    async def handle(event: order_placed) -> order_confirmed:  # type: ignore[valid-type]
        if watch.tick() == args.events:
            done.set()
        return confirm(event, order_confirmed)  # type: ignore[no-any-return]

    # FastStream's documented decorators, applied as calls.
    broker.publisher(args.out)(broker.subscriber(args.topic, **options)(handle))

    async def main() -> None:
        await broker.start()
        try:
            await done.wait()
        finally:
            await broker.stop()

    asyncio.run(main())
    return watch.figures()


def worker_quix(args: argparse.Namespace) -> dict[str, float]:
    from pydantic import BaseModel  # noqa: PLC0415

    quixstreams: Any = importlib.import_module("quixstreams")
    order_placed, order_confirmed = models(BaseModel)
    app = quixstreams.Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        loglevel="WARNING",
    )
    source = app.topic(args.topic, value_deserializer="json")
    sink = app.topic(args.out, value_serializer="json")
    watch = Stopwatch(args.events)

    def handle(value: dict[str, Any]) -> dict[str, Any]:
        count = watch.tick()
        confirmed = confirm(order_placed.model_validate(value), order_confirmed)
        if count == args.events:
            app.stop()
        result: dict[str, Any] = confirmed.model_dump(mode="json")
        return result

    app.dataframe(source).apply(handle).to_topic(sink)
    app.run()
    return watch.figures()


def run_worker(args: argparse.Namespace) -> int:
    if args.worker == "rivulet":
        result = worker_rivulet(args)
    elif args.worker == "quix":
        result = worker_quix(args)
    else:
        result = worker_faststream(args, ack=args.worker == "faststream-ack")
    print(json.dumps(result), flush=True)
    # A stop lets started work finish, so a framework may handle a few records more than
    # asked when the topic holds more (the --instructions runs): they count too.
    return 0 if result["records"] >= args.events else 1


# --------------------------------------------------------------------------- the run


def ensure_peers() -> Path:
    """The peers' interpreter, creating their virtual environment on first use."""
    python = PEERS / "bin" / "python"
    marker = PEERS / ".installed"
    wanted = "\n".join(PEER_PACKAGES)
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"setting up {PEERS} with {', '.join(PEER_PACKAGES)} (once)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PEER_PACKAGES],
        check=True,
    )
    marker.write_text(wanted)
    return python


def fill(bootstrap: str, topic: str, events: int) -> None:
    """Produce ``events`` input records (CloudEvents headers, ~220-byte JSON) to ``topic``."""
    base = dict(SAMPLE)

    def order(n: int) -> tuple[bytes, bytes, Headers]:
        order_id = f"ord-{n:012d}-5b1d-4e8a"
        base["order_id"] = order_id
        value = json.dumps(base, separators=(",", ":")).encode()
        return order_id.encode(), value, cloud_event_headers("OrderPlaced")

    produce_all(bootstrap, topic, (order(n) for n in range(events)))


#: Record headers as confluent-kafka's producer takes them.
Headers = list[tuple[str, str | bytes | None]]


def cloud_event_headers(event_type: str) -> Headers:
    """The CloudEvents headers of one new JSON event of ``event_type`` from "bench"."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", str(uuid.uuid4()).encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", b"bench"),
        ("content-type", b"application/json"),
    ]


def produce_all(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes, Headers]]
) -> None:
    """Produce ``(key, value, headers)`` records to ``topic``; return once all are acknowledged."""
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True}
    )
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the input events were not all acknowledged")


def run_worker_process(
    system: str,
    python: Path,
    bootstrap: str,
    topic: str,
    events: int,
    workdir: Path,
    *,
    wrapper: tuple[str, ...] = (),
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Run one worker process of ``system`` (under ``wrapper``, if any); its result line."""
    run_id = uuid.uuid4().hex[:8]
    argv = [
        *wrapper, str(python), str(Path(__file__).resolve()), "--worker", system,
        "--bootstrap", bootstrap, "--topic", topic, "--out", f"out-{system}-{run_id}",
        "--group", f"{system}-{run_id}", "--events", str(events),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") if system == "rivulet" else ""}
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=workdir, timeout=timeout_s, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{system} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


@dataclass(frozen=True)
class Sample:
    """One timed run of one framework."""

    rate: float
    """Events per second, from the first event to the end of the graceful stop."""
    cpu_us: float
    """The framework process's CPU microseconds per event (all its threads, same span).
    On a shared machine it varies less than the rate: time spent waiting for a CPU is
    not counted."""
    system_us: float
    """Of ``cpu_us``, the time spent in the kernel (system calls, thread wake-ups)."""
    switches: float
    """Context switches of the framework process per 1,000 events (a thread waking
    another, or waiting, costs a switch; cachegrind's instruction count misses them)."""
    stop_ms: float
    """Milliseconds from the last event's handler to the end of the graceful stop
    (part of the time the rate is taken over)."""
    broker_cpu_us: float
    """The broker's CPU microseconds per event over the worker's whole life (start-up,
    group join and stop included): on one machine the broker shares the cores, so
    requests a framework makes cost it rate too."""


def measure(
    system: str, python: Path, broker: "KafkaProtocolSystem", topic: str, events: int, workdir: Path
) -> Sample:
    """One timed run of ``system`` against ``broker``."""
    broker_cpu = broker.server.cpu_seconds()
    result = run_worker_process(system, python, broker.bootstrap, topic, events, workdir)
    broker_cpu = broker.server.cpu_seconds() - broker_cpu
    records = float(result["records"])
    return Sample(
        rate=records / float(result["seconds"]),
        cpu_us=float(result["cpu_seconds"]) / records * 1e6,
        system_us=float(result["system_seconds"]) / records * 1e6,
        switches=(result["voluntary_switches"] + result["involuntary_switches"]) / records * 1e3,
        stop_ms=float(result["stop_seconds"]) * 1e3,
        broker_cpu_us=broker_cpu / records * 1e6,
    )


def count_instructions(
    system: str, python: Path, bootstrap: str, topic: str, events: int, workdir: Path
) -> tuple[int, int]:
    """Instructions one worker process of ``system`` executed, and the records it handled."""
    out = workdir / f"cachegrind-{system}-{uuid.uuid4().hex[:8]}.out"
    valgrind = (
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--branch-sim=no",
        f"--cachegrind-out-file={out}",
    )  # fmt: skip
    result = run_worker_process(
        system, python, bootstrap, topic, events, workdir, wrapper=valgrind, timeout_s=3600
    )
    # The output file's "summary:" line holds the totals of its events (here only Ir).
    for line in out.read_text().splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1]), int(result["records"])
    raise RuntimeError(f"no summary line in {out}")


def chosen_systems(spec: str) -> dict[str, Path] | None:
    """The systems named in ``--systems``, in order, each with the interpreter it runs on.

    Rivulet runs on this one, the peers on their own environment's (created on first
    use). ``None`` (after saying why) when a name is unknown.
    """
    systems = [s for s in spec.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
        return None
    peers = ensure_peers() if set(systems) - {"rivulet"} else Path(sys.executable)
    return {s: Path(sys.executable) if s == "rivulet" else peers for s in systems}


def run_instructions(args: argparse.Namespace) -> int:
    """Print the instructions per event of each framework (see the module docstring)."""
    from bench._systems import rivulet_broker  # noqa: PLC0415

    if shutil.which("valgrind") is None:
        print("valgrind is not installed (./dev bench installs it)")
        return 2
    if args.instr_events < 40:
        # The smaller run takes a quarter; a worker asked for no event would never stop.
        print(f"--instr-events must be at least 40, not {args.instr_events}")
        return 2
    pythons = chosen_systems(args.systems)
    if pythons is None:
        return 2
    many = args.instr_events
    few = many // 4
    per_event: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-instructions-") as tmp:
        workdir = Path(tmp)
        with rivulet_broker(Path(sys.executable).parent / "rivulet", workdir, None) as broker:
            topic = f"orders-{uuid.uuid4().hex[:8]}"
            broker.create_topic(topic, 1)
            fill(broker.bootstrap, topic, many)
            for system, python in pythons.items():
                (small, small_records), (large, large_records) = (
                    count_instructions(system, python, broker.bootstrap, topic, n, workdir)
                    for n in (few, many)
                )
                if large_records <= small_records:
                    print(f"{system}: the smaller run handled every event; raise --instr-events")
                    return 1
                per_event[system] = (large - small) / (large_records - small_records)
                print(f"{system:<15} {per_event[system]:>12,.0f} instructions/event", flush=True)
    print()
    print(f"instructions per event, from runs of {few} and {many} events under cachegrind")
    print(f"{'framework':<15} {'instructions':>12}  {'Rivulet uses':>12}")
    for system, count in per_event.items():
        ratio = per_event.get("rivulet", 0.0) / count if system != "rivulet" else 1.0
        print(f"{system:<15} {count:>12,.0f}  {ratio:>11.2f}x")
    return 0


def run_comparison(args: argparse.Namespace) -> int:
    from bench._systems import rivulet_broker  # noqa: PLC0415

    pythons = chosen_systems(args.systems)
    if pythons is None:
        return 2
    systems = list(pythons)
    rivulet_exe = Path(sys.executable).parent / "rivulet"
    samples: dict[str, list[Sample]] = {s: [] for s in systems}
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-framework-") as tmp:
        workdir = Path(tmp)
        with rivulet_broker(rivulet_exe, workdir, None) as broker:
            topic = f"orders-{uuid.uuid4().hex[:8]}"
            broker.create_topic(topic, 1)
            started = time.perf_counter()
            fill(broker.bootstrap, topic, args.events)
            print(
                f"filled {topic} with {args.events} events in {time.perf_counter() - started:.1f} s"
            )
            for round_no in range(1, args.rounds + 1):
                # Alternate the order, so that no framework always runs first (or last)
                # in a round, when the machine may be in a different state.
                order = systems if round_no % 2 else systems[::-1]
                for system in order:
                    sample = measure(system, pythons[system], broker, topic, args.events, workdir)
                    samples[system].append(sample)
                    print(
                        f"round {round_no}: {system:<15} {sample.rate:>10,.0f} events/s"
                        f"  {sample.cpu_us:6.1f} us CPU/event ({sample.system_us:4.1f} system)"
                        f"  {sample.switches:5.0f} switches/1k events"
                        f"  broker {sample.broker_cpu_us:5.1f} us/event"
                        f"  stop {sample.stop_ms:5.0f} ms",
                        flush=True,
                    )
    print()
    print(f"{args.events} events of ~220 bytes, 1 partition, median of {args.rounds} rounds")
    print(
        f"{'framework':<15} {'events/s':>10}  {'Rivulet is':>10}"
        f"  {'CPU us/event':>12}  {'Rivulet uses':>12}  {'broker us':>9}"
    )
    rates = {s: statistics.median(x.rate for x in r) for s, r in samples.items()}
    cpus = {s: statistics.median(x.cpu_us for x in r) for s, r in samples.items()}
    brokers = {s: statistics.median(x.broker_cpu_us for x in r) for s, r in samples.items()}
    for system, rate in rates.items():
        ratio = rates.get("rivulet", 0.0) / rate if system != "rivulet" else 1.0
        cpu_us = cpus[system]
        cpu_ratio = cpus.get("rivulet", 0.0) / cpu_us if system != "rivulet" else 1.0
        print(
            f"{system:<15} {rate:>10,.0f}  {ratio:>9.2f}x  {cpu_us:>12.1f}  {cpu_ratio:>11.2f}x"
            f"  {brokers[system]:>9.1f}"
        )
    print(
        "(Rivulet is: its rate over the peer's; Rivulet uses: its CPU per event over the"
        " peer's; broker us: the broker's CPU per event while that framework ran)"
    )
    if args.json:
        figures = {s: [asdict(x) for x in r] for s, r in samples.items()}
        Path(args.json).write_text(json.dumps({"events": args.events, "samples": figures}))
    return 0


# --------------------------------------------------------------------------- codec


def codec_cases() -> dict[str, Callable[[], object]]:
    """The decode and encode variants compared, by name (orjson's when it is installed)."""
    import pydantic_core  # noqa: PLC0415
    from pydantic import BaseModel  # noqa: PLC0415

    order_placed, _ = models(BaseModel)
    sample = order_placed.model_validate(SAMPLE)
    data = sample.__pydantic_serializer__.to_json(sample)
    serializer = order_placed.__pydantic_serializer__
    cases: dict[str, Callable[[], object]] = {
        "decode model_validate_json": lambda: order_placed.model_validate_json(data),
        "decode json.loads + model_validate": lambda: order_placed.model_validate(json.loads(data)),
        "encode __pydantic_serializer__.to_json": lambda: serializer.to_json(sample),
        "encode pydantic_core.to_json": lambda: pydantic_core.to_json(sample),
        "encode model_dump_json().encode()": lambda: sample.model_dump_json().encode(),
        "encode json.dumps(model_dump(mode=json))": lambda: json.dumps(
            sample.model_dump(mode="json")
        ).encode(),
    }
    import orjson  # noqa: PLC0415 - only this comparison needs it

    cases["decode orjson.loads + model_validate"] = lambda: order_placed.model_validate(
        orjson.loads(data)
    )
    cases["encode orjson.dumps(model_dump())"] = lambda: orjson.dumps(sample.model_dump())
    return dict(sorted(cases.items(), key=lambda item: item[0].split()[0]))


def run_codec(number: int) -> None:
    """Print us/event and events/s for each codec variant (median of 3 runs)."""
    from pydantic import BaseModel  # noqa: PLC0415

    order_placed, _ = models(BaseModel)
    sample = order_placed.model_validate(SAMPLE)
    size = len(sample.__pydantic_serializer__.to_json(sample))
    print(f"codec: {size}-byte OrderPlaced, median of 3 runs x best of 3 x {number}")
    for name, case in codec_cases().items():
        runs = [min(timeit.repeat(case, number=number, repeat=3)) / number for _ in range(3)]
        seconds = statistics.median(runs)
        print(f"  {name:44s} {seconds * 1e6:6.2f} us  {1 / seconds / 1000:8.0f} k/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.framework", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per framework")
    parser.add_argument("--systems", default="rivulet,faststream,faststream-ack,quix")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--codec", action="store_true", help="measure the JSON codec choices")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per event (valgrind)"
    )
    parser.add_argument(
        "--instr-events", type=int, default=4_000, help="events of the larger valgrind run"
    )
    parser.add_argument("--number", type=int, default=20_000, help="calls per codec timing")
    # The worker side (one framework, in its own process).
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    for name in ("--bootstrap", "--topic", "--out", "--group"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args.codec:
        run_codec(args.number)
        return 0
    if args.instructions:
        return run_instructions(args)
    return run_comparison(args)


if __name__ == "__main__":
    sys.exit(main())
