"""Routing records to handlers: per consumer group, per topic, by event type.

A group consumes its handlers' topics plus their retry topics. A record read from a
retry topic (or replayed from a dead-letter topic) is routed by its original topic,
taken from ``kafka_dlt-original-topic``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rivulet.framework._errors import (
    InvalidPayloadError,
    MalformedRecordError,
    UnknownEventTypeError,
)
from rivulet.framework._events import Event
from rivulet.framework._handlers import HandlerSpec, UnknownTypes
from rivulet.framework._publishing import EventEncoder
from rivulet.framework._retry import main_topic_of
from rivulet.framework._wire import ConsumedRecord, Envelope, decode_envelope

__all__ = ["Decoded", "GroupRoutes", "Route", "build_routes", "decode"]


@dataclass(frozen=True, slots=True)
class Route:
    """The handlers of one group for one (main) topic."""

    group: str
    topic: str
    by_type: Mapping[str, tuple[HandlerSpec, type[Event]]]
    concurrency: int
    unknown_types: UnknownTypes
    park_failed_keys: bool
    retry_topics: tuple[str, ...]

    def resolve(self, event_type: str | None) -> tuple[HandlerSpec, type[Event]] | None:
        """The handler and model for an event type; ``None`` means skip the record."""
        if event_type is None:
            if len(self.by_type) == 1:
                return next(iter(self.by_type.values()))
            raise MalformedRecordError(
                f"record has no ce_type header, and group {self.group!r} takes several event "
                f"types on topic {self.topic!r}: {sorted(self.by_type)}"
            )
        found = self.by_type.get(event_type)
        if found is None and self.unknown_types == "dead-letter":
            raise UnknownEventTypeError(
                f"group {self.group!r} has no handler for event type {event_type!r} on topic "
                f"{self.topic!r} (it handles {sorted(self.by_type)}); declare one, or "
                'unknown_types="skip" if other types on this topic are expected'
            )
        return found


@dataclass(frozen=True, slots=True)
class GroupRoutes:
    """Everything one consumer group consumes."""

    group: str
    routes: Mapping[str, Route]

    @property
    def topics(self) -> tuple[str, ...]:
        """Main topics and retry topics, the group's subscription."""
        names: dict[str, None] = {}
        for route in self.routes.values():
            names[route.topic] = None
            names.update(dict.fromkeys(route.retry_topics))
        return tuple(names)

    def route_for(self, record: ConsumedRecord) -> Route | None:
        """The route of a record, by its original topic."""
        return self.routes.get(main_topic_of(record))

    def route_for_topic(self, topic: str) -> Route | None:
        """The route consuming ``topic``, a main topic or one of its retry topics."""
        route = self.routes.get(topic)
        if route is not None:
            return route
        for candidate in self.routes.values():
            if topic in candidate.retry_topics:
                return candidate
        return None


def build_routes(handlers: Iterable[HandlerSpec]) -> dict[str, GroupRoutes]:
    """Group the app's handlers by consumer group and topic (declarations were checked)."""
    by_group: dict[str, dict[str, list[HandlerSpec]]] = {}
    for spec in handlers:
        for topic in spec.topics:
            by_group.setdefault(spec.group, {}).setdefault(topic, []).append(spec)
    result: dict[str, GroupRoutes] = {}
    for group, topics in by_group.items():
        routes: dict[str, Route] = {}
        for topic, specs in topics.items():
            by_type = {m.__event_type__: (spec, m) for spec in specs for m in spec.models}
            retry_topics = {t: None for spec in specs for t in spec.retry.retry_topics(topic)}
            first = specs[0]
            routes[topic] = Route(
                group=group,
                topic=topic,
                by_type=by_type,
                concurrency=first.concurrency,
                unknown_types=first.unknown_types,
                park_failed_keys=first.park_failed_keys,
                retry_topics=tuple(retry_topics),
            )
        result[group] = GroupRoutes(group, routes)
    return result


@dataclass(slots=True)
class Decoded:
    """A record turned into a validated event, with its handler."""

    spec: HandlerSpec
    event: Event
    envelope: Envelope


def decode(record: ConsumedRecord, route: Route, encoder: EventEncoder) -> Decoded | None:
    """Envelope, handler and validated event of a record; ``None`` when the group skips it.

    Raises a :class:`~rivulet.framework.DecodeError` subclass for records to dead-letter.
    """
    envelope = decode_envelope(record)
    found = route.resolve(envelope.type)
    if found is None:
        return None
    spec, model = found
    value = record.value
    if value is None:
        raise InvalidPayloadError("record has no value (a tombstone), so it is not an event")
    serializer = encoder.decoder_for(envelope.content_type)
    event = serializer.decode(value, model, topic=route.topic)
    return Decoded(spec, event, envelope)
