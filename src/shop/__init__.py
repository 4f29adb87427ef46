"""The reference shop: an e-commerce system built only on Rivulet's public framework API.

Eight services, each its own process (``rivulet run shop.<service>:app``), its own
database, consumer group and metrics/health endpoint:

============================  ==========================================================
Service                       What it does
============================  ==========================================================
:mod:`shop.orders`            HTTP API (FastAPI); an accepted order and its
                              ``OrderPlaced`` event are written in one transaction
:mod:`shop.saga`              the order saga (orchestrator): reserve, authorize, confirm,
                              ship, capture; compensates and cancels on failure or timeout
:mod:`shop.inventory`         stock per SKU, event-sourced with snapshots
:mod:`shop.payments`          a simulated payment provider with idempotency per order
:mod:`shop.shipping`          one shipment per confirmed order, then dispatched
:mod:`shop.analytics`         a streaming projection served as JSON, rebuildable by replay
:mod:`shop.notifications`     HMAC-signed webhooks with retries and a dead-letter topic
:mod:`shop.large_orders`      stream processing: orders above a threshold to ``large-orders``
============================  ==========================================================

The business rules live in :mod:`shop.domain` as pure code (no I/O, injected clock and
randomness); the service modules wire them to the framework. ``rivulet up`` runs the
whole system; docs/shop.md tours it.
"""

from __future__ import annotations

__all__: list[str] = []
