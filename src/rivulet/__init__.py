"""Rivulet: event-driven Python services on the Kafka protocol.

The service framework's names are importable from here::

    from rivulet import App, Context, Event

The embedded broker lives in :mod:`rivulet.broker`. The framework is imported on first
use of one of its names, so ``import rivulet.broker`` and the CLI do not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rivulet.framework import (
        App,
        Backoff,
        ConfigurationError,
        Context,
        Event,
        FrameworkError,
        NonRetriableError,
        RetryPolicy,
        Settings,
        Stream,
        Transaction,
    )

__all__ = [
    "App",
    "Backoff",
    "ConfigurationError",
    "Context",
    "Event",
    "FrameworkError",
    "NonRetriableError",
    "RetryPolicy",
    "Settings",
    "Stream",
    "Transaction",
    "__version__",
]

__version__ = "0.1.0"

_FRAMEWORK_NAMES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _FRAMEWORK_NAMES:
        value = getattr(importlib.import_module("rivulet.framework"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rivulet' has no attribute {name!r}")
