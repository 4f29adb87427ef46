"""The shop's services as data: what ``rivulet up`` starts and deployment renders.

Each entry names the app (``module:attribute``, for ``rivulet run``) and the default
port of its JSON API (``SHOP_HTTP``). Topics, groups and event types are not repeated
here: every app describes them itself (``app.topology()``).

>>> [s.name for s in SERVICES][:3]
['orders', 'order-saga', 'inventory']
>>> by_name("orders").app
'shop.orders:app'
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SERVICES", "Service", "by_name"]


@dataclass(frozen=True, slots=True)
class Service:
    """One service of the shop."""

    #: The app's name (also its consumer group and database name).
    name: str
    #: ``module:attribute`` of its :class:`~rivulet.App`.
    app: str
    #: Default port of its JSON API (``None``: it has none).
    api_port: int | None
    #: What it does, for ``rivulet up``'s screen.
    summary: str

    @property
    def module(self) -> str:
        """The module defining the app."""
        return self.app.partition(":")[0]


SERVICES = (
    Service("orders", "shop.orders:app", 8080, "HTTP API, outbox"),
    Service("order-saga", "shop.saga:app", 8081, "orchestrates each order"),
    Service("inventory", "shop.inventory:app", 8082, "event-sourced stock"),
    Service("payments", "shop.payments:app", 8083, "simulated card provider"),
    Service("shipping", "shop.shipping:app", 8084, "one shipment per order"),
    Service("analytics", "shop.analytics:app", 8085, "streaming projection"),
    Service("notifications", "shop.notifications:app", 8086, "signed webhooks"),
    Service("large-orders", "shop.large_orders:app", None, "stream: big orders"),
)
"""Every service, in start order (producers of commands before their consumers)."""


def by_name(name: str) -> Service:
    """The service called ``name``."""
    for service in SERVICES:
        if service.name == name:
            return service
    raise KeyError(f"no shop service {name!r}; known: {', '.join(s.name for s in SERVICES)}")
