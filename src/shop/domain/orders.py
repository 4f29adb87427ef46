"""Orders: pricing a requested order against the catalog, and the order's status.

>>> priced = price([("MUG-ENAMEL", 2), ("CAP-LOGO", 1), ("MUG-ENAMEL", 1)])
>>> [(l.sku, l.quantity) for l in priced.lines], priced.total_cents
([('MUG-ENAMEL', 3), ('CAP-LOGO', 1)], 7200)
>>> price([("NOPE", 1)]).problems
('lines[0].sku: unknown SKU NOPE',)
>>> next_status("confirmed", "placed"), next_status("shipped", "cancelled")
('confirmed', 'shipped')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shop.domain.catalog import CATALOG, Product
from shop.events import OrderLine

__all__ = [
    "MAX_LINES",
    "MAX_QUANTITY",
    "ORDER_STATES",
    "TERMINAL_STATES",
    "Priced",
    "next_status",
    "price",
]

MAX_LINES = 50
MAX_QUANTITY = 1_000

ORDER_STATES = ("placed", "confirmed", "shipped", "cancelled")
TERMINAL_STATES = frozenset({"shipped", "cancelled"})
_RANK = {"placed": 0, "confirmed": 1, "shipped": 2}


@dataclass(frozen=True, slots=True)
class Priced:
    """An order's lines at catalog prices, or why it cannot be accepted."""

    lines: tuple[OrderLine, ...] = ()
    total_cents: int = 0
    problems: tuple[str, ...] = ()


def price(requested: Sequence[tuple[str, int]], catalog: Mapping[str, Product] = CATALOG) -> Priced:
    """Price ``(sku, quantity)`` pairs; lines of one SKU are merged, in first-seen order."""
    problems = []
    if not requested:
        problems.append("lines: an order needs at least one line")
    if len(requested) > MAX_LINES:
        problems.append(f"lines: at most {MAX_LINES} lines per order")
    merged: dict[str, int] = {}
    for index, (sku, quantity) in enumerate(requested):
        if sku not in catalog:
            problems.append(f"lines[{index}].sku: unknown SKU {sku}")
        if not 0 < quantity <= MAX_QUANTITY:
            problems.append(
                f"lines[{index}].quantity: must be between 1 and {MAX_QUANTITY}, not {quantity}"
            )
        merged[sku] = merged.get(sku, 0) + quantity
    if problems:
        return Priced(problems=tuple(problems))
    lines = tuple(
        OrderLine(sku=sku, quantity=qty, unit_price_cents=catalog[sku].price_cents)
        for sku, qty in merged.items()
    )
    return Priced(lines, sum(line.quantity * line.unit_price_cents for line in lines))


def next_status(current: str, reported: str) -> str:
    """The order's status after a status event, whatever order events arrive in.

    A terminal status never changes; otherwise the most advanced status wins
    (a late ``confirmed`` does not undo ``shipped``).
    """
    if current in TERMINAL_STATES:
        return current
    if reported == "cancelled":
        return reported
    return reported if _RANK[reported] > _RANK[current] else current
