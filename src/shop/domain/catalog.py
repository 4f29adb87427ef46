"""The catalog: what the shop sells, at what price, how much is stocked and reordered.

A small, fixed catalog is enough for the reference system and keeps every run
comparable. Popularity follows a Zipf-like curve (a few SKUs take most orders), a
handful of SKUs are limited editions that are never reordered (so out-of-stock
cancellations happen in every long run), and the rest are reordered when they run
low.

>>> CATALOG["TEE-CLASSIC-BLK-M"].price_cents
1900
>>> CATALOG["SNEAKER-LTD-01"].reorder_quantity
0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CATALOG", "Product", "popularity_weights"]


@dataclass(frozen=True, slots=True)
class Product:
    """One SKU."""

    sku: str
    name: str
    price_cents: int
    initial_stock: int
    #: Replenish when available stock falls to this level (0 with no reorders).
    reorder_point: int
    #: Units received per reorder; 0 means the SKU is never reordered (limited edition).
    reorder_quantity: int


_PRODUCTS = (
    Product("TEE-CLASSIC-BLK-M", "Classic tee, black, M", 1900, 500, 100, 400),
    Product("TEE-CLASSIC-BLK-L", "Classic tee, black, L", 1900, 500, 100, 400),
    Product("TEE-CLASSIC-WHT-M", "Classic tee, white, M", 1900, 400, 80, 300),
    Product("TEE-CLASSIC-WHT-L", "Classic tee, white, L", 1900, 400, 80, 300),
    Product("HOODIE-ZIP-GRY-M", "Zip hoodie, grey, M", 5900, 200, 40, 150),
    Product("HOODIE-ZIP-GRY-L", "Zip hoodie, grey, L", 5900, 200, 40, 150),
    Product("JEANS-SLIM-32", "Slim jeans, 32", 7900, 150, 30, 120),
    Product("JEANS-SLIM-34", "Slim jeans, 34", 7900, 150, 30, 120),
    Product("SOCKS-3PK", "Socks, pack of 3", 1200, 800, 150, 600),
    Product("CAP-LOGO", "Logo cap", 2400, 300, 60, 200),
    Product("MUG-ENAMEL", "Enamel mug", 1600, 300, 60, 200),
    Product("BOTTLE-STEEL", "Steel bottle", 2900, 250, 50, 200),
    Product("BAG-TOTE", "Canvas tote bag", 2200, 300, 60, 200),
    Product("BACKPACK-25L", "Backpack 25 l", 8900, 120, 25, 100),
    Product("JACKET-RAIN-M", "Rain jacket, M", 12900, 80, 15, 60),
    Product("JACKET-RAIN-L", "Rain jacket, L", 12900, 80, 15, 60),
    Product("SNEAKER-RUN-42", "Running shoe, 42", 11900, 100, 20, 80),
    Product("SNEAKER-RUN-44", "Running shoe, 44", 11900, 100, 20, 80),
    Product("WATCH-FIELD", "Field watch", 24900, 40, 8, 30),
    Product("HEADPHONES-NC", "Noise-cancelling headphones", 29900, 40, 8, 30),
    Product("CAMERA-INSTANT", "Instant camera", 13900, 50, 10, 40),
    Product("SNEAKER-LTD-01", "Limited sneaker, first drop", 21900, 30, 0, 0),
    Product("PRINT-SIGNED-07", "Signed art print, no. 7", 45000, 10, 0, 0),
    Product("VINYL-FIRST-PRESS", "Vinyl, first pressing", 5900, 25, 0, 0),
)

CATALOG: Mapping[str, Product] = MappingProxyType({p.sku: p for p in _PRODUCTS})
"""Every product by SKU, in a fixed order (the order is the popularity rank)."""


def popularity_weights(exponent: float = 1.1) -> dict[str, float]:
    """Relative order frequency per SKU: Zipf's law over the catalog's order.

    >>> w = popularity_weights()
    >>> w["TEE-CLASSIC-BLK-M"] > w["SOCKS-3PK"] > w["VINYL-FIRST-PRESS"]
    True
    """
    return {sku: 1.0 / (rank**exponent) for rank, sku in enumerate(CATALOG, start=1)}
