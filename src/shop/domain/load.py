"""The load generator's orders: realistic baskets drawn from a seeded random source.

Most orders have one line and one unit; popular SKUs dominate (Zipf); a few customers
buy in bulk, which is what the large-orders stream picks out. The same seed gives
the same sequence of orders.

>>> mix = OrderMix(seed=7)
>>> order = mix.next_order()
>>> 1 <= len(order.lines) <= 4 and all(q >= 1 for _, q in order.lines)
True
>>> OrderMix(seed=7).next_order() == order
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shop.domain.catalog import popularity_weights

__all__ = ["OrderMix", "OrderRequest", "Pacer"]

_LINE_COUNTS = ((1, 0.62), (2, 0.25), (3, 0.09), (4, 0.04))
_QUANTITIES = ((1, 0.72), (2, 0.18), (3, 0.06), (4, 0.02), (5, 0.02))
_BULK_SHARE = 0.01
_CUSTOMERS = 5_000


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a customer asks for: ``(sku, quantity)`` lines."""

    customer_id: str
    lines: tuple[tuple[str, int], ...]

    def body(self) -> dict[str, object]:
        """The JSON body of ``POST /orders``."""
        return {
            "customer_id": self.customer_id,
            "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in self.lines],
        }


def _pick(rng: random.Random, table: tuple[tuple[int, float], ...]) -> int:
    values, weights = zip(*table, strict=True)
    choice: int = rng.choices(values, weights)[0]
    return choice


class OrderMix:
    """An endless, reproducible sequence of baskets."""

    def __init__(self, *, seed: int) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not secrets
        weights = popularity_weights()
        self._skus = list(weights)
        self._weights = list(weights.values())

    def next_order(self) -> OrderRequest:
        """The next basket."""
        rng = self._rng
        count = _pick(rng, _LINE_COUNTS)
        skus: list[str] = []
        while len(skus) < count:
            sku = rng.choices(self._skus, self._weights)[0]
            if sku not in skus:
                skus.append(sku)
        bulk = rng.random() < _BULK_SHARE
        lines = tuple(
            (sku, rng.randint(10, 20) if bulk else _pick(rng, _QUANTITIES)) for sku in skus
        )
        customer = f"cus-{rng.randint(1, _CUSTOMERS):05d}"
        return OrderRequest(customer, lines)


class Pacer:
    """When each request of a constant-rate schedule is due (seconds from the start).

    The schedule is absolute (request n is due at n / rate), so a slow moment is caught
    up afterwards instead of lowering the rate for good.

    >>> Pacer(100).due_s(0), Pacer(100).due_s(250)
    (0.0, 2.5)
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = rate

    def due_s(self, index: int) -> float:
        """When request ``index`` (0-based) is due."""
        return index / self.rate
