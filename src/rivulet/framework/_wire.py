"""The wire format of events: CloudEvents Kafka protocol binding, binary content mode.

A Rivulet event is one Kafka record:

=====================  ======================================================
Kafka record part      Content
=====================  ======================================================
key                    the partition key (entity id), UTF-8; may be absent
value                  the event payload, encoded by a :class:`Serializer`
                       (JSON by default)
``ce_specversion``     ``1.0``
``ce_id``              event id (UUIDv7 for new events, derived for handler output)
``ce_type``            event type (the model's ``__event_type__``)
``ce_source``          URI-reference of the producing app (its name by default)
``ce_time``            RFC 3339 UTC time with milliseconds
``content-type``       the serializer's content type (binding: ``datacontenttype``)
``ce_correlationid``   id of the first event of the causal chain (extension)
``ce_causationid``     id of the event whose handler published this one (extension)
``traceparent``        W3C Trace Context, so traces span services
=====================  ======================================================

Header values are UTF-8 strings, as the binding requires. ``EventEncoder``
(``_publishing``) writes these headers; :func:`decode_envelope` reads them. Other
headers on a record (retry and dead-letter bookkeeping, user headers) are carried
alongside untouched.

Decoding is lenient where it can be without losing safety, so records written by plain
Kafka producers are usable: a missing ``ce_id`` becomes ``<topic>-<partition>-<offset>``
(stable across redeliveries, so idempotency still holds); a missing ``ce_type`` is
resolved by the dispatcher when the subscription handles exactly one event type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol, TypeVar, cast, runtime_checkable

import pydantic

from rivulet.framework._errors import InvalidPayloadError, MalformedRecordError
from rivulet.framework._events import Event

if TYPE_CHECKING:
    from rivulet.framework._topology import Topology

__all__ = [
    "CAUSATION_ID",
    "CONTENT_TYPE",
    "CORRELATION_ID",
    "EVENT_ID",
    "EVENT_SOURCE",
    "EVENT_TIME",
    "EVENT_TYPE",
    "SPEC_VERSION",
    "TRACEPARENT",
    "ConsumedRecord",
    "Envelope",
    "Headers",
    "JsonSerializer",
    "OutgoingRecord",
    "Serializer",
    "StartableSerializer",
    "decode_envelope",
]

EVENT_ID: Final = "ce_id"
EVENT_TYPE: Final = "ce_type"
EVENT_SOURCE: Final = "ce_source"
EVENT_TIME: Final = "ce_time"
SPEC_VERSION: Final = "ce_specversion"
CONTENT_TYPE: Final = "content-type"
CORRELATION_ID: Final = "ce_correlationid"
CAUSATION_ID: Final = "ce_causationid"
TRACEPARENT: Final = "traceparent"

_SPEC_VERSION_VALUE: Final = b"1.0"

# Headers retries, dead letters and replays add (Spring's names and ours): a record
# without any is on its first delivery from its main topic.
_BOOKKEEPING: Final = frozenset(
    {
        "kafka_dlt-original-topic",
        "kafka_dlt-original-consumer-group",
        "retry_topic-attempts",
        "retry_topic-backoff-timestamp",
        "rivulet_replay",
        "rivulet_replay-last",
    }
)

#: Kafka record headers as confluent-kafka hands them over: names and raw values.
Headers = Sequence[tuple[str, bytes | None]]

E = TypeVar("E", bound=Event)


# The value objects made for every record are plain slots dataclasses, not frozen
# ones: a frozen dataclass sets each field through object.__setattr__, which showed up
# in profiles of the consume loop. Treat them as read-only all the same.


@dataclass(slots=True)
class Envelope:
    """The CloudEvents attributes of one record (everything but the payload)."""

    id: str
    type: str | None
    source: str
    time: str | None
    content_type: str | None
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


@dataclass(slots=True)
class ConsumedRecord:
    """A record as read from a topic: what the framework needs of a consumer message."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    #: ``CreateTime`` or ``LogAppendTime``, as Spring's dead-letter headers spell it.
    timestamp_type: str = "CreateTime"
    _index: dict[str, bytes | None] | None = field(
        default=None, init=False, compare=False, repr=False
    )

    def header(self, name: str) -> bytes | None:
        """The last value of header ``name`` (Kafka's ``lastHeader``), or ``None``.

        The headers are indexed on first use: a record's headers are read several times
        on its way through the framework.
        """
        return self.header_index().get(name)

    def header_index(self) -> dict[str, bytes | None]:
        """Header name to last value (a header sent without a value maps to ``None``)."""
        index = self._index
        if index is None:
            # dict() over the (name, value) pairs runs in C, and keeps the last value of a
            # repeated name, as lastHeader does.
            index = self._index = dict(self.headers)
        return index

    def is_plain(self) -> bool:
        """No retry, dead-letter or replay headers: a record as its producer wrote it."""
        return _BOOKKEEPING.isdisjoint(self.header_index())


@dataclass(slots=True)
class OutgoingRecord:
    """A record ready for a producer."""

    topic: str
    key: bytes | None
    #: ``None`` only for tombstones (forwarded as they were read).
    value: bytes | None
    headers: list[tuple[str, bytes]]


@runtime_checkable
class Serializer(Protocol):
    """Turns events into payload bytes and back; one per content type.

    The default is :class:`JsonSerializer`. The schema registry plugs in Avro and JSON
    Schema serializers with the Confluent wire format through this interface; ``topic``
    is passed so they can name subjects (``<topic>-value``).
    """

    @property
    def content_type(self) -> str:
        """The ``content-type`` header value this serializer writes and reads."""
        ...

    def encode(self, event: Event, *, topic: str) -> bytes:
        """The payload bytes of ``event``."""
        ...

    def decode(self, data: bytes, model: type[E], *, topic: str) -> E:
        """Validate ``data`` into ``model``; raise :class:`InvalidPayloadError` if it is not."""
        ...


@runtime_checkable
class StartableSerializer(Serializer, Protocol):
    """A serializer with work to do when the app starts and stops.

    The schema registry's serializers register (or check) the schemas of the app's
    events and open their connections. The runtime calls ``start`` after the producer
    started and before the app's ``on_startup`` hooks (which may publish); ``default``
    says whether it is the app's first serializer, which encodes every event that names
    no content type. A ``ConfigurationError`` from ``start`` stops the app from starting.
    ``stop`` runs after the consumers stopped, and also when ``start`` raised.
    """

    async def start(self, topology: Topology, *, default: bool) -> None:
        """Prepare for the app's events (``topology`` lists them by topic)."""
        ...

    async def stop(self) -> None:
        """Release what ``start`` opened."""
        ...


class JsonSerializer:
    """JSON through pydantic's Rust core, both ways.

    Measured on ~220-byte events (docs/decisions/0005-framework-json-codec.md): decoding
    with ``model_validate_json`` beats ``orjson.loads`` + ``model_validate`` by ~25% and
    stdlib ``json`` by ~2.7x; encoding with the model's core serializer beats ``orjson``
    over ``model_dump`` by ~1.7x.

    >>> class Ping(Event):
    ...     n: int
    >>> codec = JsonSerializer()
    >>> codec.encode(Ping(n=1), topic="t")
    b'{"n":1}'
    >>> codec.decode(b'{"n": 2}', Ping, topic="t")
    Ping(n=2)
    """

    @property
    def content_type(self) -> str:
        """``application/json``."""
        return "application/json"

    def encode(self, event: Event, *, topic: str) -> bytes:
        """Serialize with the model's compiled serializer."""
        return type(event).__pydantic_serializer__.to_json(event)

    def decode(self, data: bytes, model: type[E], *, topic: str) -> E:
        """Parse and validate in one pass."""
        try:
            # model_validate_json's keyword plumbing costs a quarter of the call; the
            # compiled validator with its defaults is the same validation.
            return cast(E, model.__pydantic_validator__.validate_json(data))
        except pydantic.ValidationError as exc:
            raise InvalidPayloadError(
                f"payload is not a valid {model.__event_type__}: {_summary(exc)}"
            ) from exc


def _summary(exc: pydantic.ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in errors]
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + more


def decode_envelope(record: ConsumedRecord) -> Envelope:
    """The CloudEvents attributes of a consumed record.

    Raises :class:`MalformedRecordError` when a CloudEvents header is not UTF-8 or the
    spec version is not 1.x. The last occurrence of a repeated header wins, as in
    Kafka's ``Headers.lastHeader``.
    """
    get = record.header_index().get
    # Runs for every consumed record: straight-line lookups and decodes, and a
    # positional Envelope (a loop over the headers cost twice as much).
    spec = get(SPEC_VERSION)
    raw_id = get(EVENT_ID)
    raw_type = get(EVENT_TYPE)
    raw_source = get(EVENT_SOURCE)
    raw_time = get(EVENT_TIME)
    raw_content_type = get(CONTENT_TYPE)
    raw_correlation = get(CORRELATION_ID)
    raw_causation = get(CAUSATION_ID)
    raw_trace = get(TRACEPARENT)
    try:
        if spec is not None and not spec.decode().startswith("1."):
            raise MalformedRecordError(
                f"unsupported CloudEvents spec version {spec.decode()!r} (expected 1.x)"
            )
        return Envelope(
            raw_id.decode() if raw_id else f"{record.topic}-{record.partition}-{record.offset}",
            None if raw_type is None else raw_type.decode(),  # type
            "" if raw_source is None else raw_source.decode(),  # source
            None if raw_time is None else raw_time.decode(),  # time
            None if raw_content_type is None else raw_content_type.decode(),  # content_type
            None if raw_correlation is None else raw_correlation.decode(),  # correlation_id
            None if raw_causation is None else raw_causation.decode(),  # causation_id
            None if raw_trace is None else raw_trace.decode(),  # traceparent
        )
    except UnicodeDecodeError:
        index = record.header_index()
        bad = next(n for n in _CLOUDEVENTS if not _is_utf8(index.get(n)))
        raise MalformedRecordError(f"header {bad!r} is not valid UTF-8") from None


_CLOUDEVENTS: Final = (
    SPEC_VERSION,
    EVENT_ID,
    EVENT_TYPE,
    EVENT_SOURCE,
    EVENT_TIME,
    CONTENT_TYPE,
    CORRELATION_ID,
    CAUSATION_ID,
    TRACEPARENT,
)


def _is_utf8(raw: bytes | None) -> bool:
    if raw is None:
        return True
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True
