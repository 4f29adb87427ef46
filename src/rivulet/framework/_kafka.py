"""confluent-kafka (librdkafka) driven from an asyncio event loop.

**Producer.** ``produce()`` only enqueues into librdkafka; delivery reports arrive
through ``poll()``. Polling happens on the event loop (``poll(0)`` never blocks): the
consumer loop polls after each batch, and a small task polls while deliveries are
outstanding (every millisecond while someone awaits confirmations, else every 5 ms),
so delivery callbacks run on the loop thread and need no locking. One idempotent
producer per app keeps the order of everything it sends to a partition, retries
included.

**Consumer.** ``consume()`` blocks, so it runs on one dedicated thread; rebalance
callbacks therefore run on that thread too and hand their work to the loop (see
``_consumer``). Non-blocking calls (pause, resume, seek, asynchronous commit) are made
from the loop thread, which librdkafka allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any, cast

import confluent_kafka

from rivulet.framework._errors import PublishError
from rivulet.framework._wire import OutgoingRecord

__all__ = [
    "DeliveryReport",
    "Producer",
    "admin_config",
    "consumer_config",
    "producer_config",
]

_IDLE_POLL_S = 0.005

#: librdkafka's delivery report: ``(error or None, message)``.
DeliveryReport = Callable[[Any, Any], None]


# One ``kafka`` settings table serves every client; librdkafka warns about properties
# that do not apply to a client, so the common one-sided ones are routed.
_CONSUMER_ONLY = frozenset(
    {
        "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms",
        "auto.offset.reset", "group.instance.id", "group.protocol", "group.remote.assignor",
        "partition.assignment.strategy", "enable.auto.commit", "auto.commit.interval.ms",
        "isolation.level", "fetch.wait.max.ms", "fetch.min.bytes", "fetch.max.bytes",
        "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.queue.backoff.ms",
        "queued.min.messages", "queued.max.messages.kbytes", "check.crcs",
    }
)  # fmt: skip
_PRODUCER_ONLY = frozenset(
    {
        "acks", "request.required.acks", "linger.ms", "queue.buffering.max.ms", "batch.size",
        "batch.num.messages", "compression.type", "compression.codec", "enable.idempotence",
        "transactional.id", "transaction.timeout.ms", "delivery.timeout.ms",
        "message.timeout.ms", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
        "partitioner", "retries", "message.send.max.retries", "retry.backoff.ms",
    }
)  # fmt: skip


def producer_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Settings of the app's producer."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "linger.ms": 5,
        # Java clients' partitioner: the same key lands in the same partition from any client.
        "partitioner": "murmur2_random",
    }
    config.update((k, v) for k, v in extra.items() if k not in _CONSUMER_ONLY)
    return config


def admin_config(bootstrap_servers: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Settings of an admin client (connection and security properties only)."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap_servers}
    config.update((k, v) for k, v in extra.items() if k not in _CONSUMER_ONLY | _PRODUCER_ONLY)
    return config


def consumer_config(bootstrap_servers: str, group: str, extra: Mapping[str, str]) -> dict[str, Any]:
    """Settings of a group's consumer."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # librdkafka's default of 1 s leaves a fast consumer idle whenever its queue fills.
        "fetch.queue.backoff.ms": 10,
        # Bounds what librdkafka prefetches; backpressure bounds what we hold.
        "queued.max.messages.kbytes": 16 * 1024,
        # Retry topics are created on first use (production creates them from the topology).
        "allow.auto.create.topics": True,
    }
    config.update((k, v) for k, v in extra.items() if k not in _PRODUCER_ONLY)
    return config


class Producer:
    """The app's idempotent producer, polled from the event loop."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = confluent_kafka.Producer(dict(config))
        self._work = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._awaiting = 0  # send_and_wait calls waiting for their confirmations
        self._idle = False  # the poller waits for work (produce() must wake it)

    def start(self) -> None:
        """Start the background poller (on the running loop)."""
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(
                self._poll_forever(), name="rivulet-producer-poll"
            )

    @property
    def outstanding(self) -> int:
        """Records produced and not yet confirmed or failed."""
        return len(self._producer)

    def produce(self, record: OutgoingRecord, on_delivery: DeliveryReport) -> bool:
        """Enqueue ``record``; ``False`` when librdkafka's queue is full (poll, then retry).

        ``on_delivery(error, message)`` is librdkafka's report, called from :meth:`poll`:
        ``error`` is ``None`` once the broker confirmed the record.
        """
        try:
            # Positional: confluent-kafka parses keyword arguments at about twice the
            # cost of the rest of the call (2.5 us of 5.7 us, with nine headers). Its
            # C signature is (topic, value, key, partition, callback, on_delivery,
            # timestamp, headers); -1 is "use the partitioner" and 0 "now".
            # tests/framework/test_kafka.py holds this order to account.
            self._producer.produce(
                record.topic,
                record.value,
                record.key,
                -1,  # partition
                on_delivery,  # callback
                None,  # on_delivery (an alias of callback)
                0,  # timestamp
                cast(Any, record.headers),  # list invariance: ours are (str, bytes)
            )
        except BufferError:
            return False
        if self._idle:
            self._idle = False
            self._work.set()
        return True

    async def send(self, record: OutgoingRecord, on_delivery: DeliveryReport) -> None:
        """Enqueue ``record``, waiting for room in the queue if it is full."""
        while not self.produce(record, on_delivery):
            self.poll()
            await asyncio.sleep(0.005)

    async def send_and_wait(self, records: list[OutgoingRecord]) -> None:
        """Publish ``records`` in order; return once the broker confirmed all of them."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        remaining = len(records)
        errors: list[str] = []

        def on_delivery(error: Any, _message: Any) -> None:
            nonlocal remaining
            remaining -= 1
            if error is not None:
                errors.append(error.str())
            if remaining == 0 and not done.done():
                if errors:
                    done.set_exception(PublishError(f"{len(errors)} not confirmed: {errors[0]}"))
                else:
                    done.set_result(None)

        self._awaiting += 1
        try:
            for record in records:
                await self.send(record, on_delivery)
            await done
        finally:
            self._awaiting -= 1

    def poll(self) -> int:
        """Serve delivery reports now (never blocks); returns how many were served."""
        served: int = self._producer.poll(0)
        return served

    async def _poll_forever(self) -> None:
        while True:
            if not len(self._producer):
                self._work.clear()
                self._idle = True
                await self._work.wait()
            self.poll()
            # Someone awaits confirmations: report them promptly. Otherwise they only
            # move commit positions (and the consumer loop polls after every batch), so
            # waking the loop a thousand times a second is not worth its CPU.
            await asyncio.sleep(0.001 if self._awaiting else _IDLE_POLL_S)

    def flush_now(self, timeout_s: float) -> int:
        """Block until every record is confirmed or ``timeout_s`` passed; how many are left.

        Delivery reports run in this call, so make it on the loop thread only, and only
        where the loop cannot be given back (a rebalance callback there).
        """
        left: int = self._producer.flush(timeout_s)
        return left

    async def flush(self, timeout_s: float) -> int:
        """Wait (polling) until every record is confirmed; returns how many are left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(self._producer) and loop.time() < deadline:
            self.poll()
            await asyncio.sleep(0.002)
        return len(self._producer)

    async def close(self, timeout_s: float) -> int:
        """Flush, stop the poller and the client; returns how many were never confirmed."""
        left = await self.flush(timeout_s)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        # Without this the client's threads keep reconnecting until it is collected.
        await asyncio.to_thread(self._producer.close)
        return left
