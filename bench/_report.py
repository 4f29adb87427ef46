"""Samples, their medians, and the table the broker benchmark prints."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Row", "Sample", "Workload", "format_table", "medians"]

PHASES = ("produce", "consume")
_TITLES = {"rivulet": "rivulet", "kafka": "kafka 0.9", "redis": "redis streams"}

# Reference ceilings of the confluent-kafka Python client on this kind of
# machine (issue 2): its produce() loop with a delivery callback, and
# consume(num_messages=10000) with fetch.queue.backoff.ms=10, at 100-byte records.
PYTHON_CEILINGS: Mapping[tuple[int, str], float] = {
    (100, "produce"): 350e3,
    (100, "consume"): 1.0e6,
}
# "Several times Redis Streams", read as at least three times.
SEVERAL = 3.0


@dataclass(frozen=True)
class Workload:
    """How many records of what size, produced with which acks."""

    records: int
    size: int
    acks: int

    @property
    def label(self) -> str:
        """E.g. ``1,000,000 x 100 B``."""
        unit = f"{self.size // 1024} KiB" if self.size % 1024 == 0 else f"{self.size} B"
        return f"{self.records:,} x {unit}"


@dataclass(frozen=True)
class Sample:
    """One timed phase of one measurement."""

    round: int
    client: str
    system: str
    workload: Workload
    phase: str
    seconds: float
    records: int

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Row:
    """The median rates of one (client, workload, phase) for each system measured."""

    client: str
    workload: Workload
    phase: str
    rates: Mapping[str, float]

    def ratio(self, over: str) -> float | None:
        """Rivulet's median over ``over``'s, if both were measured."""
        mine, theirs = self.rates.get("rivulet"), self.rates.get(over)
        if mine is None or not theirs:
            return None
        return mine / theirs


def medians(samples: Iterable[Sample]) -> list[Row]:
    """Group samples by (client, workload, phase) and take each system's median rate."""
    groups: dict[tuple[str, Workload, str], dict[str, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for s in samples:
        groups[(s.client, s.workload, s.phase)][s.system].append(s.rate)
    return [
        Row(
            client,
            workload,
            phase,
            {system: statistics.median(r) for system, r in by_system.items()},
        )
        for (client, workload, phase), by_system in groups.items()
    ]


def _rate(rate: float | None, size: int) -> str:
    if rate is None:
        return "-"
    text = f"{rate / 1e6:.2f} M/s" if rate >= 1e6 else f"{rate / 1e3:.0f} k/s"
    return f"{text} {rate * size / 1e6:6.1f} MB/s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(value: float | None, at_least: float) -> str:
    if value is None:
        return "n/a"
    return "ok" if value >= at_least else "below"


def targets(row: Row) -> str:
    """The issue's targets for this row, each with whether this run met it."""
    if row.client == "kcat":
        return f">=0.9x kafka: {_verdict(row.ratio('kafka'), 0.9)}"
    parts = []
    ceiling = PYTHON_CEILINGS.get((row.workload.size, row.phase))
    if ceiling is not None:
        mine = row.rates.get("rivulet")
        share = None if mine is None else mine / ceiling
        parts.append(f">=0.9x ceiling {ceiling / 1e3:.0f} k/s: {_verdict(share, 0.9)}")
    parts.append(f">={SEVERAL:.0f}x redis: {_verdict(row.ratio('redis'), SEVERAL)}")
    return "; ".join(parts)


def format_table(rows: Sequence[Row], systems: Sequence[str]) -> str:
    """The results table: median rates per system, Rivulet's ratios, the targets."""
    header = [
        "client",
        "workload",
        "acks",
        "phase",
        *(_TITLES.get(s, s) for s in systems),
        "rivulet/kafka",
        "rivulet/redis",
        "targets (not asserted)",
    ]
    order = {p: i for i, p in enumerate(PHASES)}
    ordered = sorted(
        rows,
        key=lambda r: (
            r.client,
            -r.workload.records,
            r.workload.size,
            -r.workload.acks,
            order[r.phase],
        ),
    )
    lines = [header]
    lines += [
        [
            row.client,
            row.workload.label,
            str(row.workload.acks),
            row.phase,
            *(_rate(row.rates.get(s), row.workload.size) for s in systems),
            _ratio(row.ratio("kafka")),
            _ratio(row.ratio("redis")),
            targets(row),
        ]
        for row in ordered
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
