"""The ``make`` fixture: every log test runs against both log implementations."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from rivulet.storage import LogConfig, PartitionLog
from rivulet.storage.memory import MemoryLog
from rivulet.storage.segmented import open_log

from .storage_helpers import Make


@pytest.fixture(params=["memory", "segmented"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Opens logs of one kind (``config`` with ``changes`` applied); closes them after."""
    logs: list[PartitionLog] = []

    def factory(config: LogConfig | None = None, **changes: object) -> PartitionLog:
        config = dataclasses.replace(config or LogConfig(), **changes)  # type: ignore[arg-type]
        log: PartitionLog
        if request.param == "memory":
            log = MemoryLog(config)
        else:
            log = open_log(tmp_path / f"log-{len(logs)}", config)
        logs.append(log)
        return log

    yield factory
    for log in logs:
        log.close()
