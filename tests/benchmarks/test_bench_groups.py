"""The consumer-group benchmark runs end to end, so that it cannot rot between full runs.

A tiny topic, one round of groups of 1 and 2 members, and one failover round
of 2 members, against ``rivulet broker`` in a child process without the
initial rebalance delay. What is checked is that every measurement happened and
counted every record, never how fast. The failover round waits out a real
session timeout (6 s, the broker's minimum), which is most of this test's time.

Twice in CI (never on a developer's machine) this run went quiet after
"filling" until the test gave up. So a run that overstays says where each of
its processes was: their states, the Python stacks of the benchmark, its
workers and the broker (dumped by faulthandler on SIGABRT), and the broker's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from tests._broker_process import broker_process

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 800  # --scale 0.0004 of 2,000,000
# The run takes about 20 s; its fill gives up by itself after about 65 s.
RUN_LIMIT_S = 120
# Every Python process of this test prints its threads' stacks when sent SIGABRT.
_ENV = {**os.environ, "PYTHONFAULTHANDLER": "1"}


def _overstayed(bench: subprocess.Popen[str], broker: subprocess.Popen[bytes], log: Path) -> str:
    """Stop a run that overstayed and say where each of its processes was."""
    # The benchmark leads its own session: itself, the fill and the members.
    states = subprocess.run(
        ["ps", "-o", "pid,ppid,stat,wchan:24,etime,args",
         "-s", str(bench.pid), "-p", str(broker.pid)],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    workers = [int(line.split()[0]) for line in states.splitlines()[1:]]
    # Workers first, so that the benchmark, still alive, reports their stacks as their
    # failure; then the benchmark and the broker themselves.
    for pid in [p for p in workers if p not in (bench.pid, broker.pid)]:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGABRT)
    time.sleep(3)
    for process in (bench, broker):
        with suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGABRT)
    time.sleep(1)
    with suppress(ProcessLookupError):
        os.killpg(bench.pid, signal.SIGKILL)
    stdout, stderr = bench.communicate(timeout=30)
    broker.wait(30)
    return (
        f"the benchmark did not end in {RUN_LIMIT_S} s\n\nprocesses:\n{states}\n"
        f"benchmark stderr (last 6,000 characters):\n{stderr[-6000:]}\n"
        f"benchmark stdout:\n{stdout[-2000:]}\n"
        f"broker log (last 6,000 characters):\n{log.read_text(errors='replace')[-6000:]}"
    )


# Past the suite's 180 s: a run stopped at RUN_LIMIT_S still needs time to report.
@pytest.mark.timeout(RUN_LIMIT_S + 120)
def test_groups_benchmark_measures_throughput_and_failover(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    log = tmp_path / "broker.log"
    options = ["--group-initial-rebalance-delay-ms", "0"]
    with broker_process(tmp_path / "data", log, options, _ENV) as (broker, bootstrap):
        bench = subprocess.Popen(
            [
                sys.executable, "-m", "bench.groups",
                "--bootstrap-servers", bootstrap,
                "--rounds", "1", "--scale", "0.0004", "--members", "1,2",
                "--failover-rounds", "1", "--failover-members", "2", "--rate", "400",
                "--json", str(result_file),
            ],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_ENV, start_new_session=True,
        )  # fmt: skip
        try:
            stdout, stderr = bench.communicate(timeout=RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(_overstayed(bench, broker, log))
    assert bench.returncode == 0, stderr

    result = json.loads(result_file.read_text())
    throughput = result["throughput"]
    assert [s["members"] for s in throughput] == [1, 2]
    for sample in throughput:
        # Every record read once (the first only starts the clock).
        assert sample["records"] == RECORDS - 1
        assert sample["seconds"] > 0
    (failover,) = result["failover"]
    assert failover["members"] == 2
    assert 1 <= len(failover["orphaned"]) <= 7  # the victim's share of 8 partitions
    assert len(failover["takeover_s"]) == len(failover["orphaned"])
    # Survivors consume orphaned partitions only after the rebalance they noticed.
    assert all(t >= failover["rebalance_s"] > 0 for t in failover["takeover_s"])
    assert "Failover: 2 members" in stdout
    assert f"{RECORDS:,} x 100 B records over 8 partitions" in stdout
