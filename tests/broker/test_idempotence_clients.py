"""Real clients with idempotence on: confluent-kafka (librdkafka), aiokafka, kafka-python.

confluent-kafka runs end to end in one process, through lost acknowledgements
(the broker appends, then drops the connection unanswered) and through broker
restarts in the middle of a produce load: ``rivulet broker`` runs as a child
process on a fixed port, is stopped (SIGTERM) or killed (SIGKILL) while batches
are in flight, and started again on the same data directory. librdkafka resends
what it has no answer for with the original sequence numbers; the broker must
store each batch once. The producer gives every record a per-partition counter,
so reading the topic back shows any record lost, duplicated or reordered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from kafka import KafkaProducer
from kio.schema.errors import ErrorCode

from rivulet.broker import Broker, BrokerConfig, BrokerServer, EmbeddedBroker, ThreadedBroker
from rivulet.broker.core import CloseConnectionError
from rivulet.broker.handlers import HANDLERS
from rivulet.broker.handlers import produce as produce_api
from rivulet.broker.router import RequestContext, Response

from .kafka_wire import WireClient
from .test_idempotence import batch, init_producer_id, produce, values

pytestmark = pytest.mark.interop

PARTITIONS = 3
TIMEOUT_S = 30.0


class Load:
    """An idempotent producer sending numbered records round-robin over the partitions."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.fatal: list[KafkaError] = []
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "linger.ms": 2,
                "batch.num.messages": 40,  # many small batches, so several are in flight
                "message.timeout.ms": 60_000,
                "retry.backoff.ms": 20,
                "retry.backoff.max.ms": 200,
                "reconnect.backoff.ms": 20,
                "reconnect.backoff.max.ms": 200,
                "error_cb": self._error,
            }
        )
        self.sent: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        self.acked: dict[tuple[int, int], bytes] = {}
        self.failed: list[KafkaError] = []
        self._count = 0

    def _error(self, error: KafkaError) -> None:
        if error.fatal():
            self.fatal.append(error)

    def _report(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self.failed.append(error)
            return
        partition, offset, value = message.partition(), message.offset(), message.value()
        assert partition is not None
        assert offset is not None
        assert value is not None
        self.acked[(partition, offset)] = value

    def send(self, count: int) -> None:
        for _ in range(count):
            partition = self._count % PARTITIONS
            value = b"%d-%06d" % (partition, len(self.sent[partition]))
            self.producer.produce(
                self.topic, value=value, partition=partition, on_delivery=self._report
            )
            self.sent[partition].append(value)
            self._count += 1
        self.producer.poll(0)

    def wait_for_acks(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while len(self.acked) < count:
            assert time.monotonic() < deadline, f"only {len(self.acked)} acks"
            self.producer.poll(0.01)

    def finish(self) -> None:
        assert self.producer.flush(TIMEOUT_S * 2) == 0, "records still unacknowledged"
        assert not self.fatal, self.fatal
        assert not self.failed, self.failed[:5]


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)])
    futures[topic].result(TIMEOUT_S)


def read_back(bootstrap: str, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    """Every (offset, value) of each partition, up to its high watermark."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{topic}",
            "enable.auto.commit": False,
            "check.crcs": True,
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        high = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        got: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + TIMEOUT_S
        while any(len(got[p]) < high[p] for p in range(PARTITIONS)):
            assert time.monotonic() < deadline, f"read {[len(v) for v in got.values()]} of {high}"
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if message.error() is not None:
                    raise KafkaException(message.error())
                partition, offset, value = message.partition(), message.offset(), message.value()
                assert partition is not None
                assert offset is not None
                assert value is not None
                got[partition].append((offset, value))
    finally:
        consumer.close()
    return got


def assert_exactly_once_in_order(load: Load, bootstrap: str) -> None:
    stored = read_back(bootstrap, load.topic)
    for partition in range(PARTITIONS):
        assert [value for _, value in stored[partition]] == load.sent[partition]
    by_offset = {(p, offset): value for p, records in stored.items() for offset, value in records}
    for key, value in load.acked.items():
        assert by_offset[key] == value, f"{key} was acknowledged as {value!r}"
    assert len(load.acked) == sum(len(sent) for sent in load.sent.values())


def test_idempotent_producer_end_to_end(broker: ThreadedBroker) -> None:
    create_topic(broker.bootstrap_servers, "idempotent")
    load = Load(broker.bootstrap_servers, "idempotent")
    for _ in range(10):
        load.send(100)
    load.finish()
    assert_exactly_once_in_order(load, broker.bootstrap_servers)

    # One producer id, epoch 0, known to every partition.
    states = partition_producers(broker, "idempotent")
    assert len({entry for state in states for entry in state}) == 1
    assert all(len(state) == 1 and state[0][1] == 0 for state in states)


async def test_a_lost_acknowledgement_is_retried_and_stored_once(broker_dir: Path) -> None:
    """Every fifth produce request is appended, then its connection dropped unanswered.

    librdkafka cannot know whether those batches were stored, so it sends them
    again with the same sequence numbers; the broker must recognise them.
    """
    requests = 0
    dropped = 0

    async def append_then_drop(ctx: RequestContext, request: Any) -> Response | None:
        nonlocal requests, dropped
        response = await produce_api.HANDLER.handle(ctx, request)
        requests += 1
        if requests % 5 == 0:
            dropped += 1
            raise CloseConnectionError("test: the acknowledgement is lost")
        return response

    flaky = dataclasses.replace(produce_api.HANDLER, handle=append_then_drop)
    handlers = [flaky if h.api_key == flaky.api_key else h for h in HANDLERS]
    config = BrokerConfig(data_dir=broker_dir, host="127.0.0.1", port=0)
    server = BrokerServer(Broker(config, handlers=handlers))
    await server.start()
    try:
        bootstrap = f"127.0.0.1:{server.broker.port}"

        def run() -> Load:
            create_topic(bootstrap, "lost-acks")
            load = Load(bootstrap, "lost-acks")
            for _ in range(10):
                load.send(200)
                load.producer.poll(0.01)
            load.finish()
            return load

        load = await asyncio.to_thread(run)
        await asyncio.to_thread(assert_exactly_once_in_order, load, bootstrap)
    finally:
        await server.stop()
    assert dropped >= 3


def partition_producers(broker: ThreadedBroker, topic: str) -> list[list[tuple[int, int]]]:
    """(producer id, epoch) of every producer each partition of ``topic`` knows."""

    async def collect() -> list[list[tuple[int, int]]]:
        found = broker.broker.topics.get(topic)
        assert found is not None
        return [
            [(e.producer_id, e.epoch) for e in p.log.producers]  # type: ignore[attr-defined]
            for p in found.partitions
        ]

    result: list[list[tuple[int, int]]] = broker.call(collect())
    return result


async def test_aiokafka_idempotent_producer(async_broker: EmbeddedBroker) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=async_broker.bootstrap_servers, enable_idempotence=True
    )
    await producer.start()
    try:
        offsets = [
            (await producer.send_and_wait("aio-idempotent", b"%d" % i, partition=0)).offset
            for i in range(20)
        ]
    finally:
        await producer.stop()
    assert offsets == list(range(20))
    topic = async_broker.broker.topics.get("aio-idempotent")
    assert topic is not None
    log = topic.partitions[0].log
    assert [(e.epoch, e.last_seq) for e in log.producers] == [(0, 19)]  # type: ignore[attr-defined]


def test_kafka_python_idempotent_producer(broker: ThreadedBroker) -> None:
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap_servers, enable_idempotence=True, linger_ms=5
    )
    try:
        futures = [producer.send("kp-idempotent", b"%d" % i, partition=0) for i in range(20)]
        producer.flush(TIMEOUT_S)
        offsets = [future.get(TIMEOUT_S).offset for future in futures]
    finally:
        producer.close(TIMEOUT_S)
    assert offsets == list(range(20))
    ((entry,),) = partition_producers(broker, "kp-idempotent")
    assert entry[1] == 0


# -- through restarts of a broker process ----------------------------------------

Start = Callable[[], str]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[tuple[Start, Callable[[signal.Signals], None]]]:
    """Start (and restart) ``rivulet broker`` on one port and data directory; stop it."""
    port = free_port()
    running: list[subprocess.Popen[bytes]] = []
    log_path = tmp_path / "broker.log"

    def start() -> str:
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rivulet.cli.main",
                    "broker",
                    "--data-dir",
                    str(tmp_path / "data"),
                    "--listen",
                    f"127.0.0.1:{port}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running.append(process)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            assert process.poll() is None, f"the broker exited: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"no broker on {port}: {log_path.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            return f"127.0.0.1:{port}"

    def stop(how: signal.Signals) -> None:
        process = running[-1]
        process.send_signal(how)
        assert process.wait(timeout=TIMEOUT_S) in (0, -signal.SIGKILL)

    yield start, stop
    for process in running:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=TIMEOUT_S)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_idempotent_producer_through_broker_restarts(
    broker_process: tuple[Start, Callable[[signal.Signals], None]], how: signal.Signals
) -> None:
    start, stop = broker_process
    bootstrap = start()
    create_topic(bootstrap, "through-restarts")
    load = Load(bootstrap, "through-restarts")
    for _round in range(2):
        load.send(1500)
        load.wait_for_acks(len(load.acked) + 300)
        stop(how)  # with most of the batches still queued or in flight
        load.send(300)  # queued while the broker is down
        start()
    load.send(300)
    load.finish()
    assert_exactly_once_in_order(load, bootstrap)


async def test_a_killed_broker_rebuilds_producer_state_from_its_log(
    broker_process: tuple[Start, Callable[[signal.Signals], None]],
) -> None:
    """No clean close, so no snapshot at the end: the state comes from the log itself."""
    start, stop = broker_process
    wire = await WireClient.connect(start())
    pid = (await init_producer_id(wire)).producer_id
    for seq in range(4):
        assert (await produce(wire, "killed", batch(seq, pid=pid))).base_offset == seq
    await wire.close()
    stop(signal.SIGKILL)
    wire = await WireClient.connect(start())
    for seq in range(4):
        assert (await produce(wire, "killed", batch(seq, pid=pid))).base_offset == seq
    gap = await produce(wire, "killed", batch(5, pid=pid))
    assert gap.error_code is ErrorCode.out_of_order_sequence_number
    assert await values(wire, "killed") == [b"v0", b"v1", b"v2", b"v3"]
    await wire.close()
