"""The consumer-group benchmark runs end to end, so that it cannot rot between full runs.

A tiny topic, one round of groups of 1 and 2 members, and one failover round
of 2 members, against an embedded broker without the initial rebalance delay.
What is checked is that every measurement happened and counted every record,
never how fast. The failover round waits out a real session timeout (6 s, the
broker's minimum), which is most of this test's time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from rivulet.broker import ThreadedBroker

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 800  # --scale 0.0004 of 2,000,000


def test_groups_benchmark_measures_throughput_and_failover(
    broker_factory: Callable[..., ThreadedBroker], tmp_path: Path
) -> None:
    broker = broker_factory(group_initial_rebalance_delay_ms=0)
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.groups",
            "--bootstrap-servers", broker.bootstrap_servers,
            "--rounds", "1", "--scale", "0.0004", "--members", "1,2",
            "--failover-rounds", "1", "--failover-members", "2", "--rate", "400",
            "--json", str(result_file),
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

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
    assert "Failover: 2 members" in done.stdout
    assert f"{RECORDS:,} x 100 B records over 8 partitions" in done.stdout
