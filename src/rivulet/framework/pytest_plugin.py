"""pytest fixtures for Rivulet services (loaded through the ``pytest11`` entry point).

``kafka``: a :class:`~rivulet.framework.testing.KafkaHarness` on an in-memory embedded
broker, started on a free port for the test and stopped after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from rivulet.framework.testing import KafkaHarness


@pytest.fixture
async def kafka(tmp_path: Path) -> AsyncIterator[KafkaHarness]:
    """An embedded broker for one test, with helpers to publish and to read events."""
    from rivulet.framework.testing import KafkaHarness  # noqa: PLC0415 - keep plugin loading light

    async with KafkaHarness.start(tmp_path) as harness:
        yield harness
