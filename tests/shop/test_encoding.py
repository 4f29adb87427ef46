"""How the shop's apps encode events: plain JSON, or JSON Schema through a registry."""

from __future__ import annotations

from rivulet.framework import JsonSerializer
from rivulet.registry.serde import JsonSchemaSerializer
from shop.events import ORDER_STATUS, OrderCancelled, OrderShipped, serializers


def test_without_a_registry_the_framework_default_plain_json_is_kept() -> None:
    assert serializers({}) is None
    assert serializers({"RIVULET_SCHEMA_REGISTRY_URL": ""}) is None


def test_with_a_registry_events_are_json_schema_one_subject_per_topic_and_type() -> None:
    chosen = serializers({"RIVULET_SCHEMA_REGISTRY_URL": "http://registry.invalid:8081"})
    assert chosen is not None
    first, second = chosen
    assert isinstance(first, JsonSchemaSerializer)
    assert first.client.url.rstrip("/") == "http://registry.invalid:8081"
    # order-status carries three event types: each gets its own subject.
    assert first.subject(ORDER_STATUS, OrderShipped) == "order-status-OrderShipped"
    assert first.subject(ORDER_STATUS, OrderCancelled) == "order-status-OrderCancelled"
    # Records written before the switch (plain JSON) are still read.
    assert isinstance(second, JsonSerializer)
