"""The one place the framework touches the broker package: starting it in-process.

When no bootstrap servers are configured, an app (or ``rivulet run``, or the test
fixture) runs on the embedded broker, keeping its data under ``<data_dir>/broker``.
Everything else talks to brokers over the Kafka protocol only.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

__all__ = ["broker_on_loop", "embedded_broker"]


@asynccontextmanager
async def embedded_broker(data_dir: Path | None, **overrides: Any) -> AsyncIterator[str]:
    """Run the embedded broker on a free port for the block; yields its bootstrap address.

    ``data_dir=None`` keeps the broker's data in memory (tests); ``overrides`` are
    broker settings (``num_partitions=3``, ``group_initial_rebalance_delay_ms=0``).
    """
    from rivulet.broker import EmbeddedBroker  # noqa: PLC0415 - only when no Kafka is configured

    async with EmbeddedBroker(data_dir, **overrides) as broker:
        yield broker.bootstrap_servers


def broker_on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether a broker of this process is served on ``loop`` (the app's own, or a test's).

    Code on that loop must not block it waiting for the broker: nothing would answer.
    """
    if "rivulet.broker" not in sys.modules:
        return False  # never imported: no broker runs in this process
    from rivulet.broker import serving_on  # noqa: PLC0415 - see the module docstring

    return serving_on(loop)
