"""Handler declarations: what ``@app.handler`` records, checked when it is applied."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rivulet.framework._errors import ConfigurationError
from rivulet.framework._events import Event
from rivulet.framework._retry import RetryPolicy

if TYPE_CHECKING:
    from rivulet.framework._stream import StreamRoot

__all__ = ["HandlerFn", "HandlerSpec", "UnknownTypes", "event_models_of", "normalize_publishes"]

#: An async handler: ``async def h(event: SomeEvent, ctx: Context) -> None`` (ctx optional).
HandlerFn = Callable[..., Awaitable[None]]
#: What a group does with records whose event type none of its handlers on the topic takes.
UnknownTypes = Literal["dead-letter", "skip"]


@dataclass(frozen=True, slots=True, eq=False)
class HandlerSpec:
    """One declared handler and its options."""

    name: str
    fn: HandlerFn
    topics: tuple[str, ...]
    group: str
    models: tuple[type[Event], ...]
    takes_context: bool
    concurrency: int = 1
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    idempotent: bool = False
    park_failed_keys: bool = False
    timeout_s: float | None = None
    publishes: tuple[tuple[str, tuple[type[Event], ...]], ...] = ()
    unknown_types: UnknownTypes = "dead-letter"
    stream: StreamRoot[Any] | None = None

    def publications(self) -> tuple[tuple[str, tuple[type[Event], ...]], ...]:
        """Topics this handler publishes to, with their event types (when known)."""
        if self.stream is not None:
            return self.publishes + self.stream.publications()
        return self.publishes


def event_models_of(fn: HandlerFn) -> tuple[tuple[type[Event], ...], bool]:
    """The event models a handler accepts (from its first parameter) and whether it takes ctx."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not inspect.iscoroutinefunction(fn):
        raise ConfigurationError(f"handler {name} must be an async function (async def)")
    params = list(inspect.signature(fn).parameters.values())
    if not 1 <= len(params) <= 2:
        raise ConfigurationError(
            f"handler {name} must take (event) or (event, ctx), not {len(params)} parameters"
        )
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ConfigurationError(
            f"cannot resolve the annotations of handler {name} ({exc}); define its event "
            "classes at module level"
        ) from None
    annotation = hints.get(params[0].name)
    if annotation is None:
        raise ConfigurationError(
            f"annotate the first parameter of handler {name} with the Event subclass it handles"
        )
    models = _union_members(annotation)
    for model in models:
        if not (isinstance(model, type) and issubclass(model, Event)) or model is Event:
            raise ConfigurationError(
                f"handler {name}: {model!r} is not an Event subclass; annotate the event "
                "parameter with your event classes (a union for several)"
            )
    return models, len(params) == 2


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def normalize_publishes(
    publishes: Mapping[str, type[Event] | Sequence[type[Event]]] | None,
) -> tuple[tuple[str, tuple[type[Event], ...]], ...]:
    """``{"topic": Model}`` or ``{"topic": [A, B]}`` as a tuple of (topic, models)."""
    if not publishes:
        return ()
    result = []
    for topic, models in publishes.items():
        group = (models,) if isinstance(models, type) else tuple(models)
        for model in group:
            if not (isinstance(model, type) and issubclass(model, Event)):
                raise ConfigurationError(f"publishes[{topic!r}] must list Event subclasses")
        result.append((topic, group))
    return tuple(result)
