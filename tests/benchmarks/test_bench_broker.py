"""The broker benchmark runs end to end, so that it cannot rot between full runs.

A tiny workload against the embedded broker only (no Kafka, no Redis), one
round, both clients and both record sizes; what is checked is that every phase
was measured and every record counted, never how fast.
"""

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        shutil.which("kcat") is None, reason="kcat is missing: ./dev test installs it"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("rivulet.cli.main") is None,
        reason="the rivulet command (rivulet.cli.main) does not exist yet",
    ),
]


def test_broker_benchmark_measures_every_phase_against_the_embedded_broker(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.broker",
            "--systems",
            "rivulet",
            "--rounds",
            "1",
            "--scale",
            "0.0005",
            "--acks",
            "1",
            "--no-warmup",
            "--json",
            str(result_file),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    samples = json.loads(result_file.read_text())["samples"]
    measured = {(s["client"], s["workload"]["size"], s["phase"]) for s in samples}
    assert measured == {
        (client, size, phase)
        for client in ("kcat", "python")
        for size in (100, 1024)
        for phase in ("produce", "consume")
    }
    for sample in samples:
        assert sample["system"] == "rivulet"
        assert sample["seconds"] > 0
        assert 0 < sample["records"] <= sample["workload"]["records"]
    # The produce side counts every record it was asked for (acknowledged or checked).
    assert all(s["records"] == s["workload"]["records"] for s in samples if s["phase"] == "produce")
    table = done.stdout
    assert "rivulet" in table
    assert "500 x 100 B" in table
    assert "50 x 1 KiB" in table
