"""Framework throughput: Rivulet against FastStream and Quix Streams on the embedded broker.

Run with ``./dev bench framework [options]`` (or ``.venv/bin/python -m bench.framework``).

The work (issue 4): consume JSON events of ~220 bytes, validate each into a typed
pydantic model, run a trivial handler that publishes one event, commit. A
``rivulet broker`` process (durable storage) holds one input topic of one partition,
filled with ``--events`` events beforehand (with CloudEvents headers, which the peers
ignore). Then, round after round, each framework runs in a process of its own, as a
fresh consumer group with a fresh output topic, and reports the seconds from its first
event to the end of its graceful stop, which includes the confirmation of every
published event and the final offset commit. Medians per framework and Rivulet's
ratios are printed. Figures, not a test.

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
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

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
# Each runs in its own process and prints {"records": N, "seconds": S} on stdout.


def worker_rivulet(args: argparse.Namespace) -> dict[str, float]:
    from rivulet import App, Context, Event, Settings  # noqa: PLC0415

    order_placed, order_confirmed = models(Event)
    app = App("bench-rivulet")
    state = {"count": 0, "t0": 0.0, "cpu0": 0.0}

    @app.handler(args.topic, group=args.group)
    async def handle(event: order_placed, ctx: Context) -> None:  # type: ignore[valid-type]
        if not state["count"]:
            state["t0"] = time.perf_counter()
            state["cpu0"] = time.process_time()
        await ctx.publish(args.out, confirm(event, order_confirmed), key=ctx.key)
        state["count"] += 1
        if state["count"] == args.events:
            os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop, as in production

    settings = Settings(
        bootstrap_servers=args.bootstrap,
        database_url="sqlite://",
        data_dir=Path(tempfile.mkdtemp()),
        outbox_relay=False,
        log_level="WARNING",
    )
    app.run(settings)  # what `rivulet run` does: until SIGTERM, then a graceful stop
    return {
        "records": state["count"],
        "seconds": time.perf_counter() - state["t0"],
        "cpu_seconds": time.process_time() - state["cpu0"],
    }


def worker_faststream(args: argparse.Namespace, *, ack: bool) -> dict[str, float]:
    # Imported by name: the peers live in their own environment, not Rivulet's.
    faststream: Any = importlib.import_module("faststream")
    faststream_kafka: Any = importlib.import_module("faststream.kafka")
    from pydantic import BaseModel  # noqa: PLC0415

    order_placed, order_confirmed = models(BaseModel)
    broker = faststream_kafka.KafkaBroker(args.bootstrap, logger=None)
    done = asyncio.Event()
    state = {"count": 0, "t0": 0.0, "cpu0": 0.0}
    options: dict[str, Any] = {"group_id": args.group, "auto_offset_reset": "earliest"}
    if ack:
        options["ack_policy"] = faststream.AckPolicy.ACK

    async def handle(event: order_placed) -> order_confirmed:  # type: ignore[valid-type]
        if not state["count"]:
            state["t0"] = time.perf_counter()
            state["cpu0"] = time.process_time()
        state["count"] += 1
        if state["count"] == args.events:
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
    return {
        "records": state["count"],
        "seconds": time.perf_counter() - state["t0"],
        "cpu_seconds": time.process_time() - state["cpu0"],
    }


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
    state = {"count": 0, "t0": 0.0, "cpu0": 0.0}

    def handle(value: dict[str, Any]) -> dict[str, Any]:
        if not state["count"]:
            state["t0"] = time.perf_counter()
            state["cpu0"] = time.process_time()
        confirmed = confirm(order_placed.model_validate(value), order_confirmed)
        state["count"] += 1
        if state["count"] == args.events:
            app.stop()
        result: dict[str, Any] = confirmed.model_dump(mode="json")
        return result

    app.dataframe(source).apply(handle).to_topic(sink)
    app.run()
    return {
        "records": state["count"],
        "seconds": time.perf_counter() - state["t0"],
        "cpu_seconds": time.process_time() - state["cpu0"],
    }


def run_worker(args: argparse.Namespace) -> int:
    if args.worker == "rivulet":
        result = worker_rivulet(args)
    elif args.worker == "quix":
        result = worker_quix(args)
    else:
        result = worker_faststream(args, ack=args.worker == "faststream-ack")
    print(json.dumps(result), flush=True)
    return 0 if result["records"] == args.events else 1


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
    import confluent_kafka  # noqa: PLC0415

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 10, "enable.idempotence": True}
    )
    base = dict(SAMPLE)
    for n in range(events):
        order_id = f"ord-{n:012d}-5b1d-4e8a"
        base["order_id"] = order_id
        value = json.dumps(base, separators=(",", ":")).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            ("ce_specversion", b"1.0"),
            ("ce_id", str(uuid.uuid4()).encode()),
            ("ce_type", b"OrderPlaced"),
            ("ce_source", b"bench"),
            ("content-type", b"application/json"),
        ]
        while True:
            try:
                producer.produce(topic, value, key=order_id.encode(), headers=headers)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError("the input events were not all acknowledged")


def measure(
    system: str, python: Path, bootstrap: str, topic: str, events: int, workdir: Path
) -> tuple[float, float]:
    """One timed run of ``system``: events per second, and CPU microseconds per event.

    The CPU time is the framework process's (all its threads), from its first event to
    the end of its graceful stop. On a shared machine it varies less than the rate,
    because time the process waits for a CPU is not counted.
    """
    run_id = uuid.uuid4().hex[:8]
    argv = [
        str(python), str(Path(__file__).resolve()), "--worker", system,
        "--bootstrap", bootstrap, "--topic", topic, "--out", f"out-{system}-{run_id}",
        "--group", f"{system}-{run_id}", "--events", str(events),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") if system == "rivulet" else ""}
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=workdir, timeout=1800, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{system} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1])
    cpu_us = float(result["cpu_seconds"]) / float(result["records"]) * 1e6
    return float(result["records"]) / float(result["seconds"]), cpu_us


def run_comparison(args: argparse.Namespace) -> int:
    from bench._systems import rivulet_broker  # noqa: PLC0415

    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
        return 2
    peers = ensure_peers() if set(systems) - {"rivulet"} else None
    rivulet_exe = Path(sys.executable).parent / "rivulet"
    results: dict[str, list[float]] = {s: [] for s in systems}
    cpu: dict[str, list[float]] = {s: [] for s in systems}
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
                for system in systems:
                    python = Path(sys.executable) if system == "rivulet" else peers
                    assert python is not None
                    rate, cpu_us = measure(
                        system, python, broker.bootstrap, topic, args.events, workdir
                    )
                    results[system].append(rate)
                    cpu[system].append(cpu_us)
                    print(
                        f"round {round_no}: {system:<15} {rate:>10,.0f} events/s"
                        f"  {cpu_us:6.1f} us CPU/event",
                        flush=True,
                    )
    print()
    print(f"{args.events} events of ~220 bytes, 1 partition, median of {args.rounds} rounds")
    print(
        f"{'framework':<15} {'events/s':>10}  {'Rivulet is':>10}"
        f"  {'CPU us/event':>12}  {'Rivulet uses':>12}"
    )
    medians = {s: statistics.median(r) for s, r in results.items()}
    cpu_medians = {s: statistics.median(c) for s, c in cpu.items()}
    for system, rate in medians.items():
        ratio = medians.get("rivulet", 0.0) / rate if system != "rivulet" else 1.0
        cpu_us = cpu_medians[system]
        cpu_ratio = cpu_medians.get("rivulet", 0.0) / cpu_us if system != "rivulet" else 1.0
        print(f"{system:<15} {rate:>10,.0f}  {ratio:>9.2f}x  {cpu_us:>12.1f}  {cpu_ratio:>11.2f}x")
    print("(Rivulet is: its rate over the peer's; Rivulet uses: its CPU per event over the peer's)")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"events": args.events, "results": results, "cpu_us_per_event": cpu})
        )
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
    return run_comparison(args)


if __name__ == "__main__":
    sys.exit(main())
