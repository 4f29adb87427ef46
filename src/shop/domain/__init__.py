"""The shop's business rules as pure code: no I/O; clocks and randomness are parameters.

=====================================  ===============================================
Module                                 Rules
=====================================  ===============================================
:mod:`shop.domain.catalog`             products, prices, stock levels, reorders
:mod:`shop.domain.orders`              pricing a request, order status precedence
:mod:`shop.domain.saga`                the order saga as a transition table
:mod:`shop.domain.inventory`           the event-sourced stock aggregate
:mod:`shop.domain.payments`            the simulated provider and the payment ledger
:mod:`shop.domain.shipping`            one shipment per order
:mod:`shop.domain.analytics`           the projection's commutative fold
:mod:`shop.domain.webhooks`            subscriptions, signing and verification
:mod:`shop.domain.load`                the load generator's baskets and pacing
=====================================  ===============================================
"""

from __future__ import annotations

__all__: list[str] = []
