"""Dead letters: parking keys behind them, listing them, replaying them (rivulet dlq)."""

from __future__ import annotations

import asyncio
import json

import pytest

from rivulet import App, Event, RetryPolicy
from rivulet.cli import dlq
from rivulet.framework._dlq import describe, replay_records, select
from rivulet.framework._wire import ConsumedRecord
from rivulet.framework.testing import KafkaHarness

from .conftest import run_cli


class OrderPlaced(Event):
    order_id: str


def dead(offset: int, key: bytes, group: str = "inventory") -> ConsumedRecord:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_id", f"e{offset}".encode()),
        ("ce_type", b"OrderPlaced"),
        ("kafka_dlt-original-topic", b"orders"),
        ("kafka_dlt-original-offset", offset.to_bytes(8, "big")),
        ("kafka_dlt-original-consumer-group", group.encode()),
        ("kafka_dlt-exception-fqcn", b"OSError"),
        ("kafka_dlt-exception-message", b"db down"),
        ("kafka_dlt-exception-stacktrace", b"Traceback ..."),
        ("retry_topic-attempts", (3).to_bytes(4, "big")),
        ("rivulet_dlt-reason", b"handler-error"),
        ("rivulet_replay", b"old-batch"),
    ]
    return ConsumedRecord("orders-dlt", 0, offset, 1, key, b"{}", headers)


def test_replayed_records_are_addressed_fresh_and_mark_each_keys_last() -> None:
    records = [dead(0, b"A"), dead(1, b"B"), dead(2, b"A")]
    out = replay_records(records, "batch-1")
    assert [(r.topic, r.key) for r in out] == [("orders", b"A"), ("orders", b"B"), ("orders", b"A")]
    names = [[name for name, _ in r.headers] for r in out]
    for headers in names:
        assert "kafka_dlt-exception-fqcn" not in headers
        assert "retry_topic-attempts" not in headers
        assert "rivulet_dlt-reason" not in headers
        assert headers.count("rivulet_replay") == 1
        assert "kafka_dlt-original-consumer-group" in headers
        assert "ce_id" in headers
    assert dict(out[0].headers)["rivulet_replay"] == b"batch-1"
    assert ["rivulet_replay-last" in h for h in names] == [False, True, True]


def test_describe_and_select() -> None:
    info = describe(dead(7, b"A"))
    assert (info.original_topic, info.original_offset, info.group) == ("orders", 7, "inventory")
    assert (info.exception, info.message, info.reason, info.attempts) == (
        "OSError", "db down", "handler-error", 3,
    )  # fmt: skip
    records = [dead(0, b"A"), dead(1, b"B", group="payments"), dead(2, b"A")]
    assert [r.offset for r in select(records, group="inventory")] == [0, 2]
    assert [r.offset for r in select(records, keys=[b"B"])] == [1]
    assert [r.offset for r in select(records, positions=[(0, 2)])] == [2]
    with pytest.raises(ValueError, match="not a dead letter"):
        replay_records([ConsumedRecord("x", 0, 0, 0, None, b"", [])], "b")


async def test_a_parked_key_waits_for_its_dead_letter_and_replay_releases_it(
    kafka: KafkaHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    app = App("inventory")
    broken = True
    handled: list[str] = []

    @app.handler("orders", park_failed_keys=True, retry=RetryPolicy(attempts=1))
    async def reserve(event: OrderPlaced) -> None:
        if broken and event.order_id == "first":
            raise OSError("stock database unavailable")
        handled.append(event.order_id)

    cli = ["--bootstrap-servers", kafka.bootstrap_servers]
    async with kafka.run(app):
        await kafka.publish("orders", OrderPlaced(order_id="first"), key="A")
        await kafka.publish("orders", OrderPlaced(order_id="second"), key="A")
        await kafka.publish("orders", OrderPlaced(order_id="other"), key="B")
        dead_letters = await kafka.records("orders-dlt", count=2)
        await kafka.until(lambda: handled == ["other"], what="key B to go on")
        reasons = [dict(r.headers)["rivulet_dlt-reason"] for r in dead_letters]
        assert reasons == [b"handler-error", b"parked"]

        assert await asyncio.to_thread(run_cli, dlq, [*cli, "list", "orders-dlt", "--json"]) == 0
        listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(d["key"], d["reason"], d["group"]) for d in listed] == [
            ("A", "handler-error", "inventory"),
            ("A", "parked", "inventory"),
        ]
        assert listed[0]["exception"] == "OSError"
        assert listed[0]["message"] == "stock database unavailable"
        position = listed[0]["position"]
        assert await asyncio.to_thread(run_cli, dlq, [*cli, "show", "orders-dlt", position]) == 0
        shown = capsys.readouterr().out
        assert "stock database unavailable" in shown
        assert "Traceback" in shown

        # Still parked: a new event for A follows the others into the dead-letter topic.
        await kafka.publish("orders", OrderPlaced(order_id="third"), key="A")
        await kafka.records("orders-dlt", count=3)

        broken = False  # the cause is fixed; re-drive key A in order
        assert (
            await asyncio.to_thread(run_cli, dlq, [*cli, "replay", "orders-dlt", "--key", "A"]) == 0
        )
        assert "3 records replayed" in capsys.readouterr().out
        await kafka.until(lambda: len(handled) == 4, what="the replayed records")
        assert handled == ["other", "first", "second", "third"]

        await kafka.publish("orders", OrderPlaced(order_id="fourth"), key="A")
        await kafka.until(lambda: len(handled) == 5, what="key A released")
        assert handled[-1] == "fourth"


async def test_replay_needs_a_selection(
    kafka: KafkaHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    status = await asyncio.to_thread(
        run_cli, dlq, ["--bootstrap-servers", kafka.bootstrap_servers, "replay", "orders-dlt"]
    )
    assert status == 2
    assert "say what to replay" in capsys.readouterr().err
