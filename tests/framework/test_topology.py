"""The app described as data, and its AsyncAPI 3 document."""

from __future__ import annotations

import json

from rivulet import App, Context, Event, RetryPolicy


class OrderPlaced(Event):
    """An order was accepted."""

    order_id: str
    total: int


class Line(Event):
    sku: str
    qty: int


class Cart(Event, event_type="shop.cart:v1"):
    lines: list[Line]


class StockReserved(Event):
    order_id: str


def build() -> App:
    app = App("inventory", version="1.2.0", description="Stock per SKU")

    @app.handler(
        "orders", retry=RetryPolicy(topics=(1000, 5000)), publishes={"inventory": StockReserved}
    )
    async def reserve(event: OrderPlaced | Cart, ctx: Context) -> None:
        pass

    app.stream("orders", OrderPlaced, group="router").filter(lambda o: o.total > 1000).to(
        "large-orders"
    )
    app.publishes("carts", Cart)
    app.topic("orders", partitions=12, config={"retention.ms": "86400000"})
    return app


def test_topology_lists_topics_groups_and_roles() -> None:
    topology = build().topology()
    assert topology.groups == ("inventory", "router")
    topics = {t.name: t for t in topology.topics}
    assert set(topics) == {
        "orders",
        "orders-retry-1000",
        "orders-retry-5000",
        "orders-dlt",
        "inventory",
        "large-orders",
        "carts",
    }
    orders = topics["orders"]
    assert orders.role == "events"
    assert orders.consumed_by == ("inventory", "router")
    assert not orders.produced
    assert orders.partitions == 12
    assert dict(orders.config) == {"retention.ms": "86400000"}
    assert set(orders.event_types) == {"OrderPlaced", "shop.cart:v1"}
    assert topics["orders-retry-1000"].role == "retry"
    assert topics["orders-retry-1000"].consumed_by == ("inventory",)
    assert topics["orders-dlt"].role == "dead-letter"
    assert topics["orders-dlt"].produced
    assert topics["inventory"].event_types == ("StockReserved",)
    assert topics["large-orders"].event_types == ("OrderPlaced",)
    reserve, stream = topology.handlers
    assert (reserve.kind, stream.kind) == ("handler", "stream")
    assert reserve.retry_topics == ("orders-retry-1000", "orders-retry-5000")
    assert reserve.dead_letter_topics == ("orders-dlt",)
    assert set(topology.events) == {"OrderPlaced", "shop.cart:v1", "StockReserved"}


def test_to_dict_is_json_with_schemas() -> None:
    data = json.loads(json.dumps(build().topology().to_dict()))
    assert data["app"] == "inventory"
    schema = data["events"]["OrderPlaced"]["schema"]
    assert schema["properties"]["total"]["type"] == "integer"
    assert schema["required"] == ["order_id", "total"]


def test_asyncapi_document() -> None:
    doc = build().topology().asyncapi(servers={"local": "127.0.0.1:9092"})
    json.dumps(doc)
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"] == {"title": "inventory", "version": "1.2.0", "description": "Stock per SKU"}
    assert doc["servers"] == {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}}
    messages = doc["components"]["messages"]
    assert set(messages) == {"OrderPlaced", "shop.cart_v1", "StockReserved"}
    placed = messages["OrderPlaced"]
    assert placed["summary"] == "An order was accepted."
    assert placed["headers"]["properties"]["ce_type"]["const"] == "OrderPlaced"
    assert placed["correlationId"] == {"location": "$message.header#/ce_correlationid"}
    assert messages["shop.cart_v1"]["name"] == "shop.cart:v1"
    schemas = doc["components"]["schemas"]
    assert {"OrderPlaced", "Cart", "Line", "StockReserved"} <= set(schemas)

    receive = doc["operations"]["build.reserve.receive.orders"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/orders"}
    assert receive["bindings"]["kafka"]["groupId"]["enum"] == ["inventory"]
    sends = {op["channel"]["$ref"] for op in doc["operations"].values() if op["action"] == "send"}
    assert sends == {"#/channels/inventory", "#/channels/large-orders", "#/channels/carts"}

    # Every reference resolves inside the document.
    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        target: object = doc
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict), ref
            target = target[part.replace("~1", "/").replace("~0", "~")]
