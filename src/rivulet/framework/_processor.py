"""The life of one consumed record: route, decode, handle, retry, forward.

:meth:`Processor.process` turns a record into an :class:`Outcome` the runtime acts on:

* :class:`Handled`: the handler succeeded (or the event was a duplicate for an
  idempotent handler); the record completes once its direct publishes are confirmed;
* :class:`Skipped`: the record is not for this group (another group's retry, or an
  event type the group chose to skip); it completes at once;
* :class:`Forwarded`: the record must be republished to a retry or dead-letter topic
  with the given headers; it completes when that publish is confirmed.

In-place retries happen inside :meth:`~Processor.process` (the sleep is injected), so
the record stays in flight, and its key blocked, until they are over.

**Key parking** (``park_failed_keys=True``): when a record is dead-lettered its key is
parked; later records with that key are dead-lettered behind it (reason ``parked``)
instead of overtaking it. ``rivulet dlq replay`` republishes a key's dead letters in
order with the header ``rivulet_replay`` (a batch id) and marks the key's last one
with ``rivulet_replay-last``; replayed records are handled, and the key is released
after its last one succeeds. If a replayed record fails again, the rest of its batch is
dead-lettered behind it and the key stays parked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final

from rivulet.framework._context import Context, Sink, Transaction
from rivulet.framework._db import Database
from rivulet.framework._dispatch import Decoded, GroupRoutes, Route, decode
from rivulet.framework._errors import ConfigurationError, DecodeError, NonRetriableError
from rivulet.framework._metrics import Metrics
from rivulet.framework._outbox import Outbox
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._retry import (
    DeadLetter,
    RetryInPlace,
    SendToRetryTopic,
    addressed_group,
    attempt_of,
    dead_letter_topic,
    forward_headers,
    main_topic_of,
)
from rivulet.framework._store import FrameworkStore
from rivulet.framework._tracing import Tracing
from rivulet.framework._wire import ConsumedRecord, OutgoingRecord

__all__ = [
    "REPLAY",
    "REPLAY_LAST",
    "Forwarded",
    "Handled",
    "KeyParkedError",
    "Outcome",
    "Persistence",
    "Processor",
    "Skipped",
]

REPLAY: Final = "rivulet_replay"
REPLAY_LAST: Final = "rivulet_replay-last"


class KeyParkedError(NonRetriableError):
    """The record's key is parked behind an earlier dead-lettered record."""


@dataclass(frozen=True, slots=True)
class Handled:
    """The handler succeeded, or an idempotent handler had already handled the event."""

    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to do for this group (``other-group`` or ``unhandled-type``)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Forwarded:
    """Republish ``record`` to a retry or dead-letter topic."""

    record: OutgoingRecord
    reason: str
    dead_letter: bool
    error: BaseException


Outcome = Handled | Skipped | Forwarded

_HANDLED = Handled()
_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()
_DUPLICATE = Handled(duplicate=True)


@dataclass(frozen=True, slots=True)
class Persistence:
    """The app's database and what the framework keeps in it."""

    database: Database
    store: FrameworkStore
    outbox: Outbox


class Processor:
    """Processes the records of one consumer group (pure of Kafka: records in, outcomes out)."""

    def __init__(
        self,
        routes: GroupRoutes,
        *,
        encoder: EventEncoder,
        persistence: Persistence | None,
        clock_ms: Callable[[], int],
        random01: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        default_timeout_s: float = 60.0,
        logger: logging.Logger | None = None,
        metrics: Metrics | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
        tracing: Tracing | None = None,
    ) -> None:
        needs_db = any(
            spec.idempotent or route.park_failed_keys
            for route in routes.routes.values()
            for spec, _ in route.by_type.values()
        )
        if needs_db and persistence is None:
            raise ConfigurationError("idempotent handlers and key parking need a database")
        self.routes = routes
        self.group = routes.group
        self._encoder = encoder
        self._persistence = persistence
        self._clock_ms = clock_ms
        self._random01 = random01
        self._sleep = sleep
        self._default_timeout_s = default_timeout_s
        self._log = logger or logging.getLogger("rivulet.handler")
        self._metrics = metrics
        self._monotonic = monotonic
        # Whether OpenTelemetry traces is settled when the processor is made (configure
        # the SDK before starting the app), so untraced handling pays nothing for it.
        tracing = tracing or Tracing()
        self._tracing = tracing if tracing.enabled() else None
        # Handler time limits: one watchdog per processor instead of a timer per call.
        self._deadlines: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._parked: dict[str, dict[bytes | None, str | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop handlers run on

    def forget_parking(self) -> None:
        """Reload parked keys on next use (after a rebalance another replica may have parked)."""
        self._parked.clear()

    async def process(self, record: ConsumedRecord, sink: Sink) -> Outcome:
        """Handle ``record``: the outcome tells the runtime what remains to be done."""
        plain = record.is_plain()
        if plain:
            # The common case, kept short: a first delivery from the main topic.
            route = self.routes.routes.get(record.topic)
            replay_batch = None
        else:
            addressed = addressed_group(record)
            if addressed is not None and addressed != self.group:
                return self._skip(record, "other-group")
            route = self.routes.route_for(record)
            replay = record.header(REPLAY)
            replay_batch = None if replay is None else replay.decode("utf-8", "replace")
        if route is None:
            error = ConfigurationError(f"group {self.group!r} has no handler for this topic")
            return self._forward(
                record, DeadLetter(dead_letter_topic(record.topic), "no-route"), error
            )
        try:
            decoded = decode(record, route, self._encoder)
        except DecodeError as exc:
            return await self._dead_letter(
                record, route, DeadLetter(dead_letter_topic(route.topic), exc.reason), exc
            )
        if decoded is None:
            return self._skip(record, "unhandled-type")
        if route.park_failed_keys:
            parked = await self._parked_keys(route.topic)
            if record.key in parked and (
                replay_batch is None or parked[record.key] == replay_batch
            ):
                parked_error = KeyParkedError("key is parked behind an earlier dead-lettered event")
                return self._forward(
                    record, DeadLetter(dead_letter_topic(route.topic), "parked"), parked_error
                )
        spec = decoded.spec
        delivery = 1 if plain else attempt_of(record)
        call = 1
        started = self._monotonic()
        while True:
            try:
                if spec.idempotent:
                    outcome = await self._call_in_transaction(record, decoded, sink, delivery)
                else:
                    await self._invoke(record, decoded, sink, delivery, None)
                    outcome = _HANDLED
            except Exception as exc:  # noqa: BLE001 - any handler failure takes the retry path
                if self._metrics is not None:
                    self._metrics.handler_failed(self.group, route.topic, spec.name)
                decision = spec.retry.decide(
                    route.topic,
                    hop=delivery - 1,
                    attempt=call,
                    error=exc,
                    random01=self._random01(),
                )
                if isinstance(decision, RetryInPlace):
                    self._log.warning(
                        "handler %s failed (call %d), retrying in %d ms: %r",
                        spec.name,
                        call,
                        decision.delay_ms,
                        exc,
                        extra={"event_id": decoded.envelope.id},
                    )
                    await self._sleep(decision.delay_ms / 1000)
                    call += 1
                    continue
                if isinstance(decision, DeadLetter):
                    return await self._dead_letter(record, route, decision, exc, replay_batch)
                return self._forward(record, decision, exc)
            last = replay_batch is not None and record.header(REPLAY_LAST) is not None
            if last and route.park_failed_keys:
                await self._unpark(route, record.key)
            if self._metrics is not None:
                if outcome.duplicate:
                    self._metrics.duplicate(self.group, route.topic)
                else:
                    elapsed = self._monotonic() - started
                    self._metrics.handled(self.group, route.topic, spec.name, elapsed)
            return outcome

    async def _call_in_transaction(
        self, record: ConsumedRecord, decoded: Decoded, sink: Sink, delivery: int
    ) -> Handled:
        persistence = self._require_persistence()
        async with persistence.database.transaction() as sql:
            claimed = await persistence.store.claim(
                sql, self.group, decoded.envelope.id, self._clock_ms()
            )
            if not claimed:
                return _DUPLICATE
            tx = Transaction(sql, encoder=self._encoder, outbox=persistence.outbox.write)
            await self._invoke(record, decoded, sink, delivery, tx)
        if tx._wrote:
            persistence.outbox.committed()
        return _HANDLED

    async def _invoke(
        self,
        record: ConsumedRecord,
        decoded: Decoded,
        sink: Sink,
        delivery: int,
        tx: Transaction | None,
    ) -> None:
        # Runs for every record: one coroutine for context, span, time limit and call.
        spec = decoded.spec
        # asyncio.current_task() without a loop asks for the running loop, and CPython's
        # get_running_loop() makes a getpid() system call each time (to notice forks):
        # the only system call on a record's path, worth about 4 % of the benchmark's rate.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        timeout = spec.timeout_s or self._default_timeout_s
        self._deadlines[task] = self._monotonic() + timeout
        watchdog = self._watchdog
        if watchdog is None or watchdog.done():
            self._watchdog = loop.create_task(self._watch(), name=f"rivulet-watchdog-{self.group}")
        span: AbstractContextManager[str | None] = _NO_SPAN
        if self._tracing is not None:
            span = self._tracing.process(record, decoded.envelope, self.group, spec.name)
        try:
            with span as trace:
                ctx = Context(
                    self.group, record, decoded.envelope, self._encoder, sink, tx, delivery, trace
                )
                try:
                    if spec.takes_context:
                        await spec.fn(decoded.event, ctx)
                    else:
                        await spec.fn(decoded.event)
                except asyncio.CancelledError:
                    if task not in self._expired:
                        raise
                    self._expired.discard(task)
                    task.uncancel()
                    raise TimeoutError(
                        f"handler {spec.name} ran longer than {timeout:g} s"
                    ) from None
        finally:
            del self._deadlines[task]

    async def _watch(self) -> None:
        # Cancels handler calls past their deadline; ends when none is running.
        while self._deadlines:
            now = self._monotonic()
            for task, deadline in list(self._deadlines.items()):
                if deadline <= now and task not in self._expired:
                    self._expired.add(task)
                    task.cancel()
            nearest = min(self._deadlines.values(), default=now)
            await asyncio.sleep(min(max(nearest - now, 0.005), 0.1))

    def close(self) -> None:
        """Stop the handler-timeout watchdog."""
        if self._watchdog is not None:
            self._watchdog.cancel()

    async def give_up(self, record: ConsumedRecord, error: BaseException) -> Forwarded:
        """Dead-letter ``record`` (reason ``publish-failed``) without handling it again."""
        route = self.routes.route_for(record)
        topic = dead_letter_topic(route.topic if route is not None else record.topic)
        decision = DeadLetter(topic, "publish-failed")
        if route is None:
            return self._forward(record, decision, error)
        return await self._dead_letter(record, route, decision, error)

    async def _dead_letter(
        self,
        record: ConsumedRecord,
        route: Route,
        decision: DeadLetter,
        error: BaseException,
        replay_batch: str | None = None,
    ) -> Forwarded:
        if route.park_failed_keys:
            await self._park(route, record.key, decision.reason, replay_batch)
        return self._forward(record, decision, error)

    def _forward(
        self, record: ConsumedRecord, decision: SendToRetryTopic | DeadLetter, error: BaseException
    ) -> Forwarded:
        headers = forward_headers(
            record, error, group=self.group, decision=decision, now_ms=self._clock_ms()
        )
        out = OutgoingRecord(decision.topic, record.key, record.value, headers)
        topic = main_topic_of(record)
        if isinstance(decision, DeadLetter):
            if self._metrics is not None:
                self._metrics.dead_lettered(self.group, topic, decision.reason)
            self._log.error(
                "dead-lettering %s[%d]@%d to %s (%s): %r",
                record.topic,
                record.partition,
                record.offset,
                decision.topic,
                decision.reason,
                error,
            )
            return Forwarded(out, decision.reason, dead_letter=True, error=error)
        if self._metrics is not None:
            self._metrics.retried(self.group, topic)
        return Forwarded(out, "retry", dead_letter=False, error=error)

    def _skip(self, record: ConsumedRecord, reason: str) -> Skipped:
        if self._metrics is not None:
            self._metrics.skipped(self.group, main_topic_of(record), reason)
        return Skipped(reason)

    def _require_persistence(self) -> Persistence:
        if self._persistence is None:  # ruled out in __init__ for handlers that need it
            raise ConfigurationError("this handler needs a database")
        return self._persistence

    async def _parked_keys(self, topic: str) -> dict[bytes | None, str | None]:
        parked = self._parked.get(topic)
        if parked is None:
            persistence = self._require_persistence()
            async with persistence.database.transaction() as tx:
                parked = await persistence.store.parked_keys(tx, self.group, topic)
            self._parked[topic] = parked
        return parked

    async def _park(
        self, route: Route, key: bytes | None, reason: str, replay_batch: str | None
    ) -> None:
        persistence = self._require_persistence()
        async with persistence.database.transaction() as tx:
            await persistence.store.park(
                tx,
                self.group,
                route.topic,
                key,
                reason=reason,
                replay_batch=replay_batch,
                now_ms=self._clock_ms(),
            )
        (await self._parked_keys(route.topic))[key] = replay_batch

    async def _unpark(self, route: Route, key: bytes | None) -> None:
        persistence = self._require_persistence()
        async with persistence.database.transaction() as tx:
            await persistence.store.unpark(tx, self.group, route.topic, key)
        (await self._parked_keys(route.topic)).pop(key, None)
