"""Testing services against a real (embedded) broker: no mocks, the real protocol.

The pytest plugin (:mod:`rivulet.framework.pytest_plugin`, loaded automatically once
Rivulet is installed) provides the ``kafka`` fixture: an in-memory embedded broker on
a free port, with helpers to publish events and to await what handlers produce::

    async def test_reserves_stock(kafka: KafkaHarness) -> None:
        async with kafka.run(app):
            await kafka.publish("orders", OrderPlaced(order_id="o-1", sku="s", qty=1), key="o-1")
            [reserved] = await kafka.events("inventory", StockReserved, count=1)
            assert reserved.order_id == "o-1"

Outside pytest, ``async with KafkaHarness.start() as kafka:`` does the same.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import confluent_kafka

from rivulet.framework._app import App
from rivulet.framework._config import Settings
from rivulet.framework._consumer import to_record
from rivulet.framework._embedded import embedded_broker
from rivulet.framework._events import Event
from rivulet.framework._kafka import Producer, producer_config
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._runtime import Runtime
from rivulet.framework._wire import (
    EVENT_TYPE,
    ConsumedRecord,
    JsonSerializer,
    OutgoingRecord,
    Serializer,
    decode_envelope,
)

__all__ = ["KafkaHarness"]

E = TypeVar("E", bound=Event)


class KafkaHarness:
    """An embedded broker for a test, with a producer and readers for assertions."""

    def __init__(self, bootstrap_servers: str, data_dir: Path) -> None:
        #: ``host:port`` of the broker.
        self.bootstrap_servers = bootstrap_servers
        self.data_dir = data_dir
        self._producer: Producer | None = None
        self._encoder = EventEncoder(
            source="test",
            serializers=(JsonSerializer(),),
            clock_ms=lambda: time.time_ns() // 1_000_000,
            random_bits=random.Random().getrandbits,  # noqa: S311 - ids, not secrets
        )

    @classmethod
    @asynccontextmanager
    async def start(cls, data_dir: Path, *, partitions: int = 1) -> AsyncIterator[KafkaHarness]:
        """An in-memory broker (topics get ``partitions`` partitions) for the block."""
        async with (
            embedded_broker(
                None, num_partitions=partitions, group_initial_rebalance_delay_ms=0
            ) as bootstrap,
            cls.connect(bootstrap, data_dir) as harness,
        ):
            yield harness

    @classmethod
    @asynccontextmanager
    async def connect(cls, bootstrap_servers: str, data_dir: Path) -> AsyncIterator[KafkaHarness]:
        """A harness on a broker already running elsewhere (another process, a Kafka cluster).

        An app whose broker runs on its own event loop behaves a little differently (it
        never takes records on that loop), so tests of that path need one of these.
        """
        harness = cls(bootstrap_servers, data_dir)
        try:
            yield harness
        finally:
            if harness._producer is not None:
                await harness._producer.close(10)

    def settings(self, **overrides: Any) -> Settings:
        """Settings for an app under test: this broker, a SQLite file in the test's directory."""
        values: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "data_dir": self.data_dir,
            "commit_interval_ms": 100,
            "shutdown_timeout_s": 10.0,
            # Rebalances complete within a heartbeat: keep them short in tests.
            "kafka": {"heartbeat.interval.ms": "300", "session.timeout.ms": "6000"},
        }
        values.update(overrides)
        return Settings(**values)

    @asynccontextmanager
    async def run(self, app: App, **settings: Any) -> AsyncIterator[Runtime]:
        """Run ``app`` on this broker until the block ends, its groups already assigned."""
        async with app.running(self.settings(**settings)) as runtime:
            await runtime.wait_ready()
            yield runtime

    @staticmethod
    async def until(
        condition: Callable[[], bool | Awaitable[bool]],
        *,
        timeout_s: float = 20.0,
        what: str = "the condition",
    ) -> None:
        """Wait until ``condition()`` (sync or async) holds; ``TimeoutError`` naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = condition()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
            await asyncio.sleep(0.02)

    async def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(producer_config(self.bootstrap_servers, {}))
            self._producer.start()
        return self._producer

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str | bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> str:
        """Publish an event as a Rivulet service would; returns its id once confirmed."""
        built = self._encoder.build(event, topic=topic, key=key, headers=headers)
        await (await self._ensure_producer()).send_and_wait([built.record])
        return built.event_id

    async def publish_many(
        self, topic: str, events: Sequence[tuple[Event, str | bytes | None]]
    ) -> list[str]:
        """Publish ``(event, key)`` pairs in order, waiting once for all confirmations."""
        built = [self._encoder.build(event, topic=topic, key=key) for event, key in events]
        await (await self._ensure_producer()).send_and_wait([b.record for b in built])
        return [b.event_id for b in built]

    async def publish_raw(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish arbitrary bytes (bad input, records from foreign producers)."""
        record = OutgoingRecord(topic, key, value, list(headers))
        await (await self._ensure_producer()).send_and_wait([record])

    async def records(
        self, topic: str, *, count: int, timeout_s: float = 20.0
    ) -> list[ConsumedRecord]:
        """The first ``count`` records of ``topic`` (all partitions, from the beginning).

        Waits until there are that many; raises ``TimeoutError`` with what was seen.
        """
        return await asyncio.to_thread(self._read, topic, count, timeout_s)

    async def events(
        self,
        topic: str,
        model: type[E],
        *,
        count: int,
        timeout_s: float = 20.0,
        serializer: Serializer | None = None,
    ) -> list[E]:
        """The first ``count`` events of type ``model`` on ``topic``, validated."""
        codec = serializer or JsonSerializer()
        found: list[E] = []
        seen = count
        while len(found) < count:
            records = await self.records(topic, count=seen, timeout_s=timeout_s)
            found = [
                codec.decode(r.value or b"", model, topic=topic)
                for r in records
                if decode_envelope(r).type == model.__event_type__
            ]
            seen += count - len(found)
        return found[:count]

    def _read(self, topic: str, count: int, timeout_s: float) -> list[ConsumedRecord]:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "group.id": "rivulet-test-reader",
                "enable.auto.commit": False,
                "allow.auto.create.topics": True,
                "fetch.queue.backoff.ms": 10,
            }
        )
        try:
            deadline = time.monotonic() + timeout_s
            partitions = self._partitions(consumer, topic, deadline)
            consumer.assign(
                [
                    confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                    for p in partitions
                ]
            )
            found: list[ConsumedRecord] = []
            while len(found) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    types = [decode_envelope(r).type for r in found]
                    raise TimeoutError(
                        f"{topic}: expected {count} records within {timeout_s} s, saw "
                        f"{len(found)} (types {types})"
                    )
                messages = consumer.consume(count - len(found), min(remaining, 0.2))
                found.extend(to_record(m) for m in messages if m.error() is None)
            found.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
            return found
        finally:
            consumer.close()

    @staticmethod
    def _partitions(consumer: Any, topic: str, deadline: float) -> list[int]:
        while True:
            metadata = consumer.list_topics(topic, timeout=5)
            info = metadata.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                return sorted(info.partitions)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} did not appear")
            time.sleep(0.05)


def event_type_header(record: ConsumedRecord) -> str | None:
    """The ``ce_type`` of a record, for assertions."""
    for name, value in record.headers:
        if name == EVENT_TYPE and value is not None:
            return value.decode()
    return None
