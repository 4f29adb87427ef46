"""The scaling benchmark runs end to end, and a group scaled out and in loses nothing.

A small topic (20,000 events, 4 partitions): three replicas of a Rivulet app join one
group, two leave again, each a process of its own against ``rivulet broker``. What is
checked is at-least-once delivery (no event left unhandled) and that the group did
rebalance, never how fast, and not how many events were handled twice (that depends
on timing; the benchmark reports it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 20_000
RUN_LIMIT_S = 150  # the run takes about 10 s


@pytest.mark.timeout(RUN_LIMIT_S + 60)
def test_replicas_joining_and_leaving_leave_no_event_unhandled() -> None:
    bench = subprocess.Popen(
        [
            sys.executable, "-m", "bench.scaling", "--records", str(RECORDS),
            "--step", "0.3", "--timeout", "60",
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # the broker and the replicas are stopped with it
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )  # fmt: skip
    try:
        output, _ = bench.communicate(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGABRT)  # every Python process prints its stacks
        with suppress(subprocess.TimeoutExpired):
            bench.wait(5)
        with suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
        output, _ = bench.communicate(timeout=30)
        pytest.fail(f"the scaling benchmark overstayed {RUN_LIMIT_S} s:\n{output[-6000:]}")
    assert bench.returncode == 0, output[-6000:]
    figures = {
        name: int(value.replace(",", ""))
        for name, value in re.findall(
            r"^(handled|never handled|handled twice) +([\d,]+)$", output, re.M
        )
    }
    assert figures["never handled"] == 0, output
    assert figures["handled"] >= RECORDS, output
    revocations = re.search(r"(\d+) revocations", output)
    assert revocations is not None, output
    # Each of the five scale steps moves partitions away from at least one replica.
    assert int(revocations.group(1)) >= 5, output
