"""The inventory aggregate: stock per SKU and reservations per order, event-sourced.

The warehouse's state is never written directly: commands are *decided* against the
current state into events, events are stored (and published), and the state is the
fold of every stored event (:meth:`Inventory.apply`). A snapshot is that state at a
version; loading the latest snapshot and applying the events after it gives the same
state as replaying everything, only faster.

Rules:

* A reservation is all or nothing across the order's lines, and never takes a SKU
  below zero.
* Each order has at most one reservation, and its outcome is remembered: a repeated
  ``ReserveStock`` gets the same answer again (nothing stored twice); a
  ``ReleaseStock`` for an order that was never reserved leaves a tombstone, so a
  ``ReserveStock`` arriving after it (a late retry) is refused.
* Stock is conserved: for every SKU, ``available + reserved == received``.
* Reorderable SKUs are replenished when they fall to their reorder point (the delivery
  arrives at once in this simulation); limited editions never are.

>>> inv = Inventory()
>>> decision = inv.reserve(ReserveStock(order_id="o-1",
...     lines=(StockLine(sku="MUG-ENAMEL", quantity=2),)))
>>> [type(e).__name__ for e in decision.events][-1]
'StockReserved'
>>> for event in decision.events:
...     inv.apply(event)
>>> inv.available["MUG-ENAMEL"], inv.reserved["MUG-ENAMEL"]
(298, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shop.domain.catalog import CATALOG, Product
from shop.events import (
    InventoryEvent,
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockRejected,
    StockReleased,
    StockReplenished,
    StockReserved,
)

__all__ = [
    "Decision",
    "Inventory",
    "InventoryInvariantError",
    "ReservationStatus",
    "decode_event",
    "encode_event",
]


class InventoryInvariantError(ValueError):
    """An event would break a rule of the aggregate (a bug, never expected input)."""


class ReservationStatus(StrEnum):
    """What happened to an order's reservation."""

    RESERVED = "reserved"
    REJECTED = "rejected"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command leads to: ``events`` to store (and publish), and ``replies`` to
    publish without storing (answers repeated from an earlier decision)."""

    events: tuple[InventoryEvent, ...] = ()
    replies: tuple[InventoryEvent, ...] = ()

    @property
    def publish(self) -> tuple[InventoryEvent, ...]:
        """Everything to publish, stored events first."""
        return self.events + self.replies


@dataclass(slots=True)
class _Reservation:
    status: ReservationStatus
    lines: tuple[StockLine, ...]
    reason: str = ""
    short_skus: tuple[str, ...] = ()


def _merged(lines: Iterable[StockLine]) -> dict[str, int]:
    needed: dict[str, int] = {}
    for line in lines:
        needed[line.sku] = needed.get(line.sku, 0) + line.quantity
    return needed


@dataclass(slots=True)
class Inventory:
    """The warehouse's state at ``version`` (the number of events applied)."""

    catalog: Mapping[str, Product] = field(default_factory=lambda: CATALOG)
    available: dict[str, int] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    version: int = 0
    _reservations: dict[str, _Reservation] = field(default_factory=dict)

    # ----------------------------------------------------------------- commands

    def reserve(self, command: ReserveStock) -> Decision:
        """Decide a reservation (the state is not changed: apply the events)."""
        known = self._reservations.get(command.order_id)
        if known is not None:
            return Decision(replies=(self._answer(command.order_id, known),))
        stocking = self._initial_stocking()
        stock = dict(self.available)
        for event in stocking:
            stock[event.sku] = stock.get(event.sku, 0) + event.quantity
        needed = _merged(command.lines)
        unknown = sorted(sku for sku in needed if sku not in self.catalog)
        short = sorted(sku for sku, qty in needed.items() if stock.get(sku, 0) < qty)
        if unknown:
            rejected = StockRejected(
                order_id=command.order_id, reason="unknown SKU", short_skus=tuple(unknown)
            )
            return Decision(events=(*stocking, rejected))
        if short:
            rejected = StockRejected(
                order_id=command.order_id, reason="out of stock", short_skus=tuple(short)
            )
            return Decision(events=(*stocking, rejected))
        lines = tuple(StockLine(sku=sku, quantity=qty) for sku, qty in needed.items())
        reserved = StockReserved(order_id=command.order_id, lines=lines)
        for sku, qty in needed.items():
            stock[sku] -= qty
        return Decision(events=(*stocking, reserved, *self._reorders(stock, needed)))

    def release(self, command: ReleaseStock) -> Decision:
        """Decide a release; releasing an unknown order leaves a tombstone."""
        known = self._reservations.get(command.order_id)
        if known is None:
            return Decision(events=(StockReleased(order_id=command.order_id, lines=()),))
        if known.status is ReservationStatus.RESERVED:
            return Decision(events=(StockReleased(order_id=command.order_id, lines=known.lines),))
        return Decision()

    def _answer(self, order_id: str, known: _Reservation) -> InventoryEvent:
        if known.status is ReservationStatus.RESERVED:
            return StockReserved(order_id=order_id, lines=known.lines)
        if known.status is ReservationStatus.REJECTED:
            return StockRejected(
                order_id=order_id, reason=known.reason, short_skus=known.short_skus
            )
        return StockRejected(order_id=order_id, reason="order already cancelled")

    def _initial_stocking(self) -> tuple[StockReplenished, ...]:
        if self.received:
            return ()
        return tuple(
            StockReplenished(sku=p.sku, quantity=p.initial_stock)
            for p in self.catalog.values()
            if p.initial_stock > 0
        )

    def _reorders(self, stock: Mapping[str, int], touched: Iterable[str]) -> list[StockReplenished]:
        orders = []
        for sku in sorted(touched):
            product = self.catalog[sku]
            if product.reorder_quantity > 0 and stock[sku] <= product.reorder_point:
                orders.append(StockReplenished(sku=sku, quantity=product.reorder_quantity))
        return orders

    # ----------------------------------------------------------------- events

    def apply(self, event: InventoryEvent) -> None:
        """Fold one stored event into the state."""
        if isinstance(event, StockReplenished):
            self.available[event.sku] = self.available.get(event.sku, 0) + event.quantity
            self.received[event.sku] = self.received.get(event.sku, 0) + event.quantity
            self.reserved.setdefault(event.sku, 0)
        elif isinstance(event, StockReserved):
            self._check_new(event.order_id)
            for line in event.lines:
                left = self.available.get(line.sku, 0) - line.quantity
                if left < 0:
                    raise InventoryInvariantError(
                        f"reserving {line.quantity} x {line.sku} for {event.order_id} would "
                        f"leave {left}"
                    )
            for line in event.lines:
                self.available[line.sku] -= line.quantity
                self.reserved[line.sku] = self.reserved.get(line.sku, 0) + line.quantity
            self._reservations[event.order_id] = _Reservation(
                ReservationStatus.RESERVED, event.lines
            )
        elif isinstance(event, StockRejected):
            self._check_new(event.order_id)
            self._reservations[event.order_id] = _Reservation(
                ReservationStatus.REJECTED, (), event.reason, event.short_skus
            )
        else:
            self._release(event)
        self.version += 1

    def _check_new(self, order_id: str) -> None:
        if order_id in self._reservations:
            raise InventoryInvariantError(f"order {order_id} already has a reservation")

    def _release(self, event: StockReleased) -> None:
        known = self._reservations.get(event.order_id)
        if known is not None and known.status is not ReservationStatus.RESERVED:
            raise InventoryInvariantError(f"order {event.order_id} has nothing to release")
        if known is not None and _merged(known.lines) != _merged(event.lines):
            raise InventoryInvariantError(f"release of {event.order_id} differs from its lines")
        for line in event.lines:
            self.available[line.sku] += line.quantity
            self.reserved[line.sku] -= line.quantity
        self._reservations[event.order_id] = _Reservation(ReservationStatus.RELEASED, ())

    # ----------------------------------------------------------------- queries

    def reservation(self, order_id: str) -> tuple[ReservationStatus, tuple[StockLine, ...]] | None:
        """The order's reservation status and lines, if it has one."""
        known = self._reservations.get(order_id)
        return None if known is None else (known.status, known.lines)

    def reservations(self) -> dict[str, tuple[ReservationStatus, tuple[StockLine, ...]]]:
        """Every order's reservation."""
        return {order: (r.status, r.lines) for order, r in self._reservations.items()}

    def violations(self) -> list[str]:
        """Broken invariants (none, unless there is a bug): negative or unconserved stock."""
        problems = []
        for sku in sorted(set(self.available) | set(self.reserved) | set(self.received)):
            available = self.available.get(sku, 0)
            reserved = self.reserved.get(sku, 0)
            received = self.received.get(sku, 0)
            if available < 0 or reserved < 0:
                problems.append(
                    f"{sku}: negative stock (available {available}, reserved {reserved})"
                )
            if available + reserved != received:
                problems.append(
                    f"{sku}: available {available} + reserved {reserved} != received {received}"
                )
        by_sku: dict[str, int] = {}
        for known in self._reservations.values():
            if known.status is ReservationStatus.RESERVED:
                for line in known.lines:
                    by_sku[line.sku] = by_sku.get(line.sku, 0) + line.quantity
        for sku, reserved in self.reserved.items():
            if by_sku.get(sku, 0) != reserved:
                problems.append(
                    f"{sku}: reserved {reserved} but reservations hold {by_sku.get(sku, 0)}"
                )
        return problems

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-ready data."""
        return {
            "version": self.version,
            "available": dict(self.available),
            "reserved": dict(self.reserved),
            "received": dict(self.received),
            "reservations": {
                order: [r.status.value, [[x.sku, x.quantity] for x in r.lines], r.reason,
                        list(r.short_skus)]
                for order, r in self._reservations.items()
            },
        }  # fmt: skip

    @classmethod
    def from_snapshot(
        cls, data: Mapping[str, Any], catalog: Mapping[str, Product] = CATALOG
    ) -> Inventory:
        """The state a :meth:`snapshot` described."""
        return cls(
            catalog=catalog,
            available={str(k): int(v) for k, v in data["available"].items()},
            reserved={str(k): int(v) for k, v in data["reserved"].items()},
            received={str(k): int(v) for k, v in data["received"].items()},
            version=int(data["version"]),
            _reservations={
                str(order): _Reservation(
                    ReservationStatus(status),
                    tuple(StockLine(sku=sku, quantity=qty) for sku, qty in lines),
                    str(reason),
                    tuple(short),
                )
                for order, (status, lines, reason, short) in data["reservations"].items()
            },
        )

    def same_state(self, other: Inventory) -> bool:
        """Whether ``other`` holds the same stock and reservations at the same version."""
        return self.snapshot() == other.snapshot()


_EVENT_TYPES: Mapping[str, type[InventoryEvent]] = {
    cls.__name__: cls for cls in (StockReserved, StockRejected, StockReleased, StockReplenished)
}


def encode_event(event: InventoryEvent) -> tuple[str, str]:
    """``(type, JSON)`` of an event, as the event store keeps it."""
    return type(event).__name__, event.model_dump_json()


def decode_event(event_type: str, data: str | bytes) -> InventoryEvent:
    """The event :func:`encode_event` stored."""
    return _EVENT_TYPES[event_type].model_validate_json(data)
