"""``rivulet demo``: the classic Kafka walkthrough, in one terminal, with no Kafka to install.

It starts the embedded broker (data in ``./.rivulet/demo``, so a second run
continues where the first stopped), a producer that publishes an
``order-placed`` event to topic ``events`` every ``--interval`` seconds, and a
consumer in consumer group ``demo`` that prints each event with its partition,
offset and lag, committing its position as it goes.

Press ``c`` to stop the consumer while the producer keeps going, and ``c``
again to start it: it resumes from its committed position and reads the
backlog, with nothing lost. ``q`` (or Ctrl-C) quits. For unattended runs
(tests, CI, no terminal): ``--duration``, ``--pause-consumer-at`` and
``--resume-consumer-at`` script the same scenario. The run ends with::

    summary: produced 12, consumed 12, missing 0

Each event is a JSON object, keyed by its order id::

    {"type": "order-placed", "order_id": "ORD-000042", "sku": "SKU-1003",
     "quantity": 2, "placed_at": "2026-01-05T09:30:00.125+00:00"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

    from rivulet.broker import ThreadedBroker

__all__ = [
    "HELP",
    "NAME",
    "Demo",
    "DemoSettings",
    "DemoSummary",
    "Position",
    "add_arguments",
    "run",
]

NAME = "demo"
HELP = "run the order-events walkthrough: broker, producer and consumer in one terminal"

TOPIC = "events"
GROUP = "demo"
DEFAULT_DATA_DIR = Path(".rivulet/demo")
SKUS = tuple(f"SKU-{n}" for n in range(1001, 1011))

_TICK_S = 0.05
"""How often the main loop looks at the keys and the schedule."""
_DRAIN_TIMEOUT_S = 15.0
"""At the end, how long the consumer may take to read what was produced."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSettings:
    """What one run of the demo does. Built once from the command line."""

    data_dir: Path = DEFAULT_DATA_DIR
    interval_s: float = 5.0
    duration_s: float | None = None
    """Stop after this many seconds; ``None`` runs until ``q`` or Ctrl-C."""
    pause_consumer_at_s: float | None = None
    resume_consumer_at_s: float | None = None
    partitions: int = 3
    """Partitions of ``events`` when this run creates it."""

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ValueError(f"--interval must be positive, not {self.interval_s}")
        if self.partitions < 1:
            raise ValueError(f"--partitions must be at least 1, not {self.partitions}")
        pause, resume = self.pause_consumer_at_s, self.resume_consumer_at_s
        if resume is not None and (pause is None or resume <= pause):
            raise ValueError("--resume-consumer-at needs an earlier --pause-consumer-at")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where one event sits in the log."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{TOPIC}[{self.partition}]@{self.offset}"


@dataclass(slots=True)
class DemoSummary:
    """What a run produced and consumed, in the order each happened."""

    produced: list[tuple[Position, str]] = field(default_factory=list)
    """(position, order id) of every acknowledged event, in acknowledgement order."""
    consumed: list[tuple[Position, str]] = field(default_factory=list)
    """(position, order id) of every event the consumer printed, in reading order."""
    consumer_running_at_end: bool = True

    @property
    def missing(self) -> list[Position]:
        """Events produced in this run that the consumer did not read."""
        seen = {position for position, _ in self.consumed}
        return [position for position, _ in self.produced if position not in seen]

    @property
    def duplicates(self) -> int:
        return len(self.consumed) - len({position for position, _ in self.consumed})

    def line(self) -> str:
        """The closing line: ``summary: produced N, consumed N, missing 0``."""
        produced_here = {position for position, _ in self.produced}
        earlier = sum(1 for position, _ in self.consumed if position not in produced_here)
        text = f"summary: produced {len(self.produced)}, consumed {len(self.consumed)}"
        if earlier:
            text += f" ({earlier} left by an earlier run)"
        text += f", missing {len(self.missing)}"
        if self.duplicates:
            text += f", duplicates {self.duplicates}"
        if self.missing and not self.consumer_running_at_end:
            text += " (the consumer is stopped: they wait in the log for the next run)"
        return text


class _Ledger:
    """The run's record of events, shared by the producer, consumer and main threads."""

    def __init__(self) -> None:
        self.summary = DemoSummary()
        self._changed = threading.Condition()

    def produced(self, position: Position, order_id: str) -> None:
        with self._changed:
            self.summary.produced.append((position, order_id))
            self._changed.notify_all()

    def consumed(self, position: Position, order_id: str) -> None:
        with self._changed:
            self.summary.consumed.append((position, order_id))
            self._changed.notify_all()

    def wait_until_all_consumed(self, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self.summary.missing, timeout_s)


class _Console:
    """Whole lines to the output, one thread at a time."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()


def order_placed(number: int, rng: random.Random, now: datetime) -> tuple[str, dict[str, Any]]:
    """The ``number``-th order-placed event: its order id (the key) and its body."""
    order_id = f"ORD-{number:06d}"
    return order_id, {
        "type": "order-placed",
        "order_id": order_id,
        "sku": rng.choice(SKUS),
        "quantity": rng.randint(1, 5),
        "placed_at": now.isoformat(timespec="milliseconds"),
    }


class _ProducerLoop(threading.Thread):
    """Publishes one event every interval until stopped, then flushes."""

    def __init__(self, demo: Demo, first_number: int) -> None:
        super().__init__(name="demo-producer", daemon=True)
        self._demo = demo
        self._number = first_number
        self.stopping = threading.Event()

    def _report(self, error: KafkaError | None, message: Message) -> None:
        order_id = (message.key() or b"").decode()
        if error is not None:
            self._demo.console.say(f"produce of {order_id} failed: {error}")
            return
        partition, offset = message.partition(), message.offset()
        assert partition is not None
        assert offset is not None
        position = Position(partition, offset)
        self._demo.ledger.produced(position, order_id)
        self._demo.console.say(f"produced  {position}  order-placed {order_id}")

    def run(self) -> None:
        from confluent_kafka import Producer  # noqa: PLC0415

        demo = self._demo
        producer = Producer({"bootstrap.servers": demo.bootstrap, "acks": "all", "linger.ms": 0})
        try:
            next_at = demo.clock()
            while not self.stopping.is_set():
                order_id, body = order_placed(self._number, demo.rng, demo.wall_clock())
                producer.produce(
                    TOPIC,
                    key=order_id.encode(),
                    value=json.dumps(body).encode(),
                    on_delivery=self._report,
                )
                self._number += 1
                next_at += demo.settings.interval_s
                # Serve delivery reports while waiting for the next event's turn.
                while not self.stopping.is_set() and (left := next_at - demo.clock()) > 0:
                    producer.poll(min(left, _TICK_S))
                next_at = max(next_at, demo.clock() - demo.settings.interval_s)
            producer.flush(10)
        finally:
            producer.close()


class _ConsumerLoop(threading.Thread):
    """A member of group ``demo``: prints each event, commits after each batch."""

    def __init__(self, demo: Demo) -> None:
        super().__init__(name="demo-consumer", daemon=True)
        self._demo = demo
        self.stopping = threading.Event()
        self._backlog = 0
        self._read_since_start = 0

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        from confluent_kafka import OFFSET_INVALID  # noqa: PLC0415

        committed = consumer.committed(partitions, timeout=10)
        starts = []
        backlog = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            start = tp.offset if tp.offset != OFFSET_INVALID else low
            backlog += max(high - start, 0)
            starts.append(str(Position(tp.partition, start)))
        self._backlog = backlog
        self._read_since_start = 0
        self._demo.console.say(
            f"consumer joined group {GROUP!r}: resuming at {', '.join(starts) or 'nothing'}"
            f" (backlog {backlog})"
        )

    def run(self) -> None:
        from confluent_kafka import Consumer  # noqa: PLC0415

        demo = self._demo
        consumer = Consumer(
            {
                "bootstrap.servers": demo.bootstrap,
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        try:
            consumer.subscribe([TOPIC], on_assign=self._on_assign)
            while not self.stopping.is_set():
                messages = consumer.consume(num_messages=100, timeout=_TICK_S * 2)
                for message in messages:
                    error = message.error()
                    if error is None:
                        self._print(consumer, message)
                    else:  # librdkafka retries on its own; say what happened
                        demo.console.say(f"consumer: {error.str()}")
                if messages:
                    # Commit after printing: a restarted consumer resumes right after
                    # the last event it showed (at-least-once, never skipping one).
                    consumer.commit(asynchronous=False)
        finally:
            consumer.close()

    def _print(self, consumer: Consumer, message: Message) -> None:
        from confluent_kafka import TopicPartition  # noqa: PLC0415

        partition, offset = message.partition(), message.offset()
        assert partition is not None
        assert offset is not None
        position = Position(partition, offset)
        # The high watermark of the last fetch: no request per event.
        _low, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, partition), cached=True)
        lag = max(high - offset - 1, 0)  # high is negative until a fetch reported it
        value = message.value() or b""
        try:
            order_id = str(json.loads(value)["order_id"])
        except (ValueError, KeyError, TypeError):  # someone else wrote to the topic
            order_id = "?"
        self._demo.ledger.consumed(position, order_id)
        text = value.decode(errors="replace")
        self._demo.console.say(f"consumed  {position}  lag {lag}  {text}")
        self._read_since_start += 1
        if self._backlog and self._read_since_start == self._backlog:
            self._demo.console.say(f"consumer caught up: read a backlog of {self._backlog}")


class Demo:
    """One run of the walkthrough. :meth:`run` blocks until it is over.

    Keys (``c``, ``q``) arrive on :attr:`keys` from any thread; :meth:`quit`
    ends the run from a signal handler. The clocks and the random source are
    injected so that the schedule and the events can be controlled.
    """

    def __init__(
        self,
        settings: DemoSettings,
        out: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.console = _Console(out)
        self.clock = clock
        self.wall_clock = wall_clock
        self.rng = rng or random.Random()  # noqa: S311 - sample data, not security
        self.ledger = _Ledger()
        self.keys: queue.Queue[str] = queue.Queue()
        self.bootstrap = ""
        self._quit = threading.Event()
        self._consumer: _ConsumerLoop | None = None

    def quit(self) -> None:
        self._quit.set()

    def run(self, *, show_keys: bool = False) -> DemoSummary:
        from rivulet.broker import EmbeddedBroker  # noqa: PLC0415

        settings = self.settings
        broker = EmbeddedBroker.start_in_thread(
            settings.data_dir,
            num_partitions=settings.partitions,
            # One member joining an empty group need not wait for others.
            group_initial_rebalance_delay_ms=0,
        )
        try:
            self.bootstrap = broker.bootstrap_servers
            first_number = self._prepare_topic(broker) + 1
            self.console.say(
                f"rivulet demo: broker on {self.bootstrap} (data in {settings.data_dir}); "
                f"an order-placed event to {TOPIC!r} every {settings.interval_s:g} s"
            )
            self.console.say(f"look from elsewhere: kcat -b {self.bootstrap} -C -t {TOPIC}")
            if show_keys:
                self.console.say("keys: c = stop/start the consumer, q = quit")
            self._main_loop(first_number)
        finally:
            broker.stop()
        summary = self.ledger.summary
        self.console.say(summary.line())
        return summary

    def _prepare_topic(self, broker: ThreadedBroker) -> int:
        """Create ``events`` if needed; return how many events it already holds."""
        from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415
        from confluent_kafka.admin import AdminClient  # noqa: PLC0415
        from confluent_kafka.cimpl import NewTopic  # noqa: PLC0415

        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        topics = admin.list_topics(timeout=10).topics
        if TOPIC not in topics:
            future = admin.create_topics([NewTopic(TOPIC, self.settings.partitions)])[TOPIC]
            future.result(timeout=10)
            return 0
        # A consumer that never subscribes: it only reads the end offsets.
        probe = Consumer(
            {"bootstrap.servers": broker.bootstrap_servers, "group.id": f"{GROUP}-setup"}
        )
        try:
            return sum(
                probe.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                for p in topics[TOPIC].partitions
            )
        finally:
            probe.close()

    def _main_loop(self, first_number: int) -> None:
        settings = self.settings
        producer = _ProducerLoop(self, first_number)
        producer.start()
        self._start_consumer()
        started = self.clock()
        paused = resumed = False
        try:
            while not self._quit.is_set():
                elapsed = self.clock() - started
                if settings.duration_s is not None and elapsed >= settings.duration_s:
                    break
                pause_at, resume_at = settings.pause_consumer_at_s, settings.resume_consumer_at_s
                if pause_at is not None and not paused and elapsed >= pause_at:
                    paused = True
                    self._stop_consumer()
                if resume_at is not None and not resumed and elapsed >= resume_at:
                    resumed = True
                    self._start_consumer()
                with contextlib.suppress(queue.Empty):
                    self._on_key(self.keys.get(timeout=_TICK_S))
        except KeyboardInterrupt:
            pass
        finally:
            producer.stopping.set()
            producer.join()
            if self._consumer is not None:
                if not self.ledger.wait_until_all_consumed(_DRAIN_TIMEOUT_S):
                    self.console.say("the consumer did not catch up before the end")
                self._stop_consumer(note="")
                self.ledger.summary.consumer_running_at_end = True
            else:
                self.ledger.summary.consumer_running_at_end = False

    def _on_key(self, key: str) -> None:
        if key.lower() == "q":
            self._quit.set()
        elif key.lower() == "c":
            if self._consumer is None:
                self._start_consumer()
            else:
                self._stop_consumer()

    def _start_consumer(self) -> None:
        if self._consumer is None:
            self.console.say("consumer starting")
            self._consumer = _ConsumerLoop(self)
            self._consumer.start()

    def _stop_consumer(self, note: str = "; the producer keeps going") -> None:
        if self._consumer is not None:
            self._consumer.stopping.set()
            self._consumer.join()
            self._consumer = None
            self.console.say(f"consumer stopped (position committed){note}")


@contextlib.contextmanager
def _terminal_keys(demo: Demo) -> Iterator[bool]:
    """Feed single key presses from a terminal to ``demo.keys``; yield whether it can."""
    stdin = sys.stdin
    if not stdin.isatty():
        yield False
        return
    import select  # noqa: PLC0415
    import termios  # noqa: PLC0415
    import tty  # noqa: PLC0415

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    done = threading.Event()

    def read_keys() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], _TICK_S)
            if ready:
                char = stdin.read(1)
                if not char:
                    return
                demo.keys.put(char)

    tty.setcbreak(fd)  # one key at a time, no echo; output unchanged
    reader = threading.Thread(target=read_keys, name="demo-keys", daemon=True)
    reader.start()
    try:
        yield True
    finally:
        done.set()
        reader.join()
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "While it runs, press c to stop or start the consumer (the producer keeps going) "
        "and q to quit."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="the demo broker's data; a second run continues (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between two order-placed events (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: run until q)"
    )
    parser.add_argument(
        "--pause-consumer-at", type=float, metavar="A", help="stop the consumer A seconds in"
    )
    parser.add_argument(
        "--resume-consumer-at", type=float, metavar="B", help="start it again B seconds in"
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions of topic events when the demo creates it (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415

    try:
        settings = DemoSettings(
            data_dir=args.data_dir,
            interval_s=args.interval,
            duration_s=args.duration,
            pause_consumer_at_s=args.pause_consumer_at,
            resume_consumer_at_s=args.resume_consumer_at,
            partitions=args.partitions,
        )
    except ValueError as exc:
        print(f"rivulet demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(settings, sys.stdout)
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: demo.quit())
    try:
        with _terminal_keys(demo) as keys_enabled:
            summary = demo.run(show_keys=keys_enabled)
    finally:
        signal.signal(signal.SIGTERM, previous)
    lost = summary.missing and summary.consumer_running_at_end
    return 1 if lost or summary.duplicates else 0
