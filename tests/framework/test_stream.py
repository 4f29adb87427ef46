"""Stream processing: filter, map and branch to other topics."""

from __future__ import annotations

import random

from rivulet import App, Event
from rivulet.framework._dispatch import build_routes
from rivulet.framework._processor import Handled, Processor
from rivulet.framework._publishing import Built, EventEncoder
from rivulet.framework._wire import ConsumedRecord


class OrderPlaced(Event):
    order_id: str
    customer: str
    total: int


class LargeOrder(Event):
    order_id: str
    total: int


def to_large(order: OrderPlaced) -> LargeOrder:
    return LargeOrder(order_id=order.order_id, total=order.total)


async def run(
    app: App, group: str, events: list[OrderPlaced]
) -> list[tuple[str, bytes | None, str]]:
    encoder = EventEncoder(
        source=app.name,
        serializers=app.serializers,
        clock_ms=lambda: 1_700_000_000_000,
        random_bits=random.Random(1).getrandbits,
    )
    processor = Processor(
        build_routes(app.handlers)[group],
        encoder=encoder,
        persistence=None,
        clock_ms=lambda: 0,
        random01=lambda: 0.0,
    )
    out: list[Built] = []

    async def sink(built: Built) -> None:
        out.append(built)

    for offset, event in enumerate(events):
        built = encoder.build(event, topic="orders", key=event.customer)
        record = ConsumedRecord(
            "orders", 0, offset, 0, built.record.key, built.record.value, built.record.headers
        )
        assert await processor.process(record, sink) == Handled()
    return [(b.record.topic, b.record.key, b.event_type) for b in out]


def orders() -> list[OrderPlaced]:
    return [
        OrderPlaced(order_id="o1", customer="c1", total=500),
        OrderPlaced(order_id="o2", customer="c2", total=1500),
        OrderPlaced(order_id="o3", customer="c1", total=2500),
    ]


async def test_large_orders_in_one_line() -> None:
    app = App("large-orders")
    app.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")
    assert await run(app, "large-orders", orders()) == [
        ("large-orders", b"c2", "OrderPlaced"),
        ("large-orders", b"c1", "OrderPlaced"),
    ]


async def test_branches_maps_and_keys() -> None:
    app = App("router")
    placed = app.stream("orders", OrderPlaced)
    placed.filter(lambda o: o.total > 1000).map(to_large).to(
        "large-orders", key=lambda e: e.order_id
    )
    placed.filter(lambda o: o.total <= 1000).to("small-orders")
    # The same source again is the same handler: a third branch, not a second consumer.
    app.stream("orders", OrderPlaced).to("audit")
    assert len(app.handlers) == 1
    assert await run(app, "router", orders()) == [
        ("small-orders", b"c1", "OrderPlaced"),
        ("audit", b"c1", "OrderPlaced"),
        ("large-orders", b"o2", "LargeOrder"),
        ("audit", b"c2", "OrderPlaced"),
        ("large-orders", b"o3", "LargeOrder"),
        ("audit", b"c1", "OrderPlaced"),
    ]
    publications = app.handlers[0].publications()
    assert publications == (
        ("large-orders", (LargeOrder,)),
        ("small-orders", (OrderPlaced,)),
        ("audit", (OrderPlaced,)),
    )


async def test_a_lambda_map_has_an_unknown_output_type_in_the_topology() -> None:
    app = App("router")
    app.stream("orders", OrderPlaced).map(
        lambda o: LargeOrder(order_id=o.order_id, total=o.total)
    ).to("large-orders")
    assert app.handlers[0].publications() == (("large-orders", ()),)


async def test_streams_skip_other_event_types_on_their_topic() -> None:
    class Cancelled(Event):
        order_id: str

    app = App("large-orders")
    app.stream("orders", OrderPlaced).filter(lambda o: o.total > 1000).to("large-orders")
    spec = app.handlers[0]
    assert spec.unknown_types == "skip"
    routes = build_routes(app.handlers)["large-orders"]
    assert routes.routes["orders"].resolve("Cancelled") is None
    assert Cancelled.__event_type__ == "Cancelled"
