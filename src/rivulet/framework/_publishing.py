"""Turning events into records: ids, envelope, serializer choice. One place for every publish.

Handlers (``ctx.publish``), transactions (``tx.publish``), streams (``.to``) and
``App.publish`` all build their records here, so ids, CloudEvents headers and trace
context are the same whichever path an event takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rivulet.framework._errors import ConfigurationError, InvalidPayloadError
from rivulet.framework._events import Event
from rivulet.framework._ids import TraceParent, format_ce_time, new_event_id
from rivulet.framework._wire import (
    CAUSATION_ID,
    CONTENT_TYPE,
    CORRELATION_ID,
    EVENT_ID,
    EVENT_SOURCE,
    EVENT_TIME,
    EVENT_TYPE,
    SPEC_VERSION,
    TRACEPARENT,
    OutgoingRecord,
    Serializer,
)

__all__ = ["Built", "EventEncoder"]

_SPEC_VERSION_HEADER = (SPEC_VERSION, b"1.0")


@dataclass(slots=True)
class Built:
    """A record ready to publish, with the attributes the outbox and metrics need."""

    record: OutgoingRecord
    event_id: str
    event_type: str


class EventEncoder:
    """Builds records for one app; clock and randomness are injected."""

    def __init__(
        self,
        *,
        source: str,
        serializers: Sequence[Serializer],
        clock_ms: Callable[[], int],
        random_bits: Callable[[int], int],
    ) -> None:
        if not serializers:
            raise ConfigurationError("an app needs at least one serializer")
        self.source = source
        self.default = serializers[0]
        self._by_type = {s.content_type: s for s in serializers}
        self._clock_ms = clock_ms
        self._random_bits = random_bits
        self._source_header = (EVENT_SOURCE, source.encode())
        self._parts: dict[type[Event], tuple[Serializer, tuple[str, bytes], tuple[str, bytes]]] = {}
        # The last ce_time header: events published within one millisecond share it.
        self._time: tuple[int, tuple[str, bytes]] = (-1, (EVENT_TIME, b""))

    def serializer_for(self, model: type[Event]) -> Serializer:
        """The serializer that encodes ``model`` (its ``content_type``, else the default)."""
        wanted = model.__content_type__
        if wanted is None:
            return self.default
        serializer = self._by_type.get(wanted)
        if serializer is None:
            raise ConfigurationError(
                f"{model.__qualname__} wants content type {wanted!r} but the app has no "
                f"serializer for it; pass one in App(serializers=[...])"
            )
        return serializer

    def decoder_for(self, content_type: str | None) -> Serializer:
        """The serializer that reads a record's ``content-type`` (absent: the default)."""
        if content_type is None:
            return self.default
        serializer = self._by_type.get(content_type)
        if serializer is None:
            # Parameters such as "; charset=utf-8" do not change the codec.
            serializer = self._by_type.get(content_type.partition(";")[0].strip())
        if serializer is None:
            raise InvalidPayloadError(f"no serializer for content type {content_type!r}")
        return serializer

    def trace_for(self, parent: str | None) -> str:
        """A ``traceparent`` for a span inside ``parent``'s, or for a new trace."""
        if parent:
            child = TraceParent.child_header(parent, self._random_bits(64))
            if child is not None:
                return child
        bits = self._random_bits(192)  # one draw for both ids
        return TraceParent.new_header(bits >> 64, bits)

    def build(
        self,
        event: Event,
        *,
        topic: str,
        key: str | bytes | None,
        event_id: str | None = None,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        traceparent: str | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Built:
        """The record for ``event``; a new UUIDv7 id and a new trace unless given.

        A new event without a correlation id starts a chain: it correlates to itself.
        Headers are the CloudEvents binding's (see ``_wire``), built directly from
        per-class pre-encoded parts: this runs for every published event.
        """
        now_ms = self._clock_ms()
        if event_id is None:
            event_id = new_event_id(now_ms, self._random_bits(74))
        return self.build_with(
            event,
            topic,
            key,
            event_id,
            correlation_id or event_id,
            causation_id,
            traceparent or self.trace_for(None),
            headers,
            now_ms,
        )

    def build_with(  # noqa: PLR0917 - positional on purpose: runs for every publish
        self,
        event: Event,
        topic: str,
        key: str | bytes | None,
        event_id: str,
        correlation_id: str,
        causation_id: str | None,
        traceparent: str,
        headers: Sequence[tuple[str, bytes]],
        now_ms: int | None = None,
    ) -> Built:
        """:meth:`build` with every attribute given, positionally (a handler's publishes)."""
        cls = type(event)
        parts = self._parts.get(cls)
        if parts is None:
            if not isinstance(event, Event):
                raise TypeError(f"publish() takes an Event, got {cls.__name__}")
            parts = self._parts_of(cls)
        serializer, type_header, content_type_header = parts
        if now_ms is None:
            now_ms = self._clock_ms()
        cached_ms, time_header = self._time
        if cached_ms != now_ms:
            time_header = (EVENT_TIME, format_ce_time(now_ms).encode())
            self._time = (now_ms, time_header)
        record_headers = [
            _SPEC_VERSION_HEADER,
            (EVENT_ID, event_id.encode()),
            type_header,
            self._source_header,
            content_type_header,
            time_header,
            (CORRELATION_ID, correlation_id.encode()),
            (TRACEPARENT, traceparent.encode()),
        ]
        if causation_id is not None:
            record_headers.append((CAUSATION_ID, causation_id.encode()))
        if headers:
            record_headers.extend(headers)
        if key is not None and not isinstance(key, bytes):
            key = key.encode()
        record = OutgoingRecord(topic, key, serializer.encode(event, topic=topic), record_headers)
        return Built(record, event_id, cls.__event_type__)

    def _parts_of(
        self, cls: type[Event]
    ) -> tuple[Serializer, tuple[str, bytes], tuple[str, bytes]]:
        serializer = self.serializer_for(cls)
        parts = (
            serializer,
            (EVENT_TYPE, cls.__event_type__.encode()),
            (CONTENT_TYPE, serializer.content_type.encode()),
        )
        self._parts[cls] = parts
        return parts
