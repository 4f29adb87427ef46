"""Identifiers and timestamps carried on the wire: event ids, ``ce_time`` and W3C trace context.

Everything here is pure: time and randomness come in as arguments.

* New event ids are UUIDv7 (RFC 9562): a 48-bit Unix millisecond timestamp followed by
  random bits, so ids sort by creation time and keep database indexes append-mostly.
* Events published by a handler get *derived* ids (UUIDv5 of the consuming group, the
  consumed event id and the publish's index), so a redelivered event republishes
  exactly the same ids and downstream idempotent consumers drop the duplicates.
* ``traceparent`` is the W3C Trace Context header: ``00-<trace id>-<span id>-<flags>``.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "TraceParent",
    "derived_event_id",
    "format_ce_time",
    "new_event_id",
    "parse_ce_time",
]

_DERIVED_NAMESPACE = uuid.UUID("6f1c1c2e-8d43-4f7a-9b0e-1f6a1c3c9a51").bytes


def new_event_id(now_ms: int, random_bits: int) -> str:
    """A UUIDv7 string from a Unix timestamp in ms and 74 random bits (more are masked off).

    >>> new_event_id(0x0190F5A2B3C4, 0)
    '0190f5a2-b3c4-7000-8000-000000000000'
    """
    value = (now_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((random_bits >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # RFC 9562 variant
    value |= random_bits & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    return _format_uuid(value.to_bytes(16, "big"))


def derived_event_id(group: str, cause_id: str, index: int) -> str:
    """The id of the ``index``-th event published while ``group`` handled event ``cause_id``.

    A UUIDv5 (SHA-1 name-based) in a namespace of Rivulet's own: the same value as
    ``str(uuid.uuid5(namespace, f"{group}\\n{cause_id}\\n{index}"))``.

    >>> derived_event_id("inventory", "e-1", 0) == derived_event_id("inventory", "e-1", 0)
    True
    """
    # Runs for every published event: hash from a copy of the namespace's state, and set
    # the version and variant on the hex digits rather than on a bytearray.
    sha = _DERIVED_STATE.copy()
    sha.update(f"{group}\n{cause_id}\n{index}".encode())
    h = sha.hexdigest()
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_DERIVED_STATE = hashlib.sha1(_DERIVED_NAMESPACE, usedforsecurity=False)
# The RFC 9562 variant: the top two bits of the ninth byte are 0b10.
_VARIANT = {f"{d:x}": f"{(d & 0x3) | 0x8:x}" for d in range(16)}


def _format_uuid(raw: bytes) -> str:
    # str(uuid.UUID(...)) costs twice as much; ids are minted for every published event.
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_time_cache: tuple[int, str] = (-1, "")


def format_ce_time(now_ms: int) -> str:
    """RFC 3339 UTC time with milliseconds, as CloudEvents ``time`` wants it.

    >>> format_ce_time(1714564800123)
    '2024-05-01T12:00:00.123Z'
    """
    global _time_cache  # noqa: PLW0603 - a one-entry cache: most events share their second
    seconds, millis = divmod(now_ms, 1000)
    cached_seconds, prefix = _time_cache
    if cached_seconds != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _time_cache = (seconds, prefix)
    return f"{prefix}.{millis:03d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def parse_ce_time(text: str) -> int | None:
    """Unix ms of an RFC 3339 timestamp with an offset, or ``None`` when it is not one.

    >>> parse_ce_time("2024-05-01T14:00:00.123+02:00")
    1714564800123
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - _EPOCH) // _ONE_MS


_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# The whole of a 55-character traceparent, for the per-record path (no groups to build).
_TRACEPARENT_55 = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_MASK_128 = (1 << 128) - 1
_MASK_64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A W3C ``traceparent`` value.

    >>> parent = TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    >>> parent.child(0x1234).header()
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000001234-01'
    """

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def parse(cls, text: str) -> TraceParent | None:
        """Parse a header value; ``None`` when invalid (the spec says: start a new trace)."""
        match = _TRACEPARENT.match(text)
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        if version == "00" and len(text) != 55:
            return None
        return cls(trace_id, span_id, flags)

    @classmethod
    def new(cls, trace_bits: int, span_bits: int) -> TraceParent:
        """Start a new sampled trace from random bits (zero ids are invalid, so they are bumped)."""
        trace = (trace_bits & _MASK_128) or 1
        span = (span_bits & _MASK_64) or 1
        return cls(f"{trace:032x}", f"{span:016x}")

    def child(self, span_bits: int) -> TraceParent:
        """The context of a span started inside this one."""
        span = (span_bits & _MASK_64) or 1
        return TraceParent(self.trace_id, f"{span:016x}", self.flags)

    def header(self) -> str:
        """The header value."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    @staticmethod
    def new_header(trace_bits: int, span_bits: int) -> str:
        """``TraceParent.new(trace_bits, span_bits).header()``, without the object.

        Runs for every handled event that starts a trace: the ids are hexed from one
        24-byte string (formatting 128-bit ints with ``:032x`` costs several times more).
        """
        digits = (((trace_bits & _MASK_128) << 64) | (span_bits & _MASK_64)).to_bytes(24).hex()
        trace, span = digits[:32], digits[32:]
        if trace == _ZERO_TRACE or span == _ZERO_SPAN:  # zero ids are invalid: bump them
            return TraceParent.new(trace_bits, span_bits).header()
        return f"00-{trace}-{span}-01"

    @staticmethod
    def child_header(parent: str, span_bits: int) -> str | None:
        """``TraceParent.parse(parent).child(span_bits).header()``, without the objects.

        ``None`` when ``parent`` is not a valid ``traceparent`` of the version-00 shape.
        Runs for every handled event that publishes.
        """
        if _TRACEPARENT_55.fullmatch(parent) is None or parent.startswith("ff"):
            return None
        if parent[3:35] == _ZERO_TRACE or parent[36:52] == _ZERO_SPAN:
            return None
        span = (span_bits & _MASK_64) or 1
        # Version 00 whatever the parent's: a context is passed on in the version we speak.
        return f"00-{parent[3:36]}{span.to_bytes(8).hex()}{parent[52:]}"
