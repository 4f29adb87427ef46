"""A running app: broker connection, database, producer, consumers, relay, HTTP endpoint.

Start order: the embedded broker (only when no bootstrap servers are configured),
the database and the framework's tables, the producer, serializers with start-up
work (the schema registry's register the app's schemas), the app's ``on_startup``
hooks, one consumer per group, the outbox relay, the HTTP endpoint. Stop order is the
reverse, and each consumer first finishes its in-flight records, commits and leaves
its group, so a graceful stop loses and repeats nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from rivulet.framework._config import Settings
from rivulet.framework._consumer import GroupConsumer, PartitionHook
from rivulet.framework._context import Transaction
from rivulet.framework._db import Database, open_database
from rivulet.framework._dispatch import build_routes
from rivulet.framework._embedded import embedded_broker
from rivulet.framework._errors import ConfigurationError
from rivulet.framework._events import Event
from rivulet.framework._http import HttpEndpoint
from rivulet.framework._kafka import Producer, admin_config, consumer_config, producer_config
from rivulet.framework._metrics import Metrics
from rivulet.framework._outbox import Outbox, OutboxRelay
from rivulet.framework._processor import Persistence, Processor
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._store import FrameworkStore
from rivulet.framework._topics import ensure_topics
from rivulet.framework._wire import OutgoingRecord, StartableSerializer

if TYPE_CHECKING:
    from rivulet.framework._app import App

__all__ = ["Runtime"]

_log = logging.getLogger("rivulet.app")
_MAINTENANCE_INTERVAL_S = 600.0


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Runtime:
    """The live parts of a started app. Get one from ``async with app.running():``."""

    def __init__(
        self,
        app: App,
        settings: Settings,
        *,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self._clock_ms = clock_ms
        self._rng = rng or random.Random()  # noqa: S311 - ids and jitter, not secrets
        self.metrics = Metrics(app.name)
        self.encoder = EventEncoder(
            source=app.source,
            serializers=app.serializers,
            clock_ms=clock_ms,
            random_bits=self._rng.getrandbits,
        )
        self._stack = AsyncExitStack()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.consumers: list[GroupConsumer] = []
        self._relay: OutboxRelay | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._http: HttpEndpoint | None = None
        self._database: Database | None = None
        self._store: FrameworkStore | None = None
        self._outbox: Outbox | None = None
        self._producer: Producer | None = None
        self.bootstrap_servers = ""
        self.ready = False

    # ----------------------------------------------------------------- parts

    @property
    def database(self) -> Database:
        """The app's database (open while running)."""
        if self._database is None:
            raise ConfigurationError("the app is not running")
        return self._database

    @property
    def producer(self) -> Producer:
        """The app's producer (while running)."""
        if self._producer is None:
            raise ConfigurationError("the app is not running")
        return self._producer

    @property
    def http_address(self) -> tuple[str, int] | None:
        """Where the metrics and health endpoint listens, if enabled."""
        return None if self._http is None else self._http.address

    @property
    def healthy(self) -> bool:
        """No part has failed."""
        return all(c.failure is None for c in self.consumers) and not any(
            t.done() and not t.cancelled() and t.exception() is not None for t in self._tasks
        )

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start every part; on failure, stop what had started and raise."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        settings, app, stack = self.settings, self.app, self._stack
        if settings.bootstrap_servers:
            self.bootstrap_servers = settings.bootstrap_servers
        else:
            self.bootstrap_servers = await stack.enter_async_context(
                embedded_broker(settings.data_dir / "broker")
            )
            _log.info("started the embedded broker on %s", self.bootstrap_servers)
        database = open_database(settings.database_url_for(app.name))
        await database.open()
        stack.push_async_callback(database.close)
        store = FrameworkStore(database.dialect)
        async with database.transaction() as tx:
            await store.create_tables(tx)
        self._database, self._store = database, store
        self._outbox = Outbox(store, self._clock_ms)
        producer = Producer(producer_config(self.bootstrap_servers, settings.kafka))
        producer.start()
        self._producer = producer
        stack.push_async_callback(self._close_producer)
        for serializer in app.serializers:
            if isinstance(serializer, StartableSerializer):
                stack.push_async_callback(serializer.stop)  # also when start fails halfway
                await serializer.start(app.topology(), default=serializer is self.encoder.default)
        stack.push_async_callback(self._run_shutdown_hooks)
        for hook in app.startup_hooks:
            await hook()
        if settings.create_topics:
            await ensure_topics(
                app.topology(), admin_config(self.bootstrap_servers, settings.kafka)
            )
        stack.push_async_callback(self._stop_tasks)
        self._start_consumers(Persistence(database, store, self._outbox))
        if settings.outbox_relay:
            self._start_relay()
        self._maintenance = asyncio.get_running_loop().create_task(
            self._maintain(), name="rivulet-maintenance"
        )
        if settings.http_listen:
            self._http = HttpEndpoint(self)
            await self._http.start(settings.http_listen)
            stack.push_async_callback(self._http.stop)
        self.ready = True
        _log.info(
            "app %s running: groups %s", app.name, [c.group for c in self.consumers] or "none"
        )

    def _start_consumers(self, persistence: Persistence) -> None:
        hooks: dict[str, Sequence[PartitionHook]] = self.app.partition_hooks
        for group, routes in build_routes(self.app.handlers).items():
            processor = Processor(
                routes,
                encoder=self.encoder,
                persistence=persistence,
                clock_ms=self._clock_ms,
                random01=self._rng.random,
                default_timeout_s=self.settings.handler_timeout_s,
                metrics=self.metrics,
            )
            consumer = GroupConsumer(
                routes=routes,
                processor=processor,
                producer=self.producer,
                consumer_config=consumer_config(self.bootstrap_servers, group, self.settings.kafka),
                settings=self.settings,
                metrics=self.metrics,
                clock_ms=self._clock_ms,
                hooks=hooks,
            )
            self.consumers.append(consumer)
            self._tasks.append(
                asyncio.get_running_loop().create_task(
                    consumer.run(self._stopping), name=f"rivulet-group-{group}"
                )
            )

    def _start_relay(self) -> None:
        assert self._outbox is not None
        assert self._store is not None
        relay = OutboxRelay(
            database=self.database,
            store=self._store,
            publish=self._publish_batch,
            clock_ms=self._clock_ms,
            owner=self._relay_owner(),
        )
        self._relay = relay
        wakeup = self._outbox.subscribe()
        wakeup.set()  # rows left by a previous run go out at once
        poll_s = self.settings.outbox_poll_interval_ms / 1000
        self._relay_task = asyncio.get_running_loop().create_task(
            relay.run(wakeup, poll_interval_s=poll_s), name="rivulet-outbox-relay"
        )

    def _relay_owner(self) -> str:
        # A static group member (group.instance.id) restarted after a crash takes its relay
        # lease back at once, instead of its outbox waiting for the dead process's lease
        # to expire (Kafka gives it its partitions back at once for the same reason).
        instance = self.settings.kafka.get("group.instance.id")
        if instance:
            return f"{self.app.name}:instance:{instance}"
        return f"{socket.gethostname()}:{os.getpid()}:{id(self)}"

    async def purge_old_records(self) -> tuple[int, int]:
        """Forget processed-event records and sent outbox rows past their retention.

        Runs every few minutes on its own; returns how many of each were deleted.
        """
        if self._store is None:
            return 0, 0
        cutoff = self._clock_ms() - self.settings.processed_retention_ms
        async with self.database.transaction() as tx:
            processed = await self._store.purge_processed(tx, cutoff)
            sent = await self._store.purge_sent(tx, cutoff)
        if processed or sent:
            _log.info("purged %d processed-event records and %d sent outbox rows", processed, sent)
        return processed, sent

    async def _maintain(self) -> None:
        while True:
            try:
                await self.purge_old_records()
            except Exception:  # noqa: BLE001 - retried at the next round
                _log.exception("purging old framework records failed")
            await asyncio.sleep(_MAINTENANCE_INTERVAL_S)

    async def _publish_batch(self, records: Sequence[OutgoingRecord]) -> None:
        await self.producer.send_and_wait(list(records))
        for record in records:
            self.metrics.published(record.topic)

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until every group has had its first partition assignment."""
        await asyncio.wait_for(
            asyncio.gather(*(consumer.assigned.wait() for consumer in self.consumers)), timeout_s
        )

    async def wait_failed(self) -> None:
        """Return (by raising) when a consumer fails; never returns while all are well."""
        if not self._tasks:
            await asyncio.Event().wait()
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
        await asyncio.Event().wait()

    async def stop(self) -> None:
        """Stop gracefully: finish in-flight work, commit, leave the groups, flush, close."""
        self.ready = False
        await self._stack.aclose()

    async def _stop_tasks(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        self._stopping.set()
        for consumer in self.consumers:
            consumer.wake_for_stop()  # a consumer waiting for records notices the stop now
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                _log.error("a consumer ended with an error: %r", result)
        if self._relay is not None:
            self._relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relay_task
            try:
                while await self._relay.relay_once():
                    pass
                await self._relay.release()
            except Exception:  # noqa: BLE001 - rows stay in the outbox for the next start
                _log.exception("final outbox relay round failed; rows stay unsent")

    async def _run_shutdown_hooks(self) -> None:
        for hook in self.app.shutdown_hooks:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - the remaining hooks and closes still run
                _log.exception("on_shutdown hook %r failed", hook)

    async def _close_producer(self) -> None:
        left = await self.producer.close(self.settings.shutdown_timeout_s)
        if left:
            _log.error("%d published records were not confirmed before shutdown", left)

    # ----------------------------------------------------------------- publishing

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A transaction on the app's database; events published in it use the outbox."""
        if self._outbox is None:
            raise ConfigurationError("the app is not running")
        outbox = self._outbox
        async with self.database.transaction() as sql:
            tx = Transaction(sql, encoder=self.encoder, outbox=outbox.write)
            yield tx
        if tx._wrote:
            outbox.committed()

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str | bytes | None = None,
        correlation_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> str:
        """Publish now (not transactional) and wait for the broker's confirmation."""
        built = self.encoder.build(
            event, topic=topic, key=key, correlation_id=correlation_id, headers=headers
        )
        await self.producer.send_and_wait([built.record])
        self.metrics.published(topic)
        return built.event_id

    async def outbox_backlog(self) -> int:
        """Outbox rows not yet published."""
        if self._store is None:
            return 0
        async with self.database.transaction() as tx:
            backlog = await self._store.outbox_backlog(tx)
        self.metrics.outbox_backlog.set(backlog)
        return backlog
