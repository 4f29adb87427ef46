"""The framework's exceptions: one root, split by who has to act.

* :class:`ConfigurationError`: the service's code or settings are wrong; raised at
  declaration or start-up time, never while records flow.
* :class:`DecodeError` and its subclasses: a record cannot become an event. These are
  never retried (the bytes will not change) and go straight to the dead-letter topic;
  ``reason`` is the short label used in metrics and dead-letter headers.
* :class:`NonRetriableError`: raised by a handler to say "retrying cannot help".
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DecodeError",
    "FrameworkError",
    "InvalidPayloadError",
    "MalformedRecordError",
    "NonRetriableError",
    "PublishError",
    "UnknownEventTypeError",
]


class FrameworkError(Exception):
    """Root of every exception the Rivulet framework raises."""


class ConfigurationError(FrameworkError):
    """The application's declarations or settings are invalid; the message says how to fix them."""


class DecodeError(FrameworkError):
    """A consumed record could not be turned into an event; it is dead-lettered, never retried."""

    reason = "undecodable"


class MalformedRecordError(DecodeError):
    """Required CloudEvents headers are missing or not valid UTF-8."""

    reason = "malformed"


class UnknownEventTypeError(DecodeError):
    """No handler of the consuming group handles the record's ``ce_type``."""

    reason = "unknown-type"


class InvalidPayloadError(DecodeError):
    """The payload is not valid for the event model (bad JSON or failed validation)."""

    reason = "invalid-payload"


class NonRetriableError(FrameworkError):
    """Raise from a handler when retrying cannot succeed: the record goes to the dead-letter topic.

    Example::

        if event.qty <= 0:
            raise NonRetriableError(f"quantity must be positive, got {event.qty}")
    """


class PublishError(FrameworkError):
    """The broker did not confirm a published record (the consumed record will be redelivered)."""
