"""The public surface: what `from rivulet import ...` gives, with the types it promises.

The ``assert_type`` calls are checked by mypy (``./dev lint``); at run time they only
check that the code runs.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import rivulet
import rivulet.framework
from rivulet import App, Context, Event, RetryPolicy, Settings, Stream, Transaction
from rivulet.framework import Topology


class OrderPlaced(Event):
    order_id: str
    total: int


class Shipped(Event):
    order_id: str


app = App("typed")


@app.handler("orders", group="typed", concurrency=4, retry=RetryPolicy(attempts=2))
async def handle(event: OrderPlaced, ctx: Context) -> None:
    assert_type(ctx.event_id, str)
    assert_type(ctx.correlation_id, str)
    assert_type(ctx.causation_id, str | None)
    assert_type(ctx.key, bytes | None)
    assert_type(ctx.transaction, Transaction)
    assert_type(await ctx.publish("shipping", Shipped(order_id=event.order_id)), str)


def test_decorated_handlers_keep_their_type() -> None:
    # The decorator returns the function itself, so its precise type survives.
    unchanged: Callable[[OrderPlaced, Context], Coroutine[Any, Any, None]] = handle
    assert unchanged is handle


def test_stream_types_follow_the_pipeline() -> None:
    stream = app.stream("orders", OrderPlaced, group="streams")
    assert_type(stream, Stream[OrderPlaced])
    assert_type(stream.filter(lambda o: o.total > 1), Stream[OrderPlaced])
    assert_type(stream.map(lambda o: Shipped(order_id=o.order_id)), Stream[Shipped])
    assert_type(stream.map(lambda o: o.total), Stream[int])


def test_settings_and_topology_types() -> None:
    assert_type(Settings.load(), Settings)
    assert_type(app.topology(), Topology)
    assert_type(OrderPlaced.__event_type__, str)


def test_public_names_are_importable_and_listed() -> None:
    for name in rivulet.__all__:
        assert hasattr(rivulet, name), name
    for name in rivulet.framework.__all__:
        assert hasattr(rivulet.framework, name), name
    assert set(rivulet.__all__) - {"__version__"} <= set(rivulet.framework.__all__)
    assert importlib.import_module("rivulet").App is rivulet.framework.App


def test_importing_the_broker_does_not_import_the_framework() -> None:
    code = (
        "import sys, rivulet.broker; "
        "sys.exit(1 if 'rivulet.framework' in sys.modules or 'pydantic' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
