"""The whole shop under load: the order rate it sustains, and order latency at a fixed rate.

Run with ``./dev bench shop [options]`` (or ``.venv/bin/python -m bench.shop``).

Each step is one headless ``rivulet up --rate R --duration D --check`` on a fresh data
directory (embedded broker, eight services as processes on SQLite, the load generator
and webhook receiver in the ``rivulet up`` process), ending with every invariant
checked. A rate counts as **sustained** when the load generator got at least 95 % of
its orders accepted, the invariants held, the saga kept completing orders promptly
(p95 from acceptance to shipped within ``--max-p95-ms``, 2 s) and the backlog left
when the load stopped drained within ``--max-drain`` seconds (the drain includes
``rivulet up``'s three quiet seconds of confirmation): that is, lag stayed bounded.
Above that rate the system still accepts orders and keeps every invariant, but
falls behind: latency grows for as long as the load lasts.

The rates are tried in increasing order until one is not sustained. Then, at
``--latency-rate`` (default: 200 orders/s, the issue's example, or the highest
sustained rate if lower), the time from an order's acceptance to its terminal state
(shipped: after the payment capture) is reported as p50/p95/p99, from the analytics
projection. The machine's load average is printed with each figure: the machine is
shared, and these are figures, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_up(rate: float, duration: float, *, extra: list[str]) -> dict[str, Any]:
    """One ``rivulet up --check`` run; its JSON summary (``ok`` False if it failed)."""
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-shop-") as tmp:
        summary = Path(tmp) / "summary.json"
        command = [
            sys.executable, "-m", "rivulet.cli.main", "up", "--no-live", "--check",
            "--rate", f"{rate:g}", "--duration", f"{duration:g}", "--data-dir", tmp,
            "--summary-json", str(summary), *extra,
        ]  # fmt: skip
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, check=False, timeout=duration + 600
        )
        if not summary.exists():
            tail = (result.stdout + result.stderr)[-2000:]
            return {"ok": False, "rate": rate, "error": tail, "accepted_per_s": 0.0}
        data: dict[str, Any] = json.loads(summary.read_text())
        data["wall_seconds"] = round(time.monotonic() - started, 1)
        return data


def sustained(summary: dict[str, Any], *, max_drain: float, max_p95_ms: float) -> bool:
    """Whether the run kept up with its rate (see the module docstring)."""
    p95 = summary.get("saga_latency_ms", {}).get("shipped", {}).get("p95")
    return bool(
        summary.get("ok")
        and summary["accepted_per_s"] >= 0.95 * summary["rate"]
        and (summary.get("drain_seconds") or 0) <= max_drain
        and p95 is not None
        and p95 <= max_p95_ms
    )


def describe(summary: dict[str, Any]) -> str:
    latency = summary.get("saga_latency_ms", {}).get("shipped", {})
    return (
        f"rate {summary['rate']:>6g}/s  accepted {summary['accepted_per_s']:>7.1f}/s  "
        f"max lag {summary.get('max_lag', '?'):>6}  "
        f"drain {summary.get('drain_seconds', '?'):>5} s  "
        f"p50 {latency.get('p50')} p95 {latency.get('p95')} p99 {latency.get('p99')} ms  "
        f"CPU/order {summary.get('cpu_ms_per_order', {}).get('total', '?')} ms  "
        f"invariants {'ok' if summary.get('ok') else 'FAILED'}  "
        f"load avg {summary.get('load_average', ['?'])[0]} on {summary.get('cpus', '?')} CPUs"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="25,50,100,200,400,800,1000", help="orders/s to try")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per step")
    parser.add_argument("--latency-rate", type=float, default=200.0)
    parser.add_argument("--latency-duration", type=float, default=60.0)
    parser.add_argument("--max-drain", type=float, default=10.0)
    parser.add_argument("--max-p95-ms", type=float, default=2_000.0)
    parser.add_argument(
        "--transient-failure-rate",
        default="0.02",
        help="payment provider's transient failures (retries) during the runs",
    )
    args = parser.parse_args(argv)
    extra = ["--transient-failure-rate", args.transient_failure_rate]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before the runs")
    best: dict[str, Any] | None = None
    for rate in (float(r) for r in args.rates.split(",")):
        summary = run_up(rate, args.duration, extra=extra)
        if "error" in summary:
            print(f"rate {rate:g}/s: rivulet up failed:\n{summary['error']}")
            break
        print(describe(summary), flush=True)
        if not sustained(summary, max_drain=args.max_drain, max_p95_ms=args.max_p95_ms):
            break
        best = summary
    if best is None:
        print("no rate was sustained")
        return 1
    print(f"\nhighest sustained rate: {best['rate']:g} orders/s "
          f"({best['accepted_per_s']} accepted/s, every invariant held)")  # fmt: skip
    latency_rate = min(args.latency_rate, best["rate"])
    summary = run_up(latency_rate, args.latency_duration, extra=extra)
    if "error" in summary:
        print(f"latency run failed:\n{summary['error']}")
        return 1
    cpu = summary.get("cpu_ms_per_order", {})
    if cpu:
        ranked = sorted(((v, k) for k, v in cpu.items() if k != "total"), reverse=True)
        print(
            f"CPU per order at {latency_rate:g} orders/s (load start to drained): "
            f"{cpu['total']} ms in all; " + ", ".join(f"{k} {v}" for v, k in ranked)
        )
    latency = summary["saga_latency_ms"].get("shipped", {})
    print(
        f"order accepted -> shipped at {latency_rate:g} orders/s for {args.latency_duration:g} s: "
        f"p50 {latency.get('p50')} ms, p95 {latency.get('p95')} ms, p99 {latency.get('p99')} ms "
        f"({latency.get('count')} orders; load average {summary['load_average'][0]} on "
        f"{summary['cpus']} CPUs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
