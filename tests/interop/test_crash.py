"""SIGKILL during a produce load loses no acknowledged record and exposes no partial batch.

``rivulet broker`` runs as a child process; two confluent-kafka producers
(acks=all and acks=1) write to it while the test records every record a
delivery report acknowledged. The broker is killed mid-load, restarted on the
same data directory, and each partition is read back to its high watermark with
librdkafka checking every batch's CRC32C (a torn batch would be a consumer error).
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Message, Producer

from rivulet.broker import ThreadedBroker
from tests._broker_process import broker_process as rivulet_broker_process
from tests.interop._support import create_topic, read_topic

pytestmark = pytest.mark.interop

BrokerFactory = Callable[..., ThreadedBroker]
PARTITIONS = 3
LOAD_SECONDS = 0.8
BURST = 100
RATE = 25_000
"""Records per second each producer sends."""


@pytest.fixture
def broker_process(
    tmp_path: Path, broker_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``rivulet broker`` on a free port; yields the process and its bootstrap address."""
    with rivulet_broker_process(broker_dir, tmp_path / "broker.log") as started:
        yield started


@dataclass
class Load:
    """One producer's view: what it sent and what the broker acknowledged."""

    topic: str
    producer: Producer
    sent: int = 0
    acked: dict[tuple[int, int], bytes] = field(default_factory=dict)
    """(partition, offset) -> value of every record a delivery report acknowledged."""
    failed: int = 0

    def report(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed += 1
            return
        partition, offset, value = message.partition(), message.offset(), message.value()
        assert partition is not None
        assert offset is not None
        assert value is not None
        self.acked[(partition, offset)] = value

    def burst(self) -> None:
        for _ in range(BURST):
            self.producer.produce(
                self.topic,
                value=b"%s:%08d" % (self.topic.encode(), self.sent),
                partition=self.sent % PARTITIONS,
                on_delivery=self.report,
            )
            self.sent += 1
        self.producer.poll(0)


def test_sigkill_under_load_loses_no_acknowledged_record(
    broker_process: tuple[subprocess.Popen[bytes], str],
    broker_factory: BrokerFactory,
    broker_dir: Path,
) -> None:
    process, bootstrap = broker_process
    loads = []
    for acks in ("all", "1"):
        topic = f"load-acks-{acks}"
        create_topic(bootstrap, topic, partitions=PARTITIONS)
        producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": acks,
                "linger.ms": 1,
                "batch.num.messages": 100,  # many small batches: more of them in flight at the kill
                "message.timeout.ms": 5000,
            }
        )
        loads.append(Load(topic, producer))

    # The kill comes from another thread, at a moment the producers do not choose.
    killer = threading.Timer(LOAD_SECONDS, process.send_signal, [signal.SIGKILL])
    killer.start()
    started = time.monotonic()
    try:
        while process.poll() is None:
            # A steady rate keeps records in flight all the time without writing
            # more than the test can read back quickly.
            due = RATE * (time.monotonic() - started)
            for load in loads:
                if load.sent < due:
                    load.burst()
                load.producer.poll(0.001)
    finally:
        killer.cancel()
    assert process.wait(timeout=30) == -signal.SIGKILL
    for load in loads:
        # Delivery reports already received stay acknowledged; everything else
        # fails now instead of after message.timeout.ms.
        load.producer.purge()
        assert load.producer.flush(10) == 0
        load.producer.close()
        assert len(load.acked) + load.failed == load.sent
        assert load.acked, f"nothing was acknowledged on {load.topic}: the load did not run"

    restarted = broker_factory(data_dir=broker_dir)
    for load in loads:
        log = read_topic(restarted.bootstrap_servers, load.topic, PARTITIONS)

        stored = {(r.partition, r.offset): r.value for r in log}
        lost = {at: value for at, value in load.acked.items() if stored.get(at) != value}
        assert not lost, f"{len(lost)} acknowledged records lost or changed on {load.topic}"
        for partition in range(PARTITIONS):
            offsets = [r.offset for r in log if r.partition == partition]
            assert offsets == list(range(len(offsets))), f"a hole in {load.topic}[{partition}]"
        values = [r.value for r in log]
        assert len(set(values)) == len(values), "a record was stored twice"
        sent = {b"%s:%08d" % (load.topic.encode(), n) for n in range(load.sent)}
        assert set(values) <= sent, "the log holds records nobody produced"
