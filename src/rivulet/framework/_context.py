"""What a handler gets besides its event: :class:`Context`, and :class:`Transaction`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from rivulet.framework._db import Dialect, Params, Row, SqlTransaction
from rivulet.framework._errors import ConfigurationError
from rivulet.framework._events import Event
from rivulet.framework._ids import derived_event_id
from rivulet.framework._publishing import Built, EventEncoder
from rivulet.framework._wire import ConsumedRecord, Envelope

__all__ = ["Context", "OutboxWriter", "Sink", "Transaction"]

_HANDLER_LOG = logging.getLogger("rivulet.handler")

#: Hands a built record to the producer (direct publishing); returns an awaitable only
#: when the producer's queue is full and the caller has to wait for room.
Sink = Callable[[Built], Awaitable[None] | None]
#: Stores a built record in the outbox table within a transaction.
OutboxWriter = Callable[[SqlTransaction, Built], Awaitable[None]]


class Transaction:
    """A transaction on the service's database; events published in it use the outbox.

    Statements take ``?`` placeholders on SQLite and PostgreSQL alike. Events passed to
    :meth:`publish` are written to the outbox table in this transaction and published by
    the relay after it commits: none is published if the transaction rolls back, and none
    is lost if the process dies after the commit.

    Example (an HTTP endpoint of an orders service)::

        async with app.transaction() as tx:
            await tx.execute("INSERT INTO orders (id, total) VALUES (?, ?)", (order_id, total))
            await tx.publish("orders", OrderPlaced(order_id=order_id, total=total), key=order_id)
    """

    __slots__ = ("_encoder", "_outbox", "_sql", "_wrote")

    def __init__(self, sql: SqlTransaction, *, encoder: EventEncoder, outbox: OutboxWriter) -> None:
        self._sql = sql
        self._encoder = encoder
        self._outbox = outbox
        # Whether outbox rows were written, so the relay is woken only when it has work.
        self._wrote = False

    @property
    def dialect(self) -> Dialect:
        """``"sqlite"`` or ``"postgresql"``, for the rare statement that must differ."""
        return self._sql.dialect

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return await self._sql.execute(sql, params)

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for each parameter row."""
        await self._sql.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or ``None``."""
        return await self._sql.fetchone(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""
        return await self._sql.fetchall(sql, params)

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str | bytes | None = None,
        correlation_id: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> str:
        """Publish ``event`` to ``topic`` when this transaction commits; returns its id.

        ``correlation_id`` links the event to an existing flow (for instance the id an
        HTTP client sent); without it the event starts a new one.
        """
        built = self._encoder.build(
            event, topic=topic, key=key, correlation_id=correlation_id, headers=headers
        )
        await self._publish_built(built)
        return built.event_id

    async def _publish_built(self, built: Built) -> None:
        await self._outbox(self._sql, built)
        self._wrote = True


class Context:
    """The handler's view of the event being handled, and its way to publish.

    ``ctx.publish`` gives each published event an id derived from the consumed event's,
    carries the correlation id along, sets the causation id to the consumed event's id
    and continues the trace. In an ``idempotent=True`` handler, ``ctx.transaction`` is
    the database transaction that also records the event as processed, and publishes go
    through the outbox in that transaction.
    """

    __slots__ = (
        "_adapter",
        "_encoder",
        "_envelope",
        "_published",
        "_sink",
        "_trace",
        "_transaction",
        "attempt",
        "group",
        "record",
    )

    def __init__(  # noqa: PLR0917 - positional for the per-record path; keywords work too
        self,
        group: str,
        record: ConsumedRecord,
        envelope: Envelope,
        encoder: EventEncoder,
        sink: Sink,
        transaction: Transaction | None = None,
        attempt: int = 1,
        traceparent: str | None = None,
    ) -> None:
        #: The consumer group handling the event.
        self.group = group
        #: The Kafka record the event came from (topic, partition, offset, key, headers).
        self.record = record
        #: Delivery attempt, counting retry-topic hops (1 on the main topic).
        self.attempt = attempt
        self._envelope = envelope
        self._encoder = encoder
        self._sink = sink
        self._transaction = transaction
        self._adapter: logging.LoggerAdapter[logging.Logger] | None = None
        self._published = 0
        # The handling span's context when OpenTelemetry traces; else derived on first use.
        self._trace: str | None = traceparent

    @property
    def event_id(self) -> str:
        """The consumed event's id (``ce_id``)."""
        return self._envelope.id

    @property
    def event_type(self) -> str | None:
        """The consumed event's type (``ce_type``), when the record had one."""
        return self._envelope.type

    @property
    def correlation_id(self) -> str:
        """The id shared by every event of this flow (the first event's id)."""
        return self._envelope.correlation_id or self._envelope.id

    @property
    def causation_id(self) -> str | None:
        """The id of the event that caused the consumed one, if any."""
        return self._envelope.causation_id

    @property
    def key(self) -> bytes | None:
        """The consumed record's key."""
        return self.record.key

    @property
    def traceparent(self) -> str:
        """W3C trace context of this handling; published events carry it."""
        if self._trace is None:
            self._trace = self._encoder.trace_for(self._envelope.traceparent)
        return self._trace

    @property
    def transaction(self) -> Transaction:
        """The handler's database transaction (``idempotent=True`` handlers only)."""
        if self._transaction is None:
            raise ConfigurationError(
                "ctx.transaction exists only in handlers declared with idempotent=True, "
                "whose state changes commit together with the processed-event record"
            )
        return self._transaction

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry the event id, type and correlation id."""
        if self._adapter is None:
            extra: dict[str, Any] = {
                "event_id": self.event_id,
                "event_type": self.event_type,
                "correlation_id": self.correlation_id,
                "group": self.group,
            }
            self._adapter = logging.LoggerAdapter(_HANDLER_LOG, extra)
        return self._adapter

    async def publish(
        self,
        topic: str,
        event: Event,
        *,
        key: str | bytes | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> str:
        """Publish ``event`` to ``topic`` (keyed by ``key``, usually the entity id).

        The consumed record's offset is committed only once every event published here
        is confirmed by the broker (or, in an idempotent handler, stored in the outbox
        with the handler's transaction). Returns the new event's id.
        """
        cause_id = self._envelope.id
        index = self._published
        self._published = index + 1
        # Positional: this runs for every event a handler publishes.
        built = self._encoder.build_with(
            event,
            topic,
            key,
            derived_event_id(self.group, cause_id, index),  # event_id
            self.correlation_id,
            cause_id,  # causation_id
            self.traceparent,
            headers,
        )
        if self._transaction is not None:
            await self._transaction._publish_built(built)
        else:
            waiting = self._sink(built)
            if waiting is not None:
                await waiting
        return built.event_id
