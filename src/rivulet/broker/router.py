"""API key -> handler, and the shape every handler has.

A :class:`Handler` pairs one Kafka API key with the version range it implements
and an ``async def handle(ctx, request)``. The :class:`Router` refuses two
handlers for one key, refuses ranges kio has no schemas for, and builds the
ApiVersions answer from what is registered, so the broker advertises exactly
what it serves. See :mod:`rivulet.broker.handlers` for how to write one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rivulet.protocol.messages import (
    BodyReader,
    RequestHeader,
    request_class,
    response_class,
    supported_versions,
)
from rivulet.storage.base import ReadChunk

if TYPE_CHECKING:
    from rivulet.broker.core import Broker

__all__ = [
    "EncodedResponse",
    "HandleFn",
    "Handler",
    "RequestContext",
    "Response",
    "Router",
]


@dataclass(frozen=True, slots=True)
class EncodedResponse:
    """A response a handler framed itself: bytes and log chunks, sent in order.

    Fetch uses it so record data goes from the log to the socket without being
    copied into a response object (see :mod:`rivulet.protocol.fetch`).
    """

    pieces: Sequence[bytes | ReadChunk]


Response = Mapping[str, Any] | EncodedResponse
"""What a handler returns: a version-neutral mapping (encoded for the request's
version by :func:`rivulet.protocol.messages.encode_response`) or pre-encoded pieces."""


@dataclass(slots=True)
class RequestContext:
    """What a handler gets besides the request body."""

    broker: Broker
    header: RequestHeader
    client_host: str

    @property
    def api_version(self) -> int:
        return self.header.api_version

    def now_ms(self) -> int:
        """Wall-clock milliseconds from the broker's injected clock."""
        return self.broker.clock()


HandleFn = Callable[[RequestContext, Any], Awaitable[Response | None]]
"""``async def handle(ctx, request) -> Response | None``; ``None`` sends no response."""


@dataclass(frozen=True, slots=True)
class Handler:
    """One Kafka API: its key, the versions implemented (inclusive) and the code.

    ``read_body``, when given, reads request bodies instead of kio (Produce: so
    record data stays where it was received).
    """

    api_key: int
    min_version: int
    max_version: int
    handle: HandleFn
    name: str
    read_body: BodyReader | None = None

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


class Router:
    """The registered handlers, looked up by API key and version."""

    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._handlers: dict[int, Handler] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: Handler) -> None:
        """Add ``handler``. Raises ``ValueError`` for a duplicate key or an
        unencodable version range (a programming error, found at start-up)."""
        existing = self._handlers.get(handler.api_key)
        if existing is not None:
            raise ValueError(
                f"API key {handler.api_key} already has a handler ({existing.name}); "
                f"refusing {handler.name}"
            )
        if handler.min_version > handler.max_version:
            raise ValueError(f"{handler.name}: empty version range")
        known = set(supported_versions(handler.api_key))
        missing = [
            v
            for v in range(handler.min_version, handler.max_version + 1)
            if v not in known or request_class(handler.api_key, v) is None
        ]
        if missing:
            raise ValueError(
                f"{handler.name} claims versions {missing} of API key {handler.api_key}, "
                "which the kio codec has no schema for"
            )
        for version in range(handler.min_version, handler.max_version + 1):
            response_class(handler.api_key, version)  # raises if kio lacks it
        self._handlers[handler.api_key] = handler

    def lookup(self, api_key: int, api_version: int) -> Handler | None:
        """The handler for this key and version, or ``None`` if either is unsupported."""
        handler = self._handlers.get(api_key)
        if handler is None or not handler.supports(api_version):
            return None
        return handler

    def api_versions(self) -> list[tuple[int, int, int]]:
        """``(api_key, min_version, max_version)`` for every handler, by key."""
        return [
            (h.api_key, h.min_version, h.max_version) for _, h in sorted(self._handlers.items())
        ]

    def __contains__(self, api_key: object) -> bool:
        return api_key in self._handlers
