"""One consumer group at run time: poll, dispatch to partition workers, commit, rebalance.

Per assigned partition a :class:`PartitionRunner` keeps a
:class:`~rivulet.framework._flow.CommitLine` of its accepted records, ``concurrency``
worker tasks and, when that is above 1, a :class:`~rivulet.framework._flow.PartitionWindow`.
A record's offset becomes committable once its handler returned *and* every record
it published (or its forward to a retry or dead-letter topic) is confirmed by the
broker. Offsets are committed asynchronously in batches, and synchronously when
partitions are revoked and at shutdown.

Records of a retry topic are held until their ``retry_topic-backoff-timestamp``:
the partition is paused and rewound to the first record not yet due, and resumed
when it is. Backpressure pauses every partition of the group when ``max_in_flight``
records are unfinished, and resumes them at half of that.

Records are fetched on a dedicated consumer thread when none are waiting in
librdkafka, and taken directly on the loop thread when some are (which saves two
thread wake-ups per batch). Rebalance callbacks run inside whichever of those calls
meets them. On the consumer thread they hand the work to the event loop and wait for
it, so in-flight records of revoked partitions finish (or, after
``shutdown_timeout_s``, are abandoned uncommitted) and their offsets are committed
before the revocation completes. On the loop thread nothing can be awaited, so that
fetch is only made while no handler is under way, for groups without rebalance hooks,
and when the broker is not served on the same loop: a revocation then only has
publishes to wait for, which it flushes before committing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import confluent_kafka

from rivulet.framework._config import Settings
from rivulet.framework._context import Sink
from rivulet.framework._dispatch import GroupRoutes
from rivulet.framework._embedded import broker_on_loop
from rivulet.framework._errors import PublishError
from rivulet.framework._flow import (
    CommitLine,
    CommitPolicy,
    FlowControl,
    FlowDecision,
    PartitionWindow,
    Pauses,
)
from rivulet.framework._kafka import Producer
from rivulet.framework._metrics import Metrics
from rivulet.framework._processor import Forwarded, Outcome, Processor
from rivulet.framework._publishing import Built
from rivulet.framework._retry import backoff_remaining_ms
from rivulet.framework._wire import ConsumedRecord

__all__ = ["GroupConsumer", "PartitionHook"]

TopicPartition = tuple[str, int]
#: ``async def hook(group, [(topic, partition), ...])``, for rebalance events.
PartitionHook = Callable[[str, list[TopicPartition]], Awaitable[None]]

_log = logging.getLogger("rivulet.consumer")
_TIMESTAMP_TYPES = {1: "CreateTime", 2: "LogAppendTime"}
_LAG_INTERVAL_S = 5.0
# Records taken per fetch, and the most the runners hold unstarted before the next one.
# librdkafka prefetches far more, in C memory; converting only what the handlers are
# about to reach keeps few Python objects alive, which keeps garbage collection cheap.
_BATCH = 500
# A runner down to this many waiting records asks for the next batch, so that fetching
# it overlaps the handling of the rest.
_REFILL_AT = _BATCH // 2
_GIVE_UP_AFTER = 3
# An idle fetch waits this long in all, in polls of _POLL_SLICE_S.
_IDLE_FETCH_S = 0.1
_POLL_SLICE_S = 0.01
_IDLE_FETCH_SLICES = round(_IDLE_FETCH_S / _POLL_SLICE_S)
# How long a revocation met on the loop thread may block it confirming publishes; the
# loop also serves the health endpoint, whose liveness probe must keep getting answers.
# Records still unconfirmed then stay uncommitted, and are handled again by the new owner.
_LOOP_FLUSH_LIMIT_S = 5.0
PUBLISH_FAILED = PublishError("the broker refused this record's publishes three times")


def to_record(message: Any) -> ConsumedRecord:
    """A confluent-kafka message as the framework's record."""
    kind, timestamp = message.timestamp()
    # Positional: keyword arguments cost a third of the call, once per consumed record.
    return ConsumedRecord(
        message.topic(),  # topic
        message.partition(),  # partition
        message.offset(),  # offset
        timestamp,  # timestamp_ms
        message.key(),  # key
        message.value(),  # value
        message.headers() or (),  # headers
        _TIMESTAMP_TYPES.get(kind, "CreateTime"),  # timestamp_type
    )


class _Delivery:
    """One accepted record: its publishes awaiting confirmation, and whether it returned.

    A record is *done* once its handler returned (``released``) and every record it
    published is confirmed (``pending == 0``). Done records leave their partition's
    :class:`~rivulet.framework._flow.CommitLine` from the front only, so the commit never
    passes an unfinished one; the owner counts them when it next settles (per batch, not
    per record).
    """

    __slots__ = ("done", "offset", "pending", "record", "released", "runner")

    def __init__(self, runner: PartitionRunner, record: ConsumedRecord) -> None:
        self.runner = runner
        # Until a worker takes it: a handled record is not kept while its publishes are
        # confirmed (a failed publish rewinds the partition and fetches it again).
        self.record: ConsumedRecord | None = record
        self.offset = record.offset
        self.pending = 0
        self.released = False
        self.done = False

    def sink(self, built: Built) -> Awaitable[None] | None:
        """The handler's publishes (direct publishing): enqueue, wait only for queue room."""
        self.pending += 1
        owner = self.runner.owner
        owner.metrics.published(built.record.topic)
        if owner.producer.produce(built.record, self.delivered):
            return None
        return owner.producer.send(built.record, self.delivered)

    def delivered(self, error: Any, _message: Any) -> None:
        """librdkafka's delivery report for one of this record's publishes."""
        self.pending -= 1
        runner = self.runner
        if runner.closed:
            return
        if error is not None:
            runner.owner.delivery_failed(runner, self.offset, PublishError(error.str()))
        elif self.released and self.pending == 0:
            runner.finish(self)


class PartitionRunner:
    """The in-flight records of one partition and the workers that handle them.

    With ``concurrency=1`` (the default) one worker takes the records in offset order.
    With more, a :class:`~rivulet.framework._flow.PartitionWindow` decides which records
    may start (per-key order, at most ``concurrency`` running) and ``concurrency``
    workers share them. Either way the commit line decides how far the commit may go.
    """

    def __init__(self, owner: GroupConsumer, topic: str, partition: int, concurrency: int) -> None:
        self.owner = owner
        self.topic = topic
        self.partition = partition
        self.concurrency = concurrency
        self.window = PartitionWindow(concurrency) if concurrency > 1 else None
        # Accepted records not yet committable, in offset order (the commit stops at the
        # first one not done).
        self.line: CommitLine[_Delivery] = CommitLine()
        # Accepted records not yet started (concurrency 1) or allowed to start (window).
        # A deque and an event rather than an asyncio.Queue: this is on every record's path.
        self.ready: deque[_Delivery] = deque()
        self._by_offset: dict[int, _Delivery] = {}  # window mode: offset -> delivery
        self._wake = asyncio.Event()
        self.running = 0  # started and not done
        self.waiting = 0  # accepted and not yet taken by a worker
        self.next_offset: int | None = None
        self.committed: int | None = None
        self.draining = False
        self.closed = False
        self.rewinding = False
        self.quiet = asyncio.Event()
        self.workers = [
            asyncio.get_running_loop().create_task(
                self._work(), name=f"rivulet:{topic}[{partition}]"
            )
            for _ in range(concurrency)
        ]

    def accept(self, record: ConsumedRecord) -> bool:
        """Take a fetched record; ``False`` for a duplicate (offset already seen)."""
        offset = record.offset
        if self.next_offset is not None and offset < self.next_offset:
            return False
        self.next_offset = offset + 1
        self.waiting += 1
        delivery = _Delivery(self, record)
        self.line.add(delivery)
        if self.window is None:
            self.ready.append(delivery)
        else:
            self.window.add(offset, record.key)
            self._by_offset[offset] = delivery
        return True

    def kick(self) -> None:
        """Wake the workers for records that may start now."""
        if self.window is not None:
            by_offset = self._by_offset
            self.ready.extend(by_offset[offset] for offset in self.window.start_ready())
        if self.ready:
            self._wake.set()

    async def _work(self) -> None:
        owner = self.owner
        producer = owner.producer
        processor = owner.processor
        ready = self.ready
        window = self.window
        while True:
            while not ready:
                if owner.waiting_for_room:
                    owner.room.set()  # the consumer loop waits for the runners to need more
                self._wake.clear()
                await self._wake.wait()
            delivery = ready.popleft()
            self.waiting -= 1
            if owner.waiting_for_room and self.waiting == _REFILL_AT:
                owner.room.set()
            if self.draining:
                continue  # left for the partition's next owner (the commit stops before it)
            self.running += 1
            record = delivery.record
            delivery.record = None
            assert record is not None  # each delivery is taken once
            outcome: Outcome
            owner.handling += 1
            try:
                try:
                    if owner._publish_failures and owner.gave_up_on(record):
                        outcome = await processor.give_up(record, PUBLISH_FAILED)
                    else:
                        outcome = await processor.process(record, delivery.sink)
                except Exception:  # noqa: BLE001 - e.g. the database is down: retried, never dropped
                    outcome = await owner.process_until_done(record, delivery.sink)
                if isinstance(outcome, Forwarded):
                    delivery.pending += 1
                    await producer.send(outcome.record, delivery.delivered)
                    owner.metrics.published(outcome.record.topic)
            finally:
                owner.handling -= 1
            # Freed now, while in cache, rather than when its publishes are confirmed:
            # at tens of thousands of records a second that is a few hundred records'
            # values and headers less in memory (a quarter fewer cache misses per record
            # under cachegrind with a 1 MB last-level cache).
            del record, outcome
            if window is not None:
                window.release(delivery.offset)
                self.kick()
            delivery.released = True
            if delivery.pending == 0:
                self.finish(delivery)

    def finish(self, delivery: _Delivery) -> None:
        """``delivery`` returned and its publishes are confirmed."""
        if self.closed:
            return
        delivery.done = True
        self.running -= 1
        owner = self.owner
        if owner._publish_failures:
            owner.forget_failures(self, delivery.offset)
        if self.window is not None:
            del self._by_offset[delivery.offset]
        if owner.waiting_for_room:
            owner.room.set()
        if self.draining and not self.running:
            self.quiet.set()

    def settle(self) -> None:
        """Drop done records from the front; the owner counts them toward its next commit."""
        self.owner.uncommitted += self.line.settle()

    @property
    def in_flight(self) -> int:
        """Records accepted and not yet done (after :meth:`settle`, an upper bound before)."""
        return len(self.line)

    def commit_position(self) -> int | None:
        """The offset to commit: the first unfinished record, else one past the last."""
        self.settle()
        return self.line.position(after=self.next_offset)

    async def drain(self, timeout_s: float) -> int | None:
        """Stop starting records, let started ones finish; the offset to commit."""
        self.draining = True
        if self.running:
            try:
                await asyncio.wait_for(self.quiet.wait(), timeout_s)
            except TimeoutError:
                _log.warning(
                    "%s[%d]: %d records did not finish within %.1f s; they will be redelivered",
                    self.topic, self.partition, self.running, timeout_s,
                )  # fmt: skip
        position = self.commit_position()
        await self.close()
        return position

    def close_now(self) -> None:
        """Cancel the workers without waiting for them; results arriving later are ignored."""
        self.closed = True
        for worker in self.workers:
            worker.cancel()

    async def close(self) -> None:
        """Cancel the workers and wait for them to end."""
        self.close_now()
        for worker in self.workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


class GroupConsumer:
    """Consumes a group's topics with one confluent-kafka consumer."""

    def __init__(
        self,
        *,
        routes: GroupRoutes,
        processor: Processor,
        producer: Producer,
        consumer_config: dict[str, Any],
        settings: Settings,
        metrics: Metrics,
        clock_ms: Callable[[], int],
        hooks: dict[str, Sequence[PartitionHook]] | None = None,
    ) -> None:
        self.routes = routes
        self.group = routes.group
        self.processor = processor
        self.producer = producer
        self.metrics = metrics
        self._settings = settings
        self._clock_ms = clock_ms
        self._hooks = hooks or {}
        self._consumer = confluent_kafka.Consumer(consumer_config)
        self._thread = concurrent.futures.ThreadPoolExecutor(1, f"rivulet-consumer-{self.group}")
        self._runners: dict[TopicPartition, PartitionRunner] = {}
        self._retry_topics = {t for r in routes.routes.values() for t in r.retry_topics}
        self._concurrency = {topic: route.concurrency for topic, route in routes.routes.items()}
        self._flow = FlowControl(high=settings.max_in_flight)
        # Set by a finishing record while the loop waits for room under the bound.
        self.room = asyncio.Event()
        self.waiting_for_room = False
        self._pauses: Pauses = Pauses()
        self._commit_policy = CommitPolicy(interval_ms=settings.commit_interval_ms)
        self._last_commit_ms = clock_ms()
        self.uncommitted = 0  # records done since the last commit (runners add to it)
        self._last_lag = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.assigned = asyncio.Event()
        self.failure: BaseException | None = None
        self._halting = False
        # Records whose handler (or forward) is under way, across the group's partitions.
        self.handling = 0
        # Whether to fetch on the loop thread too (see _take_fetched); settled in run().
        self._fetch_on_loop = False
        self._loop_thread: int | None = None
        # (topic, partition, offset) -> rounds whose publishes the broker refused
        self._publish_failures: dict[tuple[str, int, int], int] = {}

    @property
    def in_flight(self) -> int:
        """Records fetched and not yet complete."""
        self._settle()
        return sum(runner.in_flight for runner in self._runners.values())

    def _settle(self) -> None:
        # Done records leave their partitions' queues here, once per loop turn.
        for runner in self._runners.values():
            runner.settle()

    @property
    def paused(self) -> set[TopicPartition]:
        """Partitions paused by backpressure or a retry backoff."""
        return {key for key in self._runners if self._pauses.is_paused(key)}

    # ----------------------------------------------------------------- processing

    async def process_until_done(self, record: ConsumedRecord, sink: Sink) -> Any:
        """Retry a record whose processing failed outside its handler, with backoff.

        Called from the ``except`` block of the failed attempt, so the first log line
        carries that attempt's traceback.
        """
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        delay = 0.1
        _log.exception("%s could not be processed; retrying in %.1f s", where, delay)
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
            try:
                return await self.processor.process(record, sink)
            except Exception:  # noqa: BLE001 - e.g. the database is down: keep trying
                _log.exception("%s could not be processed; retrying in %.1f s", where, delay)

    def delivery_failed(self, runner: PartitionRunner, offset: int, error: PublishError) -> None:
        """A publish was not confirmed: rewind the partition to redeliver what is unfinished.

        The record is handled again (its publishes keep their ids). After
        ``_GIVE_UP_AFTER`` failed rounds it is dead-lettered instead (reason
        ``publish-failed``), so a publish the broker will never accept cannot stall the
        partition; the rounds back off exponentially.
        """
        if runner.rewinding:
            return
        runner.rewinding = True
        key = (runner.topic, runner.partition, offset)
        failures = self._publish_failures[key] = self._publish_failures.get(key, 0) + 1
        _log.error(
            "%s[%d]@%d: publish failed (%s); rewinding (failure %d)",
            runner.topic, runner.partition, offset, error, failures,
        )  # fmt: skip
        position = runner.commit_position()
        delay = min(0.05 * 2**failures, 10.0)
        asyncio.get_running_loop().create_task(self._rewind(runner, position, delay))

    def gave_up_on(self, record: ConsumedRecord) -> bool:
        """Whether publishing for ``record`` failed too often to handle it again."""
        failures = self._publish_failures
        if not failures:
            return False
        return failures.get((record.topic, record.partition, record.offset), 0) >= _GIVE_UP_AFTER

    def forget_failures(self, runner: PartitionRunner, offset: int) -> None:
        if self._publish_failures:
            self._publish_failures.pop((runner.topic, runner.partition, offset), None)

    async def _rewind(self, runner: PartitionRunner, position: int | None, delay: float) -> None:
        await runner.close()
        await asyncio.sleep(delay)
        key = (runner.topic, runner.partition)
        if self._runners.get(key) is not runner or position is None:
            return
        fresh = PartitionRunner(self, runner.topic, runner.partition, runner.concurrency)
        fresh.next_offset = position
        fresh.committed = runner.committed
        self._runners[key] = fresh
        self._seek(key, position)

    # ----------------------------------------------------------------- intake

    def _intake(self, messages: list[Any]) -> None:
        now_ms = self._clock_ms()
        backing_off: set[TopicPartition] = set()
        counts: dict[str, int] = {}
        touched: set[PartitionRunner] = set()
        runners = self._runners
        retry_topics = self._retry_topics
        pauses = self._pauses
        any_paused = pauses.any()
        # Runs for every record: the runner is looked up once per run of records from
        # the same partition.
        last: TopicPartition | None = None
        runner: PartitionRunner | None = None
        for message in messages:
            error = message.error()
            if error is not None:
                self._consume_error(error)
                continue
            topic = message.topic()
            partition = message.partition()
            if last is None or last[0] != topic or last[1] != partition:
                last = (topic, partition)
                runner = runners.get(last)
                if runner is not None and runner.draining:
                    runner = None
            if runner is None or last in backing_off:
                continue
            if any_paused and pauses.has(last, "backoff"):
                # Fetched before the rewind: fetch again from the held record once due.
                self._seek(last, runner.next_offset)
                continue
            record = to_record(message)
            if topic in retry_topics:
                wait_ms = backoff_remaining_ms(record, now_ms)
                if wait_ms > 0:
                    backing_off.add(last)
                    self._back_off(runner, record.offset, wait_ms)
                    continue
            if runner.accept(record):
                counts[topic] = counts.get(topic, 0) + 1
                touched.add(runner)
        for touched_runner in touched:
            touched_runner.kick()
        if counts:
            for topic, count in counts.items():
                self.metrics.consumed(self.group, topic, count)
            self._check_flow()

    def _consume_error(self, error: Any) -> None:
        if error.fatal():
            raise confluent_kafka.KafkaException(error)
        if error.code() == confluent_kafka.KafkaError._PARTITION_EOF:
            return
        _log.warning("group %s: consumer reports %s", self.group, error.str())

    def _back_off(self, runner: PartitionRunner, offset: int, wait_ms: int) -> None:
        key = (runner.topic, runner.partition)
        runner.next_offset = offset
        self._pause(key, "backoff")
        self._seek(key, offset)
        loop = asyncio.get_running_loop()
        loop.call_later(wait_ms / 1000, self._resume, key, "backoff")

    def _seek(self, key: TopicPartition, offset: int | None) -> None:
        if offset is None:
            return
        with contextlib.suppress(confluent_kafka.KafkaException):
            self._consumer.seek(confluent_kafka.TopicPartition(key[0], key[1], offset))

    def _pause(self, key: TopicPartition, reason: str) -> None:
        if self._pauses.add(key, reason) and key in self._runners:
            self._consumer.pause([confluent_kafka.TopicPartition(*key)])

    def _resume(self, key: TopicPartition, reason: str) -> None:
        if self._pauses.remove(key, reason) and key in self._runners:
            self._consumer.resume([confluent_kafka.TopicPartition(*key)])

    def _check_flow(self, in_flight: int | None = None) -> None:
        if in_flight is None:
            in_flight = self.in_flight
        decision = self._flow.update(in_flight, now_ms=self._clock_ms())
        if decision is not None:
            self._apply_flow(decision)

    def _apply_flow(self, decision: FlowDecision) -> None:
        for key in list(self._runners):
            if decision is FlowDecision.PAUSE:
                self._pause(key, "flow")
            else:
                self._resume(key, "flow")
        self.metrics.in_flight(self.group, self.in_flight)

    # ----------------------------------------------------------------- commits and lag

    def _positions(self, keys: Sequence[TopicPartition]) -> list[confluent_kafka.TopicPartition]:
        offsets = []
        for key in keys:
            runner = self._runners.get(key)
            if runner is None:
                continue
            position = runner.commit_position()
            if position is not None and position != runner.committed:
                offsets.append(confluent_kafka.TopicPartition(key[0], key[1], position))
                runner.committed = position
        return offsets

    def _maybe_commit(self, *, force: bool = False) -> None:
        now_ms = self._clock_ms()
        if not force and not self._commit_policy.due(
            now_ms=now_ms, last_ms=self._last_commit_ms, pending=self.uncommitted
        ):
            return
        offsets = self._positions(list(self._runners))
        self._last_commit_ms = now_ms
        self.uncommitted = 0
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except confluent_kafka.KafkaException as exc:
                # A later commit covers these offsets; redelivery is the worst outcome.
                _log.warning("group %s: commit failed: %s", self.group, exc)

    def _maybe_report_lag(self) -> None:
        loop_time = asyncio.get_running_loop().time()
        if loop_time - self._last_lag < _LAG_INTERVAL_S:
            return
        self._last_lag = loop_time
        for (topic, partition), runner in self._runners.items():
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, partition), cached=True
                )
            except confluent_kafka.KafkaException:
                continue
            position = runner.commit_position()
            if high >= 0 and position is not None:
                self.metrics.lag(self.group, topic, partition, max(0, high - position))
        self.metrics.in_flight(self.group, self.in_flight)

    # ----------------------------------------------------------------- rebalancing

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        if self._on_loop_thread():
            self._assign_now(keys)  # a group fetching on the loop thread has no hooks
        else:
            self._from_consumer_thread(self._assigned(keys))
        # Assigned here rather than by the client after the callback, so that partitions
        # of a group paused by backpressure are paused before they fetch anything.
        consumer.assign(partitions)
        if self._flow.paused and partitions:
            consumer.pause(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        if self._on_loop_thread():
            offsets = self._revoke_now(keys)
        else:
            offsets = self._from_consumer_thread(self._revoked(keys))
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except confluent_kafka.KafkaException as exc:
                _log.warning("group %s: commit on revoke failed: %s", self.group, exc)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        keys = [(p.topic, p.partition) for p in partitions]
        if self._on_loop_thread():
            self._lose_now(keys)
        else:
            self._from_consumer_thread(self._lost(keys))

    def _on_loop_thread(self) -> bool:
        # Rebalance callbacks run inside whichever consume call meets them: usually the
        # consumer thread's, sometimes the loop thread's (see _take_fetched).
        return threading.get_ident() == self._loop_thread

    def _from_consumer_thread(self, work: Awaitable[Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(_as_coroutine(work), self._loop).result()

    async def _assigned(self, keys: list[TopicPartition]) -> None:
        self._assign_now(keys)
        await self._run_hooks("assigned", keys)

    def _assign_now(self, keys: list[TopicPartition]) -> None:
        self.processor.forget_parking()
        for topic, partition in keys:
            main = self.routes.route_for_topic(topic)
            concurrency = 1 if main is None else main.concurrency
            self._runners[(topic, partition)] = PartitionRunner(self, topic, partition, concurrency)
            if self._flow.paused:
                self._pauses.add((topic, partition), "flow")
        self.assigned.set()
        _log.info("group %s: assigned %s", self.group, _describe(keys))

    async def _revoked(self, keys: list[TopicPartition]) -> list[confluent_kafka.TopicPartition]:
        runners = [(key, self._runners[key]) for key in keys if key in self._runners]
        timeout = self._settings.shutdown_timeout_s
        positions = await asyncio.gather(*(runner.drain(timeout) for _, runner in runners))
        offsets = self._forget_revoked(keys, runners, positions)
        await self._run_hooks("revoked", keys)
        return offsets

    def _revoke_now(self, keys: list[TopicPartition]) -> list[confluent_kafka.TopicPartition]:
        """:meth:`_revoked` from inside a fetch on the loop thread, which cannot await.

        That fetch happens only while no handler is under way, so every started record
        has returned and waits at most for its publishes: they are flushed here (for at
        most ``_LOOP_FLUSH_LIMIT_S``), which finishes the records a drain would have
        waited for.
        """
        runners = [(key, self._runners[key]) for key in keys if key in self._runners]
        for _, runner in runners:
            runner.draining = True
        if any(runner.running for _, runner in runners):
            limit = min(self._settings.shutdown_timeout_s, _LOOP_FLUSH_LIMIT_S)
            left = self.producer.flush_now(limit)
            if left:
                _log.warning(
                    "group %s: %d publishes unconfirmed at revoke; their records will be "
                    "redelivered", self.group, left,
                )  # fmt: skip
        positions = []
        for _, runner in runners:
            positions.append(runner.commit_position())
            runner.close_now()
        return self._forget_revoked(keys, runners, positions)

    def _forget_revoked(
        self,
        keys: list[TopicPartition],
        runners: list[tuple[TopicPartition, PartitionRunner]],
        positions: Sequence[int | None],
    ) -> list[confluent_kafka.TopicPartition]:
        offsets = []
        for (key, runner), position in zip(runners, positions, strict=True):
            if position is not None and position != runner.committed:
                offsets.append(confluent_kafka.TopicPartition(key[0], key[1], position))
            self._forget(key, runner)
        _log.info("group %s: revoked %s", self.group, _describe(keys))
        return offsets

    async def _lost(self, keys: list[TopicPartition]) -> None:
        for runner in self._lose_now(keys):
            await runner.close()  # its workers were cancelled: wait for them to end
        await self._run_hooks("lost", keys)

    def _lose_now(self, keys: list[TopicPartition]) -> list[PartitionRunner]:
        """Cancel and forget the runners of lost partitions (nothing is committed)."""
        lost = []
        for key in keys:
            runner = self._runners.get(key)
            if runner is not None:
                runner.close_now()
                self._forget(key, runner)
                lost.append(runner)
        _log.warning(
            "group %s: lost %s (another member may own them now)", self.group, _describe(keys)
        )
        return lost

    def _forget(self, key: TopicPartition, runner: PartitionRunner) -> None:
        del self._runners[key]
        self._pauses.forget(key)
        self.metrics.forget_lag(self.group, key[0], key[1])

    async def _run_hooks(self, event: str, keys: list[TopicPartition]) -> None:
        for hook in self._hooks.get(event, ()):
            try:
                await hook(self.group, keys)
            except Exception:  # noqa: BLE001 - a hook must not break the rebalance
                _log.exception("partitions-%s hook %r failed", event, hook)

    # ----------------------------------------------------------------- lifecycle

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set, then finish in-flight work, commit and leave."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        loop = self._loop
        # A rebalance met by a fetch on the loop thread cannot await anything, and blocks
        # the loop while it confirms publishes and commits: not for groups with rebalance
        # hooks, nor when the broker itself is served on this loop (it could not answer).
        self._fetch_on_loop = not any(self._hooks.values()) and not broker_on_loop(loop)
        self._consumer.subscribe(
            list(self.routes.topics),
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not stopping.is_set():
                in_flight = self.in_flight
                if self._flow.paused:
                    self._check_flow(in_flight)
                room = min(_BATCH, self._flow.room(in_flight))
                waiting = sum(runner.waiting for runner in self._runners.values())
                if waiting >= _BATCH * max(1, len(self._runners)):
                    room = 0  # enough unstarted records; librdkafka holds the rest
                if room == 0 and not self._flow.paused:
                    # Full: take nothing more until records complete or start (or the
                    # hold expires).
                    self.room.clear()
                    self.waiting_for_room = True
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.room.wait(), 0.1)
                    self.waiting_for_room = False
                    self.producer.poll()
                    self._check_flow()
                    self._maybe_commit()
                    continue
                # Paused partitions return nothing; the call still serves rebalances.
                messages = self._take_fetched(room)
                if not messages:
                    messages = await loop.run_in_executor(self._thread, self._fetch, max(room, 1))
                self._intake(messages)
                self.producer.poll()
                self._maybe_commit()
                self._maybe_report_lag()
        except BaseException as exc:
            self.failure = exc
            raise
        finally:
            await self._shutdown()

    def wake_for_stop(self) -> None:
        """Make a waiting :meth:`run` notice that it is stopping (call after setting it)."""
        self._halting = True  # read by the consumer thread before each poll slice
        self.room.set()

    def _take_fetched(self, room: int) -> list[Any]:
        # Messages librdkafka already holds, taken on the loop thread without waiting. A
        # round trip through the consumer thread costs two thread wake-ups and leaves the
        # loop idle meanwhile (about 1 ms per batch here, a tenth of the handlers' time at
        # full speed). Any rebalance this call meets runs on the loop thread and cannot
        # await, so it is only made while no handler is under way (then a revoke has
        # nothing to wait for but publishes, see _revoke_now) and the app has no rebalance
        # hooks; otherwise the consumer thread fetches, as it does when nothing is there.
        if not self._fetch_on_loop or self.handling or self._halting or room < 1:
            return []
        messages: list[Any] = self._consumer.consume(room, 0)
        return messages

    def _fetch(self, room: int) -> list[Any]:
        # consume(n, timeout) waits for n messages or the whole timeout, which stalls the
        # handlers whenever less than a full batch is queued: wait for the first message,
        # then take whatever else is already there. The wait is cut into short polls so
        # that a stop is noticed within one of them (a graceful stop used to wait out a
        # whole idle poll); returning to the loop only once per _IDLE_FETCH_S keeps an
        # idle consumer cheap.
        consumer = self._consumer
        first = None
        for _ in range(_IDLE_FETCH_SLICES):
            if self._halting:
                break
            first = consumer.poll(_POLL_SLICE_S)
            if first is not None:
                break
        if first is None:
            return []
        if room == 1:
            return [first]
        return [first, *consumer.consume(room - 1, 0)]

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        keys = list(self._runners)
        offsets = await self._revoked(keys) if keys else []
        await self.producer.flush(self._settings.shutdown_timeout_s)

        def leave() -> None:
            if offsets:
                try:
                    self._consumer.commit(offsets=offsets, asynchronous=False)
                except confluent_kafka.KafkaException as exc:
                    _log.warning("group %s: final commit failed: %s", self.group, exc)
            self._consumer.close()

        await loop.run_in_executor(self._thread, leave)
        self._thread.shutdown(wait=True)
        self.processor.close()


async def _as_coroutine(work: Awaitable[Any]) -> Any:
    return await work


def _describe(keys: list[TopicPartition]) -> str:
    return ", ".join(f"{topic}[{partition}]" for topic, partition in sorted(keys)) or "nothing"
