"""The shop's events and topics: the contract between its services.

Every topic has exactly one producing service and is keyed by the order id (so every
event of one order lands in one partition, in order), except ``webhooks``, keyed by
order id as well. Money is in integer cents; times are epoch milliseconds.

==================  ===============  ==================================================
Topic               Producer         Events
==================  ===============  ==================================================
orders              orders           OrderPlaced
order-status        order-saga       OrderConfirmed, OrderShipped, OrderCancelled
inventory-commands  order-saga       ReserveStock, ReleaseStock
inventory           inventory        StockReserved, StockRejected, StockReleased,
                                     StockReplenished
payment-commands    order-saga       AuthorizePayment, VoidPayment, CapturePayment
payments            payments         PaymentAuthorized, PaymentDeclined, PaymentVoided,
                                     PaymentCaptured
shipping-commands   order-saga       CreateShipment
shipments           shipping         ShipmentCreated, ShipmentDispatched
large-orders        large-orders     OrderPlaced (copies of orders above a threshold)
webhooks            notifications    WebhookRequested (one per subscriber and event)
==================  ===============  ==================================================

Encoding (:func:`serializers`): plain JSON by default. When a schema registry is
configured (``RIVULET_SCHEMA_REGISTRY_URL``, which ``rivulet up`` and the Kubernetes
overlays set), every event is JSON validated by a JSON Schema registered in it, in
Confluent's wire format, under the subject ``<topic>-<event type>`` (the
``topic_record`` strategy: most topics carry several event types); each service
registers the schemas of the events it publishes when it starts. Plain JSON records
are still read, so services can switch one at a time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from rivulet import App, Event
from rivulet.framework import JsonSerializer, Serializer

__all__ = [
    "INVENTORY",
    "INVENTORY_COMMANDS",
    "LARGE_ORDERS",
    "ORDERS",
    "ORDER_STATUS",
    "PAYMENTS",
    "PAYMENT_COMMANDS",
    "SHIPMENTS",
    "SHIPPING_COMMANDS",
    "TOPIC_PARTITIONS",
    "WEBHOOKS",
    "AuthorizePayment",
    "CapturePayment",
    "CreateShipment",
    "InventoryEvent",
    "OrderCancelled",
    "OrderConfirmed",
    "OrderLine",
    "OrderPlaced",
    "OrderShipped",
    "OrderStatusEvent",
    "PaymentAuthorized",
    "PaymentCaptured",
    "PaymentDeclined",
    "PaymentEvent",
    "PaymentVoided",
    "ReleaseStock",
    "ReserveStock",
    "ShipmentCreated",
    "ShipmentDispatched",
    "ShipmentEvent",
    "StockLine",
    "StockRejected",
    "StockReleased",
    "StockReplenished",
    "StockReserved",
    "VoidPayment",
    "WebhookRequested",
    "declare_topic",
    "serializers",
]

ORDERS = "orders"
ORDER_STATUS = "order-status"
INVENTORY_COMMANDS = "inventory-commands"
INVENTORY = "inventory"
PAYMENT_COMMANDS = "payment-commands"
PAYMENTS = "payments"
SHIPPING_COMMANDS = "shipping-commands"
SHIPMENTS = "shipments"
LARGE_ORDERS = "large-orders"
WEBHOOKS = "webhooks"

TOPIC_PARTITIONS = 3
"""Partitions of every shop topic: enough to show per-partition lag and to let up to
three replicas of a service share the work."""

# The analytics projection is rebuilt by replaying its source topics from the start,
# so those keep their history (Kafka's retention.ms=-1).
_KEEP_FOREVER = {"retention.ms": "-1"}
_REPLAYED = frozenset({ORDERS, ORDER_STATUS, PAYMENTS, SHIPMENTS})


def declare_topic(app: App, topic: str) -> None:
    """Declare ``topic`` on the app that produces it, with the shop's partitions and configs."""
    app.topic(
        topic, partitions=TOPIC_PARTITIONS, config=_KEEP_FOREVER if topic in _REPLAYED else None
    )


def serializers(environ: Mapping[str, str] | None = None) -> list[Serializer] | None:
    """The serializers of a shop app: JSON Schema through the registry if one is configured.

    ``None`` (no ``RIVULET_SCHEMA_REGISTRY_URL``) leaves the framework's default, plain JSON.
    """
    # The name is rivulet.registry.serde.REGISTRY_URL_ENV, spelled out so that the apps
    # import the registry's client (Avro, HTTP, a tenth of a second) only when they use it.
    url = (os.environ if environ is None else environ).get("RIVULET_SCHEMA_REGISTRY_URL")
    if not url:
        return None
    from rivulet.registry.serde import JsonSchemaSerializer  # noqa: PLC0415

    return [JsonSchemaSerializer(url, subject_strategy="topic_record"), JsonSerializer()]


class StockLine(BaseModel):
    """A quantity of one SKU."""

    model_config = ConfigDict(frozen=True)

    sku: str
    quantity: int = Field(gt=0)


class OrderLine(StockLine):
    """A line of an order: a quantity of one SKU at the price it was sold at."""

    unit_price_cents: int = Field(ge=0)


# --------------------------------------------------------------------- orders


class OrderPlaced(Event):
    """An order was accepted by the orders API (written with the order, via the outbox)."""

    order_id: str
    customer_id: str
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    total_cents: int = Field(ge=0)
    placed_at_ms: int


# --------------------------------------------------------------------- order status (saga)


class OrderConfirmed(Event):
    """Stock is reserved and payment authorized: the shop commits to the order."""

    order_id: str
    at_ms: int


class OrderShipped(Event):
    """The order left the warehouse and its payment was captured (terminal)."""

    order_id: str
    shipment_id: str
    total_cents: int
    placed_at_ms: int
    at_ms: int


class OrderCancelled(Event):
    """The order was cancelled and every step already taken compensated (terminal)."""

    order_id: str
    reason: str
    placed_at_ms: int
    at_ms: int


OrderStatusEvent = OrderConfirmed | OrderShipped | OrderCancelled


# --------------------------------------------------------------------- inventory


class ReserveStock(Event):
    """Command: set the order's lines aside, all or nothing."""

    order_id: str
    lines: tuple[StockLine, ...] = Field(min_length=1)


class ReleaseStock(Event):
    """Command (compensation): give the order's reservation back, if it has one."""

    order_id: str
    reason: str


class StockReserved(Event):
    """Every line of the order was set aside."""

    order_id: str
    lines: tuple[StockLine, ...]


class StockRejected(Event):
    """The order could not be reserved (nothing was set aside)."""

    order_id: str
    reason: str
    short_skus: tuple[str, ...] = ()


class StockReleased(Event):
    """The order's reservation was given back (``lines`` empty if it had none)."""

    order_id: str
    lines: tuple[StockLine, ...] = ()


class StockReplenished(Event):
    """The warehouse received stock (initial stocking and reorders)."""

    sku: str
    quantity: int = Field(gt=0)


InventoryEvent = StockReserved | StockRejected | StockReleased | StockReplenished


# --------------------------------------------------------------------- payments


class AuthorizePayment(Event):
    """Command: hold ``amount_cents`` on the customer's card for the order."""

    order_id: str
    customer_id: str
    amount_cents: int = Field(ge=0)


class VoidPayment(Event):
    """Command (compensation): release the order's authorization, if it has one."""

    order_id: str
    reason: str


class CapturePayment(Event):
    """Command: take the authorized money (the order shipped)."""

    order_id: str
    amount_cents: int = Field(ge=0)


class PaymentAuthorized(Event):
    """The provider holds the amount for the order."""

    order_id: str
    authorization_id: str
    amount_cents: int


class PaymentDeclined(Event):
    """The provider refused the authorization."""

    order_id: str
    reason: str


class PaymentVoided(Event):
    """The order's authorization (if any) was released; it can no longer be captured."""

    order_id: str


class PaymentCaptured(Event):
    """The money was taken."""

    order_id: str
    amount_cents: int
    at_ms: int


PaymentEvent = PaymentAuthorized | PaymentDeclined | PaymentVoided | PaymentCaptured


# --------------------------------------------------------------------- shipping


class CreateShipment(Event):
    """Command: ship the confirmed order."""

    order_id: str
    customer_id: str
    lines: tuple[StockLine, ...]


class ShipmentCreated(Event):
    """A shipment exists for the order (exactly one per order)."""

    order_id: str
    shipment_id: str


class ShipmentDispatched(Event):
    """The shipment left the warehouse."""

    order_id: str
    shipment_id: str
    at_ms: int


ShipmentEvent = ShipmentCreated | ShipmentDispatched


# --------------------------------------------------------------------- notifications


class WebhookRequested(Event):
    """One event to deliver to one subscriber (``delivery_id`` is the idempotency key)."""

    delivery_id: str
    subscription_id: str
    event_id: str
    event_type: str
    order_id: str
    payload: dict[str, object]
    requested_at_ms: int
