"""The ``_schemas`` topic as the registry's only storage, over confluent-kafka.

On start the store makes sure the topic exists (one partition, compacted), reads it
from the beginning to the end offset it had at start, and only then lets the registry
serve: every answer reflects every record written before. A reader task keeps applying
records as they arrive. A write produces its records, waits for the broker's
acknowledgement, then waits until the reader has applied them, so the state a request
answers from is always the topic's, whoever wrote it.

One writer is assumed (as with a single Confluent registry, or its elected leader): ids
and version numbers are chosen from the state this process has read, so two registries
writing at once could choose the same. Any number of read-only replicas may run.

Nothing here is specific to the embedded broker: the store runs against Apache Kafka.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import confluent_kafka
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.cimpl import NewTopic

from rivulet.registry._errors import StoreError, StoreTimeoutError
from rivulet.registry._state import RegistryState

__all__ = ["DEFAULT_TOPIC", "TopicStore"]

_log = logging.getLogger("rivulet.registry")

DEFAULT_TOPIC: Final = "_schemas"
_POLL_S: Final = 0.1


class TopicStore:
    """Reads and writes a :class:`RegistryState` through a compacted topic."""

    def __init__(
        self,
        state: RegistryState,
        *,
        bootstrap_servers: str,
        topic: str = DEFAULT_TOPIC,
        client_config: Mapping[str, str] | None = None,
        replication_factor: int = -1,
        timeout_s: float = 30.0,
    ) -> None:
        self.state = state
        self.topic = topic
        self._config: dict[str, Any] = {
            "bootstrap.servers": bootstrap_servers,
            **(client_config or {}),
        }
        self._replication_factor = replication_factor
        self._timeout_s = timeout_s
        # One thread for librdkafka's blocking calls: consume() long-polls there.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="rivulet-registry-reader"
        )
        self._producer: confluent_kafka.Producer | None = None
        self._consumer: confluent_kafka.Consumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._progress = asyncio.Condition()
        #: The next offset the reader will apply.
        self.position = 0
        #: The reader has reached the end of the log once (it is fetching).
        self._at_end_once = False
        self._stopping = False

    @property
    def reader(self) -> asyncio.Task[None] | None:
        """The task applying the topic's records (done only when stopping or failed)."""
        return self._reader

    async def start(self) -> None:
        """Create the topic if needed, read it to its end, and keep reading."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._ensure_topic)
            consumer = confluent_kafka.Consumer(
                {
                    **self._config,
                    "group.id": f"rivulet-registry-{self.topic}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                }
            )
            partition = confluent_kafka.TopicPartition(
                self.topic, 0, confluent_kafka.OFFSET_BEGINNING
            )
            consumer.assign([partition])
            self._consumer = consumer
            _, end = await loop.run_in_executor(
                self._executor,
                lambda: consumer.get_watermark_offsets(partition, timeout=self._timeout_s),
            )
            self._producer = confluent_kafka.Producer(
                {**self._config, "acks": "all", "linger.ms": 0, "enable.idempotence": False}
            )
        except confluent_kafka.KafkaException as exc:
            self._close_clients()
            raise StoreError(
                f"cannot reach the {self.topic} topic at {self._config['bootstrap.servers']}: "
                f"{exc.args[0] if exc.args else exc}"
            ) from None
        self._reader = loop.create_task(self._read_forever(), name="rivulet-registry-reader")
        await self._wait_for(end, f"reading {self.topic} to its end offset {end}")
        _log.info(
            "registry state rebuilt from %s: %d subjects, %d schemas (end offset %d)",
            self.topic,
            len(self.state.subjects),
            len(self.state.schema_ids()),
            end,
        )

    def _ensure_topic(self) -> None:
        admin = AdminClient(self._config)
        wanted = NewTopic(
            self.topic,
            num_partitions=1,
            replication_factor=self._replication_factor,
            config={"cleanup.policy": "compact"},
        )
        for future in admin.create_topics([wanted], request_timeout=self._timeout_s).values():
            try:
                future.result()
                _log.info("created the compacted topic %s", self.topic)
            except confluent_kafka.KafkaException as exc:
                if exc.args[0].code() != confluent_kafka.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        metadata = admin.list_topics(self.topic, timeout=self._timeout_s).topics[self.topic]
        if len(metadata.partitions) != 1:
            raise StoreError(
                f"topic {self.topic} has {len(metadata.partitions)} partitions; the registry "
                "needs exactly one (records must be read in the order they were written)"
            )
        resource = ConfigResource(ConfigResource.Type.TOPIC, self.topic)
        for future in admin.describe_configs([resource]).values():
            policy = future.result(timeout=self._timeout_s).get("cleanup.policy")
            if policy is not None and "compact" not in str(policy.value):
                raise StoreError(
                    f"topic {self.topic} has cleanup.policy={policy.value}; the registry needs "
                    "compact (with delete, old schemas would expire)"
                )

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            messages = await loop.run_in_executor(self._executor, self._next_batch)
            moved = False
            for message in messages:
                error = message.error()
                if error is None:
                    offset = message.offset()
                    assert offset is not None  # a record read from the log has one
                    self.state.apply(message.key(), message.value())
                    self.position = offset + 1
                    moved = True
                elif error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                    # Compaction can leave gaps: the end of the log is where we are.
                    self.position = max(self.position, message.offset() or 0)
                    self._at_end_once = True
                    moved = True
                else:
                    _log.warning("reading %s: %s", self.topic, error)
            if moved:
                async with self._progress:
                    self._progress.notify_all()

    def _next_batch(self) -> list[Any]:
        # poll() returns as soon as one record is there (consume() waits out its timeout
        # unless the batch fills), then whatever else has arrived is taken without waiting.
        consumer = self._consumer
        assert consumer is not None
        first = consumer.poll(_POLL_S)
        if first is None:
            return []
        return [first, *consumer.consume(499, 0)]

    async def _wait_for(self, position: int, doing: str) -> None:
        reader = self._reader
        assert reader is not None

        async def caught_up() -> None:
            async with self._progress:
                await self._progress.wait_for(
                    lambda: (self.position >= position and self._at_end_once) or reader.done()
                )
            if reader.done():
                reader.result()
                raise StoreError(f"the {self.topic} reader stopped while {doing}")

        try:
            await asyncio.wait_for(caught_up(), self._timeout_s)
        except TimeoutError:
            raise StoreTimeoutError(
                f"timed out after {self._timeout_s:g}s {doing}; is the broker reachable?"
            ) from None

    async def write(self, records: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Append records and return once the state has applied them."""
        producer = self._producer
        if producer is None:
            raise StoreError("the store is not started")
        loop = asyncio.get_running_loop()
        results: list[tuple[int, str | None]] = []

        def delivered(error: confluent_kafka.KafkaError | None, message: Any) -> None:
            results.append((-1, str(error)) if error else (message.offset(), None))

        for key, value in records:
            producer.produce(self.topic, key=key, value=value, partition=0, on_delivery=delivered)
        left = await loop.run_in_executor(None, producer.flush, self._timeout_s)
        failures = [error for _, error in results if error is not None]
        if left or failures or len(results) != len(records):
            raise StoreError(
                f"writing to {self.topic} failed: {failures[0] if failures else 'not acknowledged'}"
                "; nothing was changed unless a later read shows it"
            )
        last = max(offset for offset, _ in results)
        await self._wait_for(last + 1, f"reading back offset {last} of {self.topic}")

    async def stop(self) -> None:
        """Stop reading and close the clients."""
        self._stopping = True
        if self._reader is not None:
            try:
                await self._reader
            except Exception:  # noqa: BLE001 - stopping anyway; the failure was logged
                _log.exception("the %s reader had failed", self.topic)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_clients)
        self._executor.shutdown(wait=True)

    def _close_clients(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(self._timeout_s)
            self._producer = None
