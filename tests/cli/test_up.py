"""``rivulet up``: invariant checks, the supervisor, the webhook receiver, and real runs.

The end-to-end tests start the whole shop as processes (broker, registry, eight
services), place orders for a few seconds and let ``--check`` verify every invariant:
on SQLite (twice, the second run continuing from the first one's data), on
PostgreSQL, and with services SIGKILLed during the load.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rivulet.cli.up import (
    ProcessSpec,
    Supervisor,
    SystemState,
    WebhookReceiver,
    check_invariants,
    cpu_delta,
    listen_port,
    per_order_ms,
    restart_delay_s,
    service_database_url,
)
from shop.domain.webhooks import sign
from shop.services import SERVICES

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


# ---------------------------------------------------------------------------- invariants


def healthy() -> SystemState:
    """Two orders: o-1 shipped (2 x A for 500), o-2 cancelled."""
    return SystemState(
        orders={
            "o-1": ("shipped", 500, {"A": 2}, None),
            "o-2": ("cancelled", 300, {"B": 1}, "payment declined: card expired"),
        },
        inventory={
            "version": 9,
            "replay_matches_snapshot": True,
            "violations": [],
            "skus": {
                "A": {"available": 8, "reserved": 2, "received": 10},
                "B": {"available": 5, "reserved": 0, "received": 5},
            },
            "reservations": {
                "o-1": {"status": "reserved", "lines": {"A": 2}},
                "o-2": {"status": "released", "lines": {}},
            },
        },
        payments={
            "payments": {
                "o-1": {"status": "captured", "amount_cents": 500, "captured_cents": 500},
                "o-2": {"status": "declined", "amount_cents": 300, "captured_cents": 0},
            },
            "provider_captures": {"count": 1, "amount_cents": 500},
        },
        shipments={"o-1": {"shipment_id": "s-1", "status": "dispatched"}},
        analytics={
            "orders": {"by_state": {"pending": 0, "placed": 0, "confirmed": 0,
                                    "shipped": 1, "cancelled": 1}},
            "revenue_cents": 500,
            "units_shipped_by_sku": {"A": 2},
        },
        applied=[
            ("k1", "o-1", "OrderConfirmed"),
            ("k2", "o-1", "OrderShipped"),
            ("k3", "o-2", "OrderCancelled"),
        ],
    )  # fmt: skip


def failed(state: SystemState) -> dict[str, str]:
    return {c.name: c.detail for c in check_invariants(state) if not c.ok}


def test_a_consistent_system_passes_every_check() -> None:
    checks = check_invariants(healthy())
    assert len(checks) == 6
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]


def test_an_open_order_fails_the_terminal_check() -> None:
    state = healthy()
    state.orders["o-3"] = ("confirmed", 100, {"A": 1}, None)
    assert "o-3" in failed(state)["every placed order reached a terminal state"]


def test_stock_checks() -> None:
    state = healthy()
    state.inventory["skus"]["A"]["reserved"] = 3
    assert "reserved 3 but shipped 2" in failed(state)["stock conserved and never negative"]
    state = healthy()
    state.inventory["reservations"]["o-2"] = {"status": "reserved", "lines": {"B": 1}}
    assert "still holds stock" in failed(state)["stock conserved and never negative"]
    state = healthy()
    state.inventory["replay_matches_snapshot"] = False
    assert "replaying" in failed(state)["stock conserved and never negative"]


def test_payment_checks() -> None:
    name = "captured payments equal shipped order totals; none kept for a cancelled order"
    state = healthy()
    state.payments["payments"]["o-2"] = {"status": "captured", "captured_cents": 300}
    assert "cancelled but captured 300" in failed(state)[name]
    state = healthy()
    state.payments["payments"]["o-2"] = {"status": "authorized", "captured_cents": 0}
    assert "authorization was not voided" in failed(state)[name]
    state = healthy()
    state.payments["payments"]["o-1"]["captured_cents"] = 499
    assert "shipped for 500, captured 499" in failed(state)[name]


def test_shipment_checks() -> None:
    state = healthy()
    state.shipments["o-2"] = {"shipment_id": "s-2", "status": "dispatched"}
    assert "not shipped: o-2" in failed(state)["exactly one shipment per shipped order"]
    state = healthy()
    del state.shipments["o-1"]
    assert "without a shipment: o-1" in failed(state)["exactly one shipment per shipped order"]


def test_webhook_checks() -> None:
    name = "every webhook delivery applied once"
    state = healthy()
    state.applied.append(("k9", "o-1", "OrderShipped"))
    assert "applied twice: o-1 OrderShipped" in failed(state)[name]
    state = healthy()
    state.applied.pop()
    assert "never delivered: o-2 OrderCancelled" in failed(state)[name]
    state.dead_lettered_webhooks.add(("o-2", "OrderCancelled"))
    assert name not in failed(state), "a dead-lettered delivery is accounted for"


def test_analytics_checks() -> None:
    name = "analytics totals equal the sources of truth"
    state = healthy()
    state.analytics["revenue_cents"] = 400
    assert "revenue 400 != captured 500" in failed(state)[name]
    state = healthy()
    state.analytics["orders"]["by_state"]["placed"] = 1
    assert "1 orders still placed" in failed(state)[name]


def test_cpu_per_order_counts_restarted_processes_from_zero() -> None:
    before = {"orders": 10.0, "saga": 4.0}
    after = {"orders": 12.5, "saga": 1.0, "broker": 3.0}  # saga restarted, broker new
    used = cpu_delta(before, after)
    assert used == {"orders": 2.5, "saga": 1.0, "broker": 3.0}
    assert per_order_ms(used, 100) == {"orders": 25.0, "saga": 10.0, "broker": 30.0, "total": 65.0}
    assert per_order_ms(used, 0) == {}


def test_listen_ports_come_from_below_the_ephemeral_range_and_are_not_repeated() -> None:
    # Outgoing connections take their local ports from the ephemeral range; a port
    # picked there could be taken between the pick and the child's bind.
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [listen_port(random.Random(seed)) for seed in (1, 1, 2, 3)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= port < low for port in ports)


def test_restart_backoff_and_database_urls() -> None:
    assert [restart_delay_s(n) for n in (1, 2, 3, 4, 5, 6, 20)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0
    ]  # fmt: skip
    assert (
        service_database_url("postgresql://u@h/db?options=-cfoo%3Dbar", "shop_orders")
        == "postgresql://u@h/db?options=-csearch_path%3Dshop_orders"
    )


# ---------------------------------------------------------------------------- receiver


def test_the_receiver_verifies_deduplicates_and_remembers(tmp_path: Path) -> None:
    body = json.dumps({"order_id": "o-1", "type": "OrderShipped"}).encode()
    now = 1_700_000_000
    receiver = WebhookReceiver(tmp_path / "r.db", secret="s3cret-key", clock_s=lambda: now)
    headers = sign("whd_1", body, secret="s3cret-key", now_s=now)
    assert receiver.handle(headers, body) == 200
    assert receiver.handle(headers, body) == 200
    assert receiver.duplicates == 1
    forged = sign("whd_2", body, secret="not-the-secret", now_s=now)
    assert receiver.handle(forged, body) == 401
    assert receiver.applied() == [("whd_1", "o-1", "OrderShipped")]
    receiver._db.close()

    again = WebhookReceiver(tmp_path / "r.db", secret="s3cret-key", clock_s=lambda: now)
    assert again.handle(headers, body) == 200
    assert again.duplicates == 1, "the next run still knows the key"
    refusing = WebhookReceiver(
        tmp_path / "other.db", secret="s3cret-key", failure_rate=1.0, clock_s=lambda: now
    )
    assert refusing.handle(headers, body) == 503
    assert refusing.applied() == []
    again._db.close()
    refusing._db.close()


async def test_the_receiver_speaks_http_with_keep_alive(tmp_path: Path) -> None:
    receiver = WebhookReceiver(tmp_path / "r.db", secret="s3cret-key")
    receiver_url = await receiver.start()
    try:
        async with httpx.AsyncClient() as client:
            for n in range(3):
                body = json.dumps({"order_id": f"o-{n}", "type": "OrderShipped"}).encode()
                headers = sign(f"whd_{n}", body, secret="s3cret-key", now_s=int(time.time()))
                response = await client.post(receiver_url, content=body, headers=headers)
                assert response.status_code == 200
        assert len(receiver.applied()) == 3
    finally:
        await receiver.stop()


# ---------------------------------------------------------------------------- supervisor


async def test_the_supervisor_restarts_a_killed_process_and_stops_it_gracefully(
    tmp_path: Path,
) -> None:
    supervisor = Supervisor(tmp_path / "logs")
    spec = ProcessSpec("broker", ("broker", "--in-memory", "--listen", "127.0.0.1:0"))
    process = supervisor.start(spec)
    log = tmp_path / "logs" / "broker.log"

    def serving(times: int) -> bool:
        # Once it says so, its SIGTERM handler is in place (a loaded machine may take
        # seconds to get there; a fixed sleep made the graceful stop a race).
        return log.exists() and log.read_text().count("broker listening") >= times

    try:
        await _until(lambda: process.state == "running" and process.process is not None)
        await _until(lambda: serving(1))
        assert supervisor.kill("broker")
        await _until(lambda: process.starts == 2 and process.state == "running")
        assert process.last_exit == -9
        assert process.restarts == 1
        await _until(lambda: serving(2))
    finally:
        await supervisor.stop(["broker"], timeout_s=20)
    assert process.state == "stopped"
    assert process.last_exit == 0, "SIGTERM is a graceful stop"
    assert (tmp_path / "logs" / "broker.log").exists()


async def _until(condition: Any, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- end to end


def up(data_dir: Path, *args: str, timeout_s: float = 240) -> tuple[int, str, dict[str, Any]]:
    """Run ``rivulet up`` headless; returns its status, output and JSON summary."""
    summary = data_dir / "summary.json"
    command = [
        sys.executable, "-m", "rivulet.cli.main", "up", "--no-live", "--data-dir", str(data_dir),
        "--summary-json", str(summary), "--rate", "15", *args,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "RIVULET_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )
    output = result.stdout + result.stderr
    data = json.loads(summary.read_text()) if summary.exists() else {}
    return result.returncode, output, data


def assert_all_hold(status: int, output: str, summary: dict[str, Any]) -> None:
    assert status == 0, output[-4000:]
    assert summary["ok"], output[-4000:]
    assert "all invariants hold" in output
    assert [c["ok"] for c in summary["checks"]] == [True] * 6


def test_check_needs_a_duration(tmp_path: Path) -> None:
    status, output, _ = up(tmp_path, "--check")
    assert status == 2
    assert "--check needs --duration" in output


def test_a_second_up_on_the_same_data_is_refused(tmp_path: Path) -> None:
    (tmp_path / "up.json").write_text(json.dumps({"pid": os.getpid()}))
    status, output, _ = up(tmp_path, "--duration", "1")
    assert status == 2
    assert f"another rivulet up (pid {os.getpid()})" in output


def test_a_database_it_cannot_reach_is_reported_clearly(tmp_path: Path) -> None:
    status, output, _ = up(
        tmp_path, "--duration", "1", "--bootstrap-servers", "127.0.0.1:9",
        "--database", "postgresql://nobody@127.0.0.1:9/none",
    )  # fmt: skip
    assert status == 2, output[-2000:]
    assert "cannot prepare the PostgreSQL schemas" in output


def test_up_check_on_sqlite_and_a_second_run_continues_from_the_data(tmp_path: Path) -> None:
    data = tmp_path / "data"
    status, output, _ = up(data, "--duration", "5")
    assert status == 0, output[-4000:]
    assert (data / "shop" / "orders.db").exists()
    assert (data / "broker").is_dir()
    assert not (data / "up.json").exists(), "removed at shutdown"

    status, output, summary = up(data, "--duration", "5", "--check")
    assert_all_hold(status, output, summary)
    total = sum(summary["orders"].values())
    assert total > summary["accepted"], "the first run's orders were finished by the second"
    assert summary["orders"]["shipped"] > 0
    assert summary["webhooks"]["applied"] >= summary["orders"]["shipped"] * 2
    # CPU per order is reported for every process of the system, and adds up.
    cpu = summary["cpu_ms_per_order"]
    assert {s.name for s in SERVICES} | {"broker", "up (load, webhooks)"} <= set(cpu)
    assert all(ms >= 0 for ms in cpu.values())
    assert cpu["total"] == pytest.approx(sum(v for k, v in cpu.items() if k != "total"), abs=0.1)
    assert cpu["total"] > 0
    # The registry (rebuilt from _schemas by the second run) holds the schema of every
    # event type the shop publishes, one subject per topic and type (topic_record).
    subjects = summary["registry_subjects"]
    assert subjects is not None, "the registry answered"
    missing = published_subjects() - set(subjects)
    assert not missing, f"not registered: {sorted(missing)}"


def published_subjects() -> set[str]:
    """``<topic>-<event type>`` of every event type a shop service publishes."""
    subjects: set[str] = set()
    for service in SERVICES:
        module, _, attribute = service.app.partition(":")
        topology = getattr(importlib.import_module(module), attribute).topology()
        for topic in topology.topics:
            if topic.role == "events" and topic.produced:
                subjects.update(f"{topic.name}-{event_type}" for event_type in topic.event_types)
    assert len(subjects) > 20, subjects
    return subjects


@pytest.fixture
def postgres_schemas() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    prefix = f"uptest{uuid.uuid4().hex[:8]}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}: {exc}")
    yield prefix
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (prefix + "\\_%",)
        ).fetchall()
        for (schema,) in rows:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_up_check_on_postgresql_and_an_external_kafka(
    tmp_path: Path, postgres_schemas: str, broker_factory: Any
) -> None:
    kafka = broker_factory(num_partitions=3)
    status, output, summary = up(
        tmp_path / "data", "--duration", "5", "--check",
        "--database", POSTGRES_URL, "--schema-prefix", postgres_schemas,
        "--bootstrap-servers", kafka.bootstrap_servers,
    )  # fmt: skip
    assert_all_hold(status, output, summary)
    assert "broker" not in summary["restarts"], "no embedded broker was started"
    assert not (tmp_path / "data" / "broker").exists()
    shop_files = {p.name for p in (tmp_path / "data" / "shop").iterdir()}
    assert not {f for f in shop_files if f.startswith("orders.db")}, "orders ran on PostgreSQL"


def test_up_chaos_check_every_invariant_survives_sigkill(tmp_path: Path) -> None:
    status, output, summary = up(
        tmp_path / "data", "--duration", "12", "--check", "--chaos", "--chaos-interval", "2",
    )  # fmt: skip
    assert_all_hold(status, output, summary)
    assert summary["kills"] >= 3
    assert sum(summary["restarts"].values()) >= summary["kills"]


@pytest.mark.soak
def test_up_chaos_soak(tmp_path: Path) -> None:
    status, output, summary = up(
        tmp_path / "data", "--duration", "300", "--check", "--chaos", timeout_s=900
    )
    assert_all_hold(status, output, summary)
