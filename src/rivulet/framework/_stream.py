"""Stream processing: filter, map and route events to other topics, declared in a line.

A stream is a handler written as data::

    app.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")

Several ``.to`` calls on one source (or on streams derived from it) are branches of
the same handler: each event is consumed once and evaluated against every branch.
Published events keep the consumed record's key unless ``key=`` says otherwise, and get
derived ids, so a redelivered event republishes the same ids.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from rivulet.framework._events import Event

if TYPE_CHECKING:
    from rivulet.framework._context import Context

__all__ = ["Stream", "StreamRoot"]

T = TypeVar("T")
U = TypeVar("U")
E = TypeVar("E", bound=Event)

# A step is (is_filter, function): filters drop values, maps replace them.
_Step = tuple[bool, Callable[[Any], Any]]


@dataclass(frozen=True, slots=True)
class _Sink:
    steps: tuple[_Step, ...]
    topic: str
    key: Callable[[Any], str | bytes | None] | None
    model: type[Event] | None


class StreamRoot(Generic[T]):
    """The source of a stream: owns the branches and runs them as one handler."""

    __slots__ = ("_sinks", "model", "topic")

    def __init__(self, topic: str, model: type[T]) -> None:
        self.topic = topic
        self.model = model
        self._sinks: list[_Sink] = []

    def add(self, sink: _Sink) -> None:
        self._sinks.append(sink)

    def publications(self) -> tuple[tuple[str, tuple[type[Event], ...]], ...]:
        """(topic, event models) of every branch; models are empty when unknown."""
        return tuple((s.topic, (s.model,) if s.model else ()) for s in self._sinks)

    async def handle(self, event: T, ctx: Context) -> None:
        """Run every branch on ``event``."""
        for sink in self._sinks:
            value: Any = event
            for is_filter, fn in sink.steps:
                if is_filter:
                    if not fn(value):
                        break
                else:
                    value = fn(value)
            else:
                key = sink.key(value) if sink.key is not None else ctx.key
                await ctx.publish(sink.topic, value, key=key)


class Stream(Generic[T]):
    """A typed, immutable pipeline description; each method returns a new stream.

    >>> from rivulet import App, Event
    >>> class OrderPlaced(Event):
    ...     order_id: str
    ...     total: int
    >>> app = App("large-orders")
    >>> app.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")
    >>> [(h.topics, h.group) for h in app.handlers]
    [(('orders',), 'large-orders')]
    """

    __slots__ = ("_model", "_root", "_steps")

    def __init__(self, root: StreamRoot[Any], steps: tuple[_Step, ...], model: type[Any] | None):
        self._root = root
        self._steps = steps
        self._model = model

    def filter(self, predicate: Callable[[T], bool]) -> Stream[T]:
        """Keep the values for which ``predicate`` is true."""
        return Stream(self._root, (*self._steps, (True, predicate)), self._model)

    def map(self, fn: Callable[[T], U]) -> Stream[U]:
        """Replace each value by ``fn(value)`` (an Event, by the time it reaches ``to``)."""
        return Stream(self._root, (*self._steps, (False, fn)), _return_type(fn))

    def to(
        self: Stream[E], topic: str, *, key: Callable[[E], str | bytes | None] | None = None
    ) -> None:
        """Publish every value reaching this point to ``topic``."""
        model = self._model if isinstance(self._model, type) else None
        event_model = model if model is not None and issubclass(model, Event) else None
        self._root.add(_Sink(self._steps, topic, key, event_model))


def _return_type(fn: Callable[..., Any]) -> type[Any] | None:
    try:
        hint = typing.get_type_hints(fn).get("return")
    except (NameError, TypeError):
        return None
    return hint if isinstance(hint, type) else None
