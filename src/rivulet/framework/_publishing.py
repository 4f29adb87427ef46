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
from rivulet.framework._wire import Envelope, OutgoingRecord, Serializer, build_record

__all__ = ["Built", "EventEncoder"]


@dataclass(frozen=True, slots=True)
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

    def trace_for(self, parent: str | None) -> TraceParent:
        """A child of ``parent`` (a ``traceparent`` value), or a new trace."""
        context = TraceParent.parse(parent) if parent else None
        if context is None:
            return TraceParent.new(self._random_bits(128), self._random_bits(64))
        return context.child(self._random_bits(64))

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
        """
        if not isinstance(event, Event):
            raise TypeError(f"publish() takes an Event, got {type(event).__name__}")
        now_ms = self._clock_ms()
        if event_id is None:
            event_id = new_event_id(now_ms, self._random_bits(74))
        envelope = Envelope(
            id=event_id,
            type=None,
            source=self.source,
            time=format_ce_time(now_ms),
            content_type=None,
            correlation_id=correlation_id or event_id,
            causation_id=causation_id,
            traceparent=traceparent or self.trace_for(None).header(),
        )
        record = build_record(
            event,
            topic=topic,
            key=key,
            serializer=self.serializer_for(type(event)),
            envelope=envelope,
            extra_headers=headers,
        )
        return Built(record, event_id, event.__event_type__)
