"""Declaring handlers, streams and topics; mistakes are caught at declaration time."""

from __future__ import annotations

from typing import Any

import pytest

from rivulet import App, ConfigurationError, Context, Event, RetryPolicy
from rivulet.framework._dispatch import build_routes


class OrderPlaced(Event):
    order_id: str
    total: int


class OrderCancelled(Event):
    order_id: str


class Renamed(Event, event_type="OrderPlaced"):
    order_id: str


async def on_placed(event: OrderPlaced, ctx: Context) -> None:
    pass


def test_event_types_default_to_class_names_and_can_be_chosen() -> None:
    assert OrderPlaced.__event_type__ == "OrderPlaced"
    assert Renamed.__event_type__ == "OrderPlaced"

    class Child(OrderPlaced):
        pass

    assert Child.__event_type__ == "Child"
    with pytest.raises(ConfigurationError, match="event type"):

        class Bad(Event, event_type="has space"):
            pass


def test_events_are_frozen_and_ignore_unknown_fields() -> None:
    event = OrderPlaced.model_validate({"order_id": "o", "total": 3, "added_later": True})
    assert event == OrderPlaced(order_id="o", total=3)
    with pytest.raises(Exception, match="frozen"):
        event.total = 4


def test_handler_decorator_returns_the_function_and_records_options() -> None:
    app = App("inventory")
    policy = RetryPolicy(attempts=5)
    decorated = app.handler(
        ["orders", "orders-eu"],
        group="stock",
        concurrency=8,
        retry=policy,
        idempotent=True,
        timeout_s=2.5,
        publishes={"inventory": [OrderCancelled]},
    )(on_placed)
    assert decorated is on_placed
    (spec,) = app.handlers
    assert spec.name == "on_placed"
    assert spec.topics == ("orders", "orders-eu")
    assert spec.group == "stock"
    assert spec.models == (OrderPlaced,)
    assert spec.takes_context
    assert (spec.concurrency, spec.retry, spec.idempotent, spec.timeout_s) == (8, policy, True, 2.5)
    assert spec.publishes == (("inventory", (OrderCancelled,)),)
    routes = build_routes(app.handlers)["stock"]
    assert routes.topics == ("orders", "orders-eu")


def declare(app: App, fn: Any, **options: Any) -> None:
    app.handler("orders", **options)(fn)


def sync_handler(event: OrderPlaced) -> None:
    pass


async def no_annotation(event, ctx: Context) -> None:  # type: ignore[no-untyped-def]
    pass


async def not_an_event(event: int) -> None:
    pass


async def too_many(event: OrderPlaced, ctx: Context, extra: int) -> None:
    pass


async def base_event(event: Event) -> None:
    pass


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (sync_handler, "async function"),
        (no_annotation, "annotate the first parameter"),
        (not_an_event, "not an Event subclass"),
        (too_many, "3 parameters"),
        (base_event, "not an Event subclass"),
    ],
)
def test_bad_handler_signatures_are_refused(fn: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        declare(App("a"), fn)


def test_annotations_of_local_classes_are_explained() -> None:
    class Local(Event):
        n: int

    async def handle(event: Local) -> None:
        pass

    handle.__annotations__["event"] = "Local"  # what `from __future__ import annotations` leaves
    with pytest.raises(ConfigurationError, match="module level"):
        declare(App("a"), handle)


def test_one_type_has_one_handler_per_group() -> None:
    app = App("a")
    declare(app, on_placed)
    with pytest.raises(ConfigurationError, match="both take"):
        declare(app, on_placed)
    declare(app, on_placed, group="other")  # another group may handle it too
    assert [h.name for h in app.handlers] == ["on_placed", "on_placed#2"]


def test_handlers_sharing_a_topic_and_group_share_its_options() -> None:
    app = App("a")

    async def cancelled(event: OrderCancelled) -> None:
        pass

    declare(app, on_placed, concurrency=4)
    with pytest.raises(ConfigurationError, match="concurrency"):
        declare(app, cancelled, concurrency=1)


def test_two_classes_may_not_share_an_event_type() -> None:
    app = App("a")
    declare(app, on_placed)

    async def renamed(event: Renamed) -> None:
        pass

    with pytest.raises(ConfigurationError, match="names two classes"):
        app.handler("other-topic", group="other")(renamed)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"park_failed_keys": True, "retry": RetryPolicy(topics=(1000,))}, "park_failed_keys"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        declare(App("a"), on_placed, **options)


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 250, ".."])
def test_invalid_topic_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not valid in Kafka"):
        App("a").handler(name)(on_placed)


def test_invalid_app_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="app name"):
        App("no spaces please")


def test_topics_and_app_level_publications() -> None:
    app = App("orders")
    app.topic("orders", partitions=6, config={"retention.ms": "604800000"})
    app.publishes("orders", OrderPlaced, OrderCancelled)
    assert app.topics["orders"].partitions == 6
    assert app.app_publications == (("orders", (OrderPlaced, OrderCancelled)),)
    with pytest.raises(ConfigurationError, match="partitions"):
        app.topic("x", partitions=0)


async def test_lifecycle_hooks_are_recorded_in_order() -> None:
    app = App("a")
    calls: list[str] = []

    @app.on_startup
    async def first() -> None:
        calls.append("first")

    @app.on_startup
    async def second() -> None:
        calls.append("second")

    @app.on_shutdown
    async def last() -> None:
        calls.append("last")

    for hook in (*app.startup_hooks, *app.shutdown_hooks):
        await hook()
    assert calls == ["first", "second", "last"]
