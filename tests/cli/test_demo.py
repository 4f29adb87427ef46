"""``rivulet demo``: every produced event is consumed, in order, across consumer stops and runs."""

from __future__ import annotations

import io
import json
import os
import pty
import random
import re
import select
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from rivulet.cli.demo import SKUS, Demo, DemoSettings, DemoSummary, Position
from rivulet.cli.main import main

FAST = 0.05
"""Seconds between events: fast enough for many events in a short run."""
_CONSUMED = re.compile(r"^consumed  events\[(\d+)\]@(\d+)  lag (\d+)  (\{.*\})$")


def run_demo(settings: DemoSettings) -> tuple[DemoSummary, list[str]]:
    out = io.StringIO()
    summary = Demo(settings, out, rng=random.Random(7)).run()
    return summary, out.getvalue().splitlines()


def by_partition(events: list[tuple[Position, str]]) -> dict[int, list[tuple[int, str]]]:
    result: dict[int, list[tuple[int, str]]] = {}
    for position, order_id in events:
        result.setdefault(position.partition, []).append((position.offset, order_id))
    return result


def test_stopped_consumer_catches_up_from_its_committed_position(tmp_path: Path) -> None:
    settings = DemoSettings(
        data_dir=tmp_path / "demo",
        duration_s=1.5,
        pause_consumer_at_s=0.4,
        resume_consumer_at_s=0.9,
        partitions=1,
        interval_s=FAST,
    )

    summary, lines = run_demo(settings)

    assert len(summary.produced) >= 10
    # One partition: the consumer read exactly what was produced, in the same order.
    assert summary.consumed == summary.produced
    assert [p.offset for p, _ in summary.produced] == list(range(len(summary.produced)))
    assert (
        lines[-1]
        == f"summary: produced {len(summary.produced)}, consumed {len(summary.produced)}, missing 0"
    )

    stopped = lines.index("consumer stopped (position committed); the producer keeps going")
    starting = lines.index("consumer starting", stopped)
    restarted = next(
        i for i, line in enumerate(lines) if line.startswith("consumer joined") and i > stopped
    )
    while_stopped = lines[stopped:starting]
    assert any(line.startswith("produced") for line in while_stopped)
    assert not any(line.startswith("consumed") for line in lines[stopped:restarted])
    # Everything acknowledged before the consumer started is behind its committed position.
    backlog = int(lines[restarted].rpartition("backlog ")[2].rstrip(")"))
    assert backlog >= sum(line.startswith("produced") for line in while_stopped)
    lags = [int(m.group(3)) for line in lines[restarted:] if (m := _CONSUMED.match(line))]
    assert lags[0] > 0, "the restarted consumer should start behind"
    assert f"consumer caught up: read a backlog of {backlog}" in lines


def test_events_are_order_placed_json_keyed_by_order_id(tmp_path: Path) -> None:
    summary, lines = run_demo(
        DemoSettings(data_dir=tmp_path / "demo", duration_s=0.5, interval_s=FAST)
    )

    bodies = [json.loads(m.group(4)) for line in lines if (m := _CONSUMED.match(line))]
    assert [body["order_id"] for body in bodies] == [order_id for _, order_id in summary.consumed]
    for body in bodies:
        assert set(body) == {"type", "order_id", "sku", "quantity", "placed_at"}
        assert body["type"] == "order-placed"
        assert body["sku"] in SKUS
        assert 1 <= body["quantity"] <= 5
        assert datetime.fromisoformat(body["placed_at"]).tzinfo is not None
    numbers = sorted(int(order_id.removeprefix("ORD-")) for _, order_id in summary.produced)
    assert numbers == list(range(1, len(numbers) + 1))


def test_a_second_run_continues_and_reads_what_the_first_left(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    first, first_lines = run_demo(
        DemoSettings(data_dir=data_dir, duration_s=0.8, pause_consumer_at_s=0.4, interval_s=FAST)
    )
    left = first.missing
    assert left, "events produced after the pause wait for the next run"
    assert first_lines[-1].endswith(
        f"missing {len(left)} (the consumer is stopped: they wait in the log for the next run)"
    )

    second, second_lines = run_demo(
        DemoSettings(data_dir=data_dir, duration_s=0.5, interval_s=FAST)
    )

    assert second.missing == []
    assert f"({len(left)} left by an earlier run)" in second_lines[-1]
    # Between them the two runs read every event once: the group's committed
    # offsets made the second start where the first stopped.
    first_read = [p for p, _ in first.consumed]
    second_read = [p for p, _ in second.consumed]
    produced = [p for p, _ in first.produced + second.produced]
    assert sorted(first_read + second_read) == sorted(produced)
    # Offsets and order numbers carry on from the first run.
    for events in by_partition(first.produced + second.produced).values():
        assert [offset for offset, _ in events] == list(range(len(events)))
    numbers = [int(o.removeprefix("ORD-")) for _, o in first.produced + second.produced]
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    # Per partition, each run read consecutive offsets, in order.
    for run in (first, second):
        for events in by_partition(run.consumed).values():
            offsets = [offset for offset, _ in events]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))


def _expect(fd: int, pattern: str, seen: list[str], timeout_s: float = 30) -> str:
    """Read the terminal until a line matches ``pattern``; return that line."""
    regex = re.compile(pattern)
    buffer = ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096).decode()
        except OSError:  # the child closed the terminal
            break
        buffer += chunk
        *lines, buffer = buffer.replace("\r", "").split("\n")
        for line in lines:
            seen.append(line)
            if regex.search(line):
                return line
    raise AssertionError(f"no line matched {pattern!r}; the terminal showed:\n" + "\n".join(seen))


def test_keys_stop_start_and_quit_in_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rivulet.cli.main",
            "demo",
            "--data-dir",
            str(tmp_path / "demo"),
            "--interval",
            "0.05",
        ],
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    os.close(terminal)
    seen: list[str] = []
    try:
        _expect(controller, r"^keys: c = stop/start the consumer, q = quit$", seen)
        _expect(controller, r"^consumed ", seen)
        os.write(controller, b"c")
        _expect(controller, r"^consumer stopped", seen)
        _expect(controller, r"^produced ", seen)
        _expect(controller, r"^produced ", seen)
        os.write(controller, b"c")
        _expect(controller, r"^consumer caught up", seen)
        os.write(controller, b"q")
        summary = _expect(controller, r"^summary: ", seen)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        os.close(controller)

    assert re.fullmatch(r"summary: produced (\d+), consumed \1, missing 0", summary), summary


def test_command_line_runs_unattended(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        [
            "demo",
            "--data-dir",
            str(tmp_path / "demo"),
            "--interval",
            "0.05",
            "--duration",
            "0.4",
            "--pause-consumer-at",
            "0.1",
            "--resume-consumer-at",
            "0.2",
        ]
    )

    out = capsys.readouterr().out
    assert status == 0
    assert "keys:" not in out  # no terminal, no keys
    assert re.search(r"^summary: produced (\d+), consumed \1, missing 0$", out, re.MULTILINE)


@pytest.mark.parametrize(
    "argv",
    [
        ["--interval", "0"],
        ["--resume-consumer-at", "2"],
        ["--pause-consumer-at", "3", "--resume-consumer-at", "2"],
        ["--partitions", "0"],
    ],
)
def test_command_line_refuses_bad_settings(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--data-dir", str(tmp_path), *argv]) == 2
    assert capsys.readouterr().err.startswith("rivulet demo: ")


def test_summary_line_names_what_is_missing_and_duplicated() -> None:
    a, b, c = Position(0, 0), Position(0, 1), Position(1, 0)
    summary = DemoSummary(
        produced=[(a, "ORD-1"), (b, "ORD-2")],
        consumed=[(c, "ORD-0"), (a, "ORD-1"), (a, "ORD-1")],
        consumer_running_at_end=False,
    )

    assert summary.missing == [b]
    assert summary.line() == (
        "summary: produced 2, consumed 3 (1 left by an earlier run), missing 1, duplicates 1"
        " (the consumer is stopped: they wait in the log for the next run)"
    )
