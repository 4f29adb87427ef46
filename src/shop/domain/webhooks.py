"""Webhooks: which subscriber gets which event, how a delivery is signed and verified.

Deliveries follow the Standard Webhooks conventions, so receivers can verify them with
existing libraries:

========================  ==============================================================
Header                    Value
========================  ==============================================================
``webhook-id``            the delivery id, stable across retries
``webhook-timestamp``     seconds since the epoch when this attempt was signed
``webhook-signature``     ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``
``idempotency-key``       the delivery id again, under the name HTTP APIs use for it
========================  ==============================================================

A receiver applies a delivery once per idempotency key and verifies the signature with
the subscription's secret, rejecting stale timestamps (replays).

>>> headers = sign("whd_1", b'{"a":1}', secret="s3cret", now_s=1_700_000_000)
>>> verify(headers, b'{"a":1}', secret="s3cret", now_s=1_700_000_010)
True
>>> verify(headers, b'{"a":2}', secret="s3cret", now_s=1_700_000_010)
False
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass

__all__ = [
    "IDEMPOTENCY_KEY",
    "SIGNATURE",
    "TIMESTAMP",
    "WEBHOOK_ID",
    "Subscription",
    "delivery_id",
    "sign",
    "verify",
]

WEBHOOK_ID = "webhook-id"
TIMESTAMP = "webhook-timestamp"
SIGNATURE = "webhook-signature"
IDEMPOTENCY_KEY = "idempotency-key"

_TOLERANCE_S = 300


@dataclass(frozen=True, slots=True)
class Subscription:
    """A registered HTTP endpoint and the event types it wants."""

    id: str
    url: str
    secret: str
    event_types: frozenset[str]

    def wants(self, event_type: str) -> bool:
        """Whether this subscriber receives events of ``event_type`` (``*`` for all)."""
        return event_type in self.event_types or "*" in self.event_types


def delivery_id(subscription_id: str, event_id: str) -> str:
    """The id (and idempotency key) of delivering ``event_id`` to a subscriber.

    The same event reaching the service twice yields the same id, so the receiver
    applies it once.

    >>> delivery_id("sub-1", "ev-1") == delivery_id("sub-1", "ev-1") != delivery_id("sub-2", "ev-1")
    True
    """
    digest = hashlib.sha256(f"{subscription_id}\x00{event_id}".encode()).hexdigest()
    return f"whd_{digest[:32]}"


def _signature(message_id: str, timestamp: int, body: bytes, secret: str) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign(message_id: str, body: bytes, *, secret: str, now_s: int) -> dict[str, str]:
    """The headers of one delivery attempt of ``body``."""
    return {
        WEBHOOK_ID: message_id,
        TIMESTAMP: str(now_s),
        SIGNATURE: _signature(message_id, now_s, body, secret),
        IDEMPOTENCY_KEY: message_id,
    }


def verify(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: str,
    now_s: int,
    tolerance_s: int = _TOLERANCE_S,
) -> bool:
    """Whether a delivery's signature is valid and recent (header names in lower case)."""
    message_id = headers.get(WEBHOOK_ID)
    raw_timestamp = headers.get(TIMESTAMP, "")
    offered: Collection[str] = headers.get(SIGNATURE, "").split()
    if not message_id or not raw_timestamp.isdigit():
        return False
    timestamp = int(raw_timestamp)
    if abs(now_s - timestamp) > tolerance_s:
        return False
    expected = _signature(message_id, timestamp, body, secret)
    # Several space-separated signatures are allowed while a secret is rotated.
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
