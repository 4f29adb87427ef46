"""The app described as data: topics, groups, handlers, event types and their schemas.

Used by the docs export (AsyncAPI 3), the console, and the Kubernetes manifest
generator (KafkaTopic resources from :attr:`Topology.topics`, consumer groups from
:attr:`Topology.groups`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic.json_schema import models_json_schema

from rivulet.framework._events import Event
from rivulet.framework._retry import dead_letter_topic

if TYPE_CHECKING:
    from rivulet.framework._app import App

__all__ = ["HandlerInfo", "TopicInfo", "Topology", "topology_of"]

TopicRole = Literal["events", "retry", "dead-letter"]

_COMPONENT_KEY = re.compile(r"[^A-Za-z0-9._-]")
_KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """One handler or stream."""

    name: str
    kind: Literal["handler", "stream"]
    group: str
    topics: tuple[str, ...]
    event_types: tuple[str, ...]
    concurrency: int
    idempotent: bool
    park_failed_keys: bool
    retry_topics: tuple[str, ...]
    dead_letter_topics: tuple[str, ...]
    #: (topic, event types) it publishes; types may be empty when unknown.
    publishes: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """One topic the app touches."""

    name: str
    role: TopicRole
    consumed_by: tuple[str, ...]
    produced: bool
    event_types: tuple[str, ...]
    partitions: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Topology:
    """Everything the app declares, as plain data."""

    app: str
    version: str
    description: str
    handlers: tuple[HandlerInfo, ...]
    topics: tuple[TopicInfo, ...]
    groups: tuple[str, ...]
    events: Mapping[str, type[Event]]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, with each event type's JSON Schema."""
        return {
            "app": self.app,
            "version": self.version,
            "description": self.description,
            "groups": list(self.groups),
            "handlers": [
                {
                    "name": h.name,
                    "kind": h.kind,
                    "group": h.group,
                    "topics": list(h.topics),
                    "event_types": list(h.event_types),
                    "concurrency": h.concurrency,
                    "idempotent": h.idempotent,
                    "park_failed_keys": h.park_failed_keys,
                    "retry_topics": list(h.retry_topics),
                    "dead_letter_topics": list(h.dead_letter_topics),
                    "publishes": [
                        {"topic": topic, "event_types": list(types)} for topic, types in h.publishes
                    ],
                }
                for h in self.handlers
            ],
            "topics": [
                {
                    "name": t.name,
                    "role": t.role,
                    "consumed_by": list(t.consumed_by),
                    "produced": t.produced,
                    "event_types": list(t.event_types),
                    "partitions": t.partitions,
                    "config": dict(t.config),
                }
                for t in self.topics
            ],
            "events": {
                name: {
                    "model": f"{model.__module__}.{model.__qualname__}",
                    "schema": model.model_json_schema(),
                }
                for name, model in self.events.items()
            },
        }

    def asyncapi(self, *, servers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """An AsyncAPI 3.0 document: channels per topic, operations per handler and publish.

        ``servers`` maps a server name to a ``host:port`` (protocol ``kafka``).
        """
        return _asyncapi(self, servers or {})


def topology_of(app: App) -> Topology:
    """Collect the topology of ``app``'s declarations."""
    handlers: list[HandlerInfo] = []
    events: dict[str, type[Event]] = {}
    consumed: dict[str, dict[str, None]] = {}
    produced: dict[str, dict[str, None]] = {}
    roles: dict[str, TopicRole] = {}

    def note_types(target: dict[str, dict[str, None]], topic: str, types: tuple[str, ...]) -> None:
        target.setdefault(topic, {}).update(dict.fromkeys(types))

    for spec in app.handlers:
        for model in spec.models:
            events[model.__event_type__] = model
        types = tuple(m.__event_type__ for m in spec.models)
        retry_topics: dict[str, None] = {}
        dead_letters: dict[str, None] = {}
        for topic in spec.topics:
            roles.setdefault(topic, "events")
            note_types(consumed, topic, types)
            for retry in spec.retry.retry_topics(topic):
                retry_topics[retry] = None
                roles[retry] = "retry"
                note_types(consumed, retry, types)
                note_types(produced, retry, types)
            dlt = dead_letter_topic(topic)
            dead_letters[dlt] = None
            roles[dlt] = "dead-letter"
            note_types(produced, dlt, types)
        publishes: list[tuple[str, tuple[str, ...]]] = []
        for topic, models in spec.publications():
            for model in models:
                events[model.__event_type__] = model
            names = tuple(m.__event_type__ for m in models)
            publishes.append((topic, names))
            roles.setdefault(topic, "events")
            note_types(produced, topic, names)
        handlers.append(
            HandlerInfo(
                name=spec.name,
                kind="stream" if spec.stream is not None else "handler",
                group=spec.group,
                topics=spec.topics,
                event_types=types,
                concurrency=spec.concurrency,
                idempotent=spec.idempotent,
                park_failed_keys=spec.park_failed_keys,
                retry_topics=tuple(retry_topics),
                dead_letter_topics=tuple(dead_letters),
                publishes=tuple(publishes),
            )
        )
    for topic, models in app.app_publications:
        for model in models:
            events[model.__event_type__] = model
        roles.setdefault(topic, "events")
        note_types(produced, topic, tuple(m.__event_type__ for m in models))
    for name in app.topics:
        roles.setdefault(name, "events")

    groups_of: dict[str, dict[str, None]] = {}
    for spec in app.handlers:
        for topic in spec.topics:
            groups_of.setdefault(topic, {})[spec.group] = None
            for retry in spec.retry.retry_topics(topic):
                groups_of.setdefault(retry, {})[spec.group] = None
    topics = []
    for name, role in roles.items():
        declared = app.topics.get(name)
        topic_types = {**consumed.get(name, {}), **produced.get(name, {})}
        topics.append(
            TopicInfo(
                name=name,
                role=role,
                consumed_by=tuple(groups_of.get(name, {})),
                produced=name in produced,
                event_types=tuple(topic_types),
                partitions=declared.partitions if declared else None,
                config=dict(declared.config or {}) if declared else {},
            )
        )
    groups = tuple(dict.fromkeys(spec.group for spec in app.handlers))
    return Topology(
        app=app.name,
        version=app.version,
        description=app.description,
        handlers=tuple(handlers),
        topics=tuple(topics),
        groups=groups,
        events=events,
    )


def _key(name: str) -> str:
    return _COMPONENT_KEY.sub("_", name)


def _ref(*parts: str) -> dict[str, str]:
    escaped = (p.replace("~", "~0").replace("/", "~1") for p in parts)
    return {"$ref": "#/" + "/".join(escaped)}


def _headers_schema(event_type: str) -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "description": "CloudEvents Kafka binding (binary mode), W3C trace context",
        "required": ["ce_id", "ce_type", "ce_source", "ce_specversion"],
        "properties": {
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_id": text,
            "ce_type": {"type": "string", "const": event_type},
            "ce_source": text,
            "ce_time": {"type": "string", "format": "date-time"},
            "content-type": text,
            "ce_correlationid": text,
            "ce_causationid": text,
            "traceparent": text,
        },
    }


def _asyncapi(topology: Topology, servers: Mapping[str, str]) -> dict[str, Any]:
    models = list(topology.events.values())
    refs, schema = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = dict(schema.get("$defs", {}))
    messages: dict[str, Any] = {}
    message_key: dict[str, str] = {}
    for name, model in topology.events.items():
        key = _key(name)
        message_key[name] = key
        messages[key] = {
            "name": name,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().split("\n")[0] or name,
            "contentType": model.__content_type__ or "application/json",
            "payload": refs[(model, "validation")],
            "headers": _headers_schema(name),
            "correlationId": {"location": "$message.header#/ce_correlationid"},
            "bindings": {
                "kafka": {"key": {"type": "string"}, "bindingVersion": _KAFKA_BINDING_VERSION}
            },
        }
    channels: dict[str, Any] = {}
    for info in topology.topics:
        descriptions = {
            "events": "Events",
            "retry": "Retry hop (records wait for retry_topic-backoff-timestamp)",
            "dead-letter": "Dead letters, with Spring Kafka's kafka_dlt-* headers",
        }
        channels[_key(info.name)] = {
            "address": info.name,
            "description": descriptions[info.role],
            "messages": {
                message_key[t]: _ref("components", "messages", message_key[t])
                for t in info.event_types
            },
        }
    operations: dict[str, Any] = {}
    for handler in topology.handlers:
        for topic in handler.topics:
            operations[_unique(operations, _key(f"{handler.name}.receive.{topic}"))] = {
                "action": "receive",
                "title": handler.name,
                "channel": _ref("channels", _key(topic)),
                "messages": [
                    _ref("channels", _key(topic), "messages", message_key[t])
                    for t in handler.event_types
                ],
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [handler.group]},
                        "bindingVersion": _KAFKA_BINDING_VERSION,
                    }
                },
            }
        for topic, types in handler.publishes:
            operations[_unique(operations, _key(f"{handler.name}.send.{topic}"))] = {
                "action": "send",
                "title": handler.name,
                "channel": _ref("channels", _key(topic)),
                "messages": [
                    _ref("channels", _key(topic), "messages", message_key[t]) for t in types
                ],
            }
    for info in topology.topics:
        if (
            info.role == "events"
            and info.produced
            and not any(
                info.name == published for h in topology.handlers for published, _ in h.publishes
            )
        ):
            operations[_unique(operations, _key(f"{topology.app}.send.{info.name}"))] = {
                "action": "send",
                "channel": _ref("channels", _key(info.name)),
                "messages": [
                    _ref("channels", _key(info.name), "messages", message_key[t])
                    for t in info.event_types
                ],
            }
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {"title": topology.app, "version": topology.version},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
    if topology.description:
        document["info"]["description"] = topology.description
    if servers:
        document["servers"] = {
            _key(name): {"host": host, "protocol": "kafka"} for name, host in servers.items()
        }
    return document


def _unique(taken: Mapping[str, Any], key: str) -> str:
    candidate, n = key, 2
    while candidate in taken:
        candidate = f"{key}_{n}"
        n += 1
    return candidate
