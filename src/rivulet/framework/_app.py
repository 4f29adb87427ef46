"""The :class:`App`: a service's declarations (handlers, streams, topics) and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from rivulet.framework._config import Settings
from rivulet.framework._consumer import PartitionHook
from rivulet.framework._context import Transaction
from rivulet.framework._errors import ConfigurationError
from rivulet.framework._events import Event
from rivulet.framework._handlers import (
    HandlerFn,
    HandlerSpec,
    UnknownTypes,
    event_models_of,
    normalize_publishes,
)
from rivulet.framework._logging import configure_logging
from rivulet.framework._retry import RetryPolicy
from rivulet.framework._runtime import Runtime
from rivulet.framework._stream import Stream, StreamRoot
from rivulet.framework._topology import Topology, topology_of
from rivulet.framework._wire import JsonSerializer, Serializer

__all__ = ["App", "TopicSpec"]

H = TypeVar("H", bound=HandlerFn)
E = TypeVar("E", bound=Event)
Hook = Callable[[], Awaitable[None]]
HookT = TypeVar("HookT", bound=Hook)
PartitionHookT = TypeVar("PartitionHookT", bound=PartitionHook)

# Kafka's own rule for topic names (and Kafka group ids are used as metric labels).
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


def _handler_name(fn: HandlerFn) -> str:
    # Metric labels and AsyncAPI operation ids: readable, without "<locals>".
    return str(getattr(fn, "__qualname__", "handler")).replace("<locals>.", "")


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the app declares, with what deployment should create it with."""

    name: str
    partitions: int | None = None
    config: Mapping[str, str] | None = None


class App:
    """An event-driven service: its handlers, streams and published topics.

    >>> from rivulet import App, Context, Event
    >>> class OrderPlaced(Event):
    ...     order_id: str
    ...     sku: str
    ...     qty: int
    >>> class StockReserved(Event):
    ...     order_id: str
    >>> app = App("inventory")
    >>> @app.handler("orders", publishes={"inventory": StockReserved})
    ... async def reserve(event: OrderPlaced, ctx: Context) -> None:
    ...     await ctx.publish("inventory", StockReserved(order_id=event.order_id),
    ...                       key=event.order_id)
    >>> [(h.name, h.group, h.topics) for h in app.handlers]
    [('reserve', 'inventory', ('orders',))]

    ``settings`` are normally left out: ``app.run()``, ``rivulet run`` and the test
    fixtures build them from the environment (:meth:`Settings.load`) at start.
    """

    def __init__(
        self,
        name: str,
        *,
        settings: Settings | None = None,
        source: str | None = None,
        serializers: Sequence[Serializer] | None = None,
        version: str = "0.1.0",
        description: str = "",
    ) -> None:
        if not _APP_NAME.match(name):
            raise ConfigurationError(
                f"app name {name!r} must start with a letter or digit and contain only "
                "letters, digits and . _ - (it names the consumer group and database file)"
            )
        self.name = name
        self.settings = settings
        #: CloudEvents ``source`` of the events this app publishes.
        self.source = source or name
        self.serializers: tuple[Serializer, ...] = tuple(serializers or (JsonSerializer(),))
        self.version = version
        self.description = description
        self._handlers: list[HandlerSpec] = []
        self._streams: dict[tuple[str, str, type[Event]], StreamRoot[Any]] = {}
        self._publishes: list[tuple[str, tuple[type[Event], ...]]] = []
        self._topics: dict[str, TopicSpec] = {}
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._partition_hooks: dict[str, list[PartitionHook]] = {}
        self._runtime: Runtime | None = None

    # ------------------------------------------------------------------ declarations

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """Every handler and stream declared so far, in declaration order."""
        return tuple(self._handlers)

    def handler(
        self,
        topic: str | Sequence[str],
        *,
        group: str | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        idempotent: bool = False,
        park_failed_keys: bool = False,
        timeout_s: float | None = None,
        publishes: Mapping[str, type[Event] | Sequence[type[Event]]] | None = None,
        unknown_types: UnknownTypes = "dead-letter",
    ) -> Callable[[H], H]:
        """Declare an async handler for the events of ``topic`` (one topic or several).

        The handler's first parameter's annotation (an Event subclass, or a union of
        them) says which event types it takes; records are routed to it by their
        ``ce_type`` header and validated into that model. Options:

        ``group``
            Consumer group (default: the app name). Replicas of the app share it.
        ``concurrency``
            Records of one partition handled at once, never two with the same key
            (default 1: strict partition order).
        ``retry``
            A :class:`RetryPolicy` (default: 3 calls with jittered backoff, then the
            dead-letter topic ``<topic>-dlt``).
        ``idempotent``
            Run in a database transaction that records the event id for the group:
            a redelivered event is skipped, ``ctx.transaction`` is available and
            ``ctx.publish`` goes through the outbox in that transaction.
        ``park_failed_keys``
            When a record is dead-lettered, later records with its key follow it to the
            dead-letter topic instead of overtaking it, until it is replayed.
        ``timeout_s``
            Time limit of one call (default: the ``handler_timeout_s`` setting).
        ``publishes``
            ``{"topic": EventType}`` this handler publishes, for the topology and docs.
        ``unknown_types``
            ``"dead-letter"`` (default) or ``"skip"`` records of types no handler of
            the group takes on this topic.

        The function is returned unchanged, so it can still be called in unit tests.
        """
        topics = (topic,) if isinstance(topic, str) else tuple(topic)

        def register(fn: H) -> H:
            models, takes_context = event_models_of(fn)
            self._add(
                HandlerSpec(
                    name=self._unique_name(_handler_name(fn)),
                    fn=fn,
                    topics=topics,
                    group=group or self.name,
                    models=models,
                    takes_context=takes_context,
                    concurrency=concurrency,
                    retry=retry or RetryPolicy(),
                    idempotent=idempotent,
                    park_failed_keys=park_failed_keys,
                    timeout_s=timeout_s,
                    publishes=normalize_publishes(publishes),
                    unknown_types=unknown_types,
                )
            )
            return fn

        return register

    def stream(
        self,
        topic: str,
        event: type[E],
        *,
        group: str | None = None,
        concurrency: int = 1,
        retry: RetryPolicy | None = None,
        unknown_types: UnknownTypes = "skip",
    ) -> Stream[E]:
        """A stream of ``topic``'s ``event`` records, to filter, map and send elsewhere.

        Calling it again with the same topic, event type and group returns a stream on
        the same source: its ``.to`` calls are further branches of one handler. Other
        event types on the topic are skipped (a stream selects), unless
        ``unknown_types="dead-letter"``.
        """
        group = group or self.name
        key = (group, topic, event)
        root = self._streams.get(key)
        if root is None:
            root = StreamRoot(topic, event)
            self._streams[key] = root
            self._add(
                HandlerSpec(
                    name=self._unique_name(f"stream:{topic}:{event.__event_type__}"),
                    fn=root.handle,
                    topics=(topic,),
                    group=group,
                    models=(event,),
                    takes_context=True,
                    concurrency=concurrency,
                    retry=retry or RetryPolicy(),
                    unknown_types=unknown_types,
                    stream=root,
                )
            )
        return Stream(root, (), event)

    def publishes(self, topic: str, *events: type[Event]) -> None:
        """Declare that the app publishes ``events`` to ``topic`` outside handlers.

        For events published from HTTP endpoints or jobs (``tx.publish``), so the
        topology, the AsyncAPI document and the deployment know about them.
        """
        self._check_topic(topic)
        self._publishes.extend(normalize_publishes({topic: events}))

    def topic(
        self, name: str, *, partitions: int | None = None, config: Mapping[str, str] | None = None
    ) -> None:
        """Declare how a topic should be created (partitions, topic configs) in deployment."""
        self._check_topic(name)
        if partitions is not None and partitions < 1:
            raise ConfigurationError(f"topic {name!r}: partitions must be at least 1")
        self._topics[name] = TopicSpec(name, partitions, dict(config or {}))

    @property
    def topics(self) -> Mapping[str, TopicSpec]:
        """Topics declared with :meth:`topic`."""
        return dict(self._topics)

    @property
    def app_publications(self) -> tuple[tuple[str, tuple[type[Event], ...]], ...]:
        """Publications declared with :meth:`publishes`."""
        return tuple(self._publishes)

    def on_startup(self, fn: HookT) -> HookT:
        """Run ``fn`` at start, after the database opens and before consuming begins.

        The place to create the service's own tables (``async with app.transaction()``).
        """
        self._startup.append(fn)
        return fn

    def on_shutdown(self, fn: HookT) -> HookT:
        """Run ``fn`` at shutdown, after consumers stop and before the database closes."""
        self._shutdown.append(fn)
        return fn

    def on_partitions_assigned(self, fn: PartitionHookT) -> PartitionHookT:
        """Run ``await fn(group, [(topic, partition), ...])`` after partitions are assigned."""
        self._partition_hooks.setdefault("assigned", []).append(fn)
        return fn

    def on_partitions_revoked(self, fn: PartitionHookT) -> PartitionHookT:
        """Run ``fn(group, partitions)`` after revoked partitions' in-flight work finished.

        Their offsets are committed once the hooks return.
        """
        self._partition_hooks.setdefault("revoked", []).append(fn)
        return fn

    def on_partitions_lost(self, fn: PartitionHookT) -> PartitionHookT:
        """Run ``fn(group, partitions)`` when partitions were lost (another member may own them)."""
        self._partition_hooks.setdefault("lost", []).append(fn)
        return fn

    @property
    def partition_hooks(self) -> dict[str, Sequence[PartitionHook]]:
        """Rebalance hooks by event (``assigned``, ``revoked``, ``lost``)."""
        return {event: tuple(hooks) for event, hooks in self._partition_hooks.items()}

    @property
    def startup_hooks(self) -> tuple[Hook, ...]:
        """Hooks registered with :meth:`on_startup`."""
        return tuple(self._startup)

    @property
    def shutdown_hooks(self) -> tuple[Hook, ...]:
        """Hooks registered with :meth:`on_shutdown`."""
        return tuple(self._shutdown)

    # ------------------------------------------------------------------ running

    @asynccontextmanager
    async def running(self, settings: Settings | None = None) -> AsyncIterator[Runtime]:
        """Run the app inside the block (in the caller's event loop), then stop it gracefully.

        Settings default to the app's own, else :meth:`Settings.load` (environment). The
        way to run an app inside a web server's lifespan, or in tests::

            async with app.running() as runtime:
                await runtime.publish("orders", OrderPlaced(order_id="o-1"), key="o-1")
        """
        if self._runtime is not None:
            raise ConfigurationError(f"app {self.name!r} is already running")
        runtime = Runtime(self, settings or self.settings or Settings.load())
        self._runtime = runtime
        try:
            await runtime.start()
            try:
                yield runtime
            finally:
                await runtime.stop()
        finally:
            self._runtime = None

    async def serve(self, settings: Settings | None = None) -> None:
        """Run until cancelled (then stop gracefully), or until a consumer fails (then raise).

        This is the process's main job (``app.run()`` and ``rivulet run`` call it), so it
        tunes the garbage collector for an event loop handling records: once the app has
        started, the objects made so far (modules, models, schemas, clients) are moved
        out of the collector's way (``gc.freeze()``, after a collection), and young
        objects are collected every 10,000 allocations instead of 700 (most of a
        record's objects are freed by reference counting long before). Measured: about
        3 % of the CPU per record.
        """
        async with self.running(settings) as runtime:
            gc.collect()
            gc.freeze()
            _, older, oldest = gc.get_threshold()
            gc.set_threshold(_YOUNG_COLLECTION_THRESHOLD, older, oldest)
            await runtime.wait_failed()

    def run(self, settings: Settings | None = None) -> None:
        """Run in a new event loop until SIGTERM or SIGINT, then stop gracefully.

        Reads the environment (and ``RIVULET_CONFIG``) here, at the edge, unless the app
        or the caller gave settings, and configures logging from them.
        """
        resolved = settings or self.settings or Settings.load()
        configure_logging(resolved)
        asyncio.run(_serve_until_signalled(self, resolved))

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction on the app's database; events published in it go through the outbox.

        Only while the app runs (``app.running()``, ``app.run()``, ``rivulet run``).
        """
        return self._running_runtime().transaction()

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str | bytes | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish ``event`` now, outside any transaction; returns once the broker confirmed.

        Prefer :meth:`transaction` when the event reports a state change in the database.
        """
        return await self._running_runtime().publish(
            topic, event, key=key, correlation_id=correlation_id
        )

    def _running_runtime(self) -> Runtime:
        if self._runtime is None:
            raise ConfigurationError(
                f"app {self.name!r} is not running: use it inside app.running(), app.run() "
                "or rivulet run (and in on_startup hooks)"
            )
        return self._runtime

    def topology(self) -> Topology:
        """The app's topics, groups, handlers and event schemas as data.

        ``app.topology().asyncapi()`` is the AsyncAPI 3 document
        (``rivulet docs asyncapi module:app`` prints it).
        """
        return topology_of(self)

    # ------------------------------------------------------------------ internals

    def _add(self, spec: HandlerSpec) -> None:
        for topic in spec.topics:
            self._check_topic(topic)
        if spec.concurrency < 1:
            raise ConfigurationError(f"handler {spec.name}: concurrency must be at least 1")
        if spec.timeout_s is not None and spec.timeout_s <= 0:
            raise ConfigurationError(f"handler {spec.name}: timeout_s must be positive")
        if spec.park_failed_keys and spec.retry.topics:
            raise ConfigurationError(
                f"handler {spec.name}: park_failed_keys keeps per-key order, which retry "
                "topics give up by design; retry in place (RetryPolicy(attempts=...)) instead"
            )
        for other in self._handlers:
            self._check_compatible(spec, other)
        self._handlers.append(spec)

    def _check_compatible(self, new: HandlerSpec, old: HandlerSpec) -> None:
        self._check_models(new, old)
        if new.group != old.group:
            return
        for topic in set(new.topics) & set(old.topics):
            where = f"group {new.group!r}, topic {topic!r}"
            clash = {m.__event_type__ for m in new.models} & {m.__event_type__ for m in old.models}
            if clash:
                raise ConfigurationError(
                    f"{where}: handlers {old.name} and {new.name} both take {sorted(clash)}; "
                    "one event type has one handler per group (use another group for a second)"
                )
            for option in ("concurrency", "park_failed_keys", "unknown_types"):
                if getattr(new, option) != getattr(old, option):
                    raise ConfigurationError(
                        f"{where}: handlers {old.name} and {new.name} disagree on {option}; "
                        "handlers sharing a topic and group share these options"
                    )

    @staticmethod
    def _check_models(new: HandlerSpec, old: HandlerSpec) -> None:
        known = {m.__event_type__: m for m in old.models}
        for model in new.models:
            other = known.get(model.__event_type__)
            if other is not None and other is not model:
                raise ConfigurationError(
                    f"event type {model.__event_type__!r} names two classes: "
                    f"{other.__module__}.{other.__qualname__} and "
                    f"{model.__module__}.{model.__qualname__}; give one an event_type="
                )

    def _unique_name(self, name: str) -> str:
        taken = {h.name for h in self._handlers}
        if name not in taken:
            return name
        n = 2
        while f"{name}#{n}" in taken:
            n += 1
        return f"{name}#{n}"

    @staticmethod
    def _check_topic(topic: str) -> None:
        if not _TOPIC.match(topic) or topic in {".", ".."}:
            raise ConfigurationError(
                f"topic name {topic!r} is not valid in Kafka: use letters, digits, . _ - "
                "(at most 249 characters)"
            )

    def __repr__(self) -> str:
        return f"App({self.name!r}, handlers={len(self._handlers)})"


_YOUNG_COLLECTION_THRESHOLD = 10_000


async def _serve_until_signalled(app: App, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = loop.create_task(app.serve(settings), name=f"rivulet-app-{app.name}")
    stopped = loop.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        stopped.cancel()
        if not serving.done():
            serving.cancel()  # running() stops the app gracefully on cancellation
        with contextlib.suppress(asyncio.CancelledError):
            await serving
