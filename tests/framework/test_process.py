"""`rivulet run` as a real process: SIGKILL mid-stream loses nothing and changes nothing twice;
SIGTERM finishes, commits and leaves; the metrics and health endpoint answers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path

from rivulet import Event
from rivulet.framework.testing import KafkaHarness

from .conftest import CLI_SCRIPT

SERVICE = """
import asyncio
from rivulet import App, Context, Event

class Work(Event):
    seq: int

app = App("counter")

@app.on_startup
async def schema() -> None:
    async with app.transaction() as tx:
        await tx.execute("CREATE TABLE IF NOT EXISTS applied (seq INTEGER NOT NULL)")

@app.handler("work", idempotent=True)
async def apply(event: Work, ctx: Context) -> None:
    await ctx.transaction.execute("INSERT INTO applied (seq) VALUES (?)", (event.seq,))
    with open("calls.log", "a") as log:
        log.write(f"{event.seq}\\n")
    await asyncio.sleep(0.003)
"""


class Work(Event):
    seq: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(kafka: KafkaHarness, workdir: Path, **env: str) -> asyncio.subprocess.Process:
    environ = {
        **os.environ,
        "RIVULET_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "RIVULET_DATABASE_URL": f"sqlite:///{workdir / 'counter.db'}",
        "RIVULET_LOG_LEVEL": "WARNING",
        # A killed member is noticed within this, instead of librdkafka's default 45 s.
        "RIVULET_KAFKA_SESSION_TIMEOUT_MS": "6000",  # the broker's minimum, as in Kafka
        "RIVULET_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        **env,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI_SCRIPT, "rivulet.cli.run", "counter_service:app",
        cwd=workdir, env=environ,
    )  # fmt: skip


def count(db: Path, sql: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:
            return 0


async def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_sigkill_mid_stream_then_restart(kafka: KafkaHarness, tmp_path: Path) -> None:
    (tmp_path / "counter_service.py").write_text(SERVICE)
    db = tmp_path / "counter.db"
    calls = tmp_path / "calls.log"
    total = 300
    await kafka.publish_many("work", [(Work(seq=n), str(n % 7)) for n in range(total)])

    # Commits are held back so that everything handled before the kill is redelivered.
    first = await start(kafka, tmp_path, RIVULET_COMMIT_INTERVAL_MS="600000")
    try:
        await wait_for(lambda: count(db, "SELECT COUNT(*) FROM applied") >= 40, 60, "progress")
    finally:
        first.send_signal(signal.SIGKILL)
        await first.wait()
    applied_before = count(db, "SELECT COUNT(*) FROM applied")
    assert 0 < applied_before < total

    port = free_port()
    second = await start(kafka, tmp_path, RIVULET_HTTP_LISTEN=f"127.0.0.1:{port}")
    try:
        await wait_for(
            lambda: count(db, "SELECT COUNT(*) FROM applied") == total, 60, "all applied"
        )
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        )
        health = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status
        )
    finally:
        second.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(second.wait(), 60)
    assert status == 0  # a graceful stop
    text = body.decode()
    assert health == 200
    # Redelivered after the kill, recognised, and not applied a second time.
    assert metric(text, "rivulet_records_duplicate_total") >= applied_before
    assert count(db, "SELECT COUNT(*) FROM applied") == total
    assert count(db, "SELECT COUNT(DISTINCT seq) FROM applied") == total
    # The killed process may have been inside one call (its transaction rolled back).
    assert total <= len(calls.read_text().split()) <= total + 1
