"""Typed events: pydantic v2 models whose class name is their CloudEvents ``type``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from rivulet.framework._errors import ConfigurationError

__all__ = ["Event", "event_type_of"]

# CloudEvents only requires a non-empty string; we also keep it usable as an AsyncAPI
# component name and a Prometheus label value, which rules out spaces and slashes.
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")


class Event(BaseModel):
    """Base class of every event: a frozen pydantic model with an event type.

    The event type (the CloudEvents ``ce_type`` header, used to choose a handler) is the
    class name unless given as a class keyword. Events are immutable facts, so instances
    are frozen; unknown fields in a payload are ignored, so producers may add fields
    without breaking consumers.

    >>> class OrderPlaced(Event):
    ...     order_id: str
    ...     qty: int
    >>> OrderPlaced.__event_type__
    'OrderPlaced'
    >>> class OrderPlacedV2(Event, event_type="shop.order-placed.v2"):
    ...     order_id: str
    >>> event_type_of(OrderPlacedV2(order_id="o-1"))
    'shop.order-placed.v2'
    """

    model_config = ConfigDict(frozen=True)

    __event_type__: ClassVar[str] = "Event"
    #: Content type of the serializer that encodes this model; ``None`` means the app's default.
    __content_type__: ClassVar[str | None] = None

    def __init_subclass__(
        cls,
        *,
        event_type: str | None = None,
        content_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        name = event_type if event_type is not None else cls.__name__
        if not _EVENT_TYPE.match(name):
            raise ConfigurationError(
                f"event type {name!r} of {cls.__qualname__} must start with a letter or digit "
                "and contain only letters, digits and . _ : -"
            )
        cls.__event_type__ = name
        if content_type is not None:
            cls.__content_type__ = content_type


def event_type_of(event: Event | type[Event]) -> str:
    """The event type (``ce_type``) of an event instance or class."""
    return event.__event_type__
