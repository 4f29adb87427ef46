"""The shop's own settings, read once from the environment when a service starts.

The framework's settings (Kafka, database, metrics endpoint) come from ``RIVULET_*``
variables and ``rivulet run`` options; these are the business knobs, from ``SHOP_*``:

================================  =========================================  ==========
Variable                          Meaning                                    Default
================================  =========================================  ==========
``SHOP_HTTP``                     ``host:port`` of the service's JSON API    per service
``SHOP_SEED``                     seed of every simulated decision           ``42``
``SHOP_DECLINE_RATE``             share of payments declined                 ``0.05``
``SHOP_TRANSIENT_FAILURE_RATE``   share of provider calls failing briefly    ``0.02``
``SHOP_PAYMENT_LATENCY_MS``       provider latency, plus up to the jitter    ``5``
``SHOP_PAYMENT_JITTER_MS``        extra provider latency, uniform            ``10``
``SHOP_RESERVE_TIMEOUT_MS``       saga step timeout waiting for inventory    ``30000``
``SHOP_AUTHORIZE_TIMEOUT_MS``     saga step timeout waiting for payments     ``30000``
``SHOP_SNAPSHOT_EVERY``           inventory events between snapshots         ``2000``
``SHOP_WEBHOOK_TIMEOUT_S``        time limit of one webhook delivery         ``5``
================================  =========================================  ==========

>>> s = ShopSettings.from_environ({"SHOP_DECLINE_RATE": "0.5", "SHOP_HTTP": "127.0.0.1:0"})
>>> s.provider.decline_rate, s.http_listen
(0.5, '127.0.0.1:0')
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from shop.domain.payments import ProviderConfig
from shop.domain.saga import SagaTimeouts

__all__ = ["ShopConfigError", "ShopSettings"]


class ShopConfigError(ValueError):
    """A ``SHOP_*`` variable has a value the shop cannot use; the message names it."""


def _number(
    environ: Mapping[str, str], name: str, default: float, kind: type[float] | type[int]
) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ShopConfigError(f"{name}={raw!r} is not a {kind.__name__}") from None


@dataclass(frozen=True, slots=True)
class ShopSettings:
    """Business settings of the shop's services."""

    #: Where the service's JSON API listens (``None``: the service's default port).
    http_listen: str | None = None
    seed: int = 42
    provider: ProviderConfig = field(default_factory=ProviderConfig)
    timeouts: SagaTimeouts = field(default_factory=SagaTimeouts)
    snapshot_every: int = 2_000
    webhook_timeout_s: float = 5.0
    #: Seconds between two scans for saga deadlines that passed.
    timeout_scan_interval_s: float = 0.5

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ShopSettings:
        """Settings from ``SHOP_*`` variables (defaults for the rest)."""
        defaults = cls()
        try:
            provider = ProviderConfig(
                decline_rate=_number(environ, "SHOP_DECLINE_RATE", 0.05, float),
                transient_failure_rate=_number(environ, "SHOP_TRANSIENT_FAILURE_RATE", 0.02, float),
                latency_ms=int(_number(environ, "SHOP_PAYMENT_LATENCY_MS", 5, int)),
                latency_jitter_ms=int(_number(environ, "SHOP_PAYMENT_JITTER_MS", 10, int)),
            )
        except ValueError as exc:
            raise ShopConfigError(f"payment simulator: {exc}") from None
        timeouts = SagaTimeouts(
            reserve_ms=int(_number(environ, "SHOP_RESERVE_TIMEOUT_MS", 30_000, int)),
            authorize_ms=int(_number(environ, "SHOP_AUTHORIZE_TIMEOUT_MS", 30_000, int)),
        )
        if timeouts.reserve_ms <= 0 or timeouts.authorize_ms <= 0:
            raise ShopConfigError(
                "SHOP_RESERVE_TIMEOUT_MS and SHOP_AUTHORIZE_TIMEOUT_MS must be > 0"
            )
        snapshot_every = int(_number(environ, "SHOP_SNAPSHOT_EVERY", defaults.snapshot_every, int))
        if snapshot_every < 1:
            raise ShopConfigError("SHOP_SNAPSHOT_EVERY must be at least 1")
        return cls(
            http_listen=environ.get("SHOP_HTTP") or None,
            seed=int(_number(environ, "SHOP_SEED", defaults.seed, int)),
            provider=provider,
            timeouts=timeouts,
            snapshot_every=snapshot_every,
            webhook_timeout_s=_number(environ, "SHOP_WEBHOOK_TIMEOUT_S", 5.0, float),
        )

    @classmethod
    def load(cls) -> ShopSettings:
        """Settings from this process's environment (called once, when a service starts)."""
        return cls.from_environ(os.environ)
