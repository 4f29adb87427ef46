"""The Rivulet service framework: typed events, handlers, retries, idempotency, outbox.

Service code imports from :mod:`rivulet` (``from rivulet import App, Event, Context``);
this package holds the full public surface, everything else is private.
"""

from __future__ import annotations

from rivulet.framework._app import App, TopicSpec
from rivulet.framework._config import Settings
from rivulet.framework._context import Context, Transaction
from rivulet.framework._errors import (
    ConfigurationError,
    DecodeError,
    FrameworkError,
    InvalidPayloadError,
    MalformedRecordError,
    NonRetriableError,
    PublishError,
    UnknownEventTypeError,
)
from rivulet.framework._events import Event, event_type_of
from rivulet.framework._retry import Backoff, RetryPolicy
from rivulet.framework._runtime import Runtime
from rivulet.framework._stream import Stream
from rivulet.framework._topology import HandlerInfo, TopicInfo, Topology
from rivulet.framework._wire import JsonSerializer, Serializer

__all__ = [
    "App",
    "Backoff",
    "ConfigurationError",
    "Context",
    "DecodeError",
    "Event",
    "FrameworkError",
    "HandlerInfo",
    "InvalidPayloadError",
    "JsonSerializer",
    "MalformedRecordError",
    "NonRetriableError",
    "PublishError",
    "RetryPolicy",
    "Runtime",
    "Serializer",
    "Settings",
    "Stream",
    "TopicInfo",
    "TopicSpec",
    "Topology",
    "Transaction",
    "UnknownEventTypeError",
    "event_type_of",
]
