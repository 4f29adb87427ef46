"""Running shop services in-process on the test's embedded broker.

Each service is its real :class:`~rivulet.App` (handlers, database, outbox, JSON API on
a free port); only the process boundary is missing, which ``tests/cli/test_up.py``
covers.
"""

from __future__ import annotations

import pytest

QUIET_PAYMENTS = {
    "SHOP_HTTP": "127.0.0.1:0",
    "SHOP_DECLINE_RATE": "0",
    "SHOP_TRANSIENT_FAILURE_RATE": "0",
    "SHOP_PAYMENT_LATENCY_MS": "0",
    "SHOP_PAYMENT_JITTER_MS": "0",
}


@pytest.fixture
def shop_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Services on free ports with a payment provider that always says yes, at once."""
    for name, value in QUIET_PAYMENTS.items():
        monkeypatch.setenv(name, value)
    return monkeypatch
