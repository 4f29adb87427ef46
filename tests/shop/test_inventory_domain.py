"""The inventory aggregate: all-or-nothing reservations, tombstones, conservation, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shop.domain.catalog import CATALOG, Product
from shop.domain.inventory import (
    Decision,
    Inventory,
    InventoryInvariantError,
    ReservationStatus,
    decode_event,
    encode_event,
)
from shop.events import (
    ReleaseStock,
    ReserveStock,
    StockLine,
    StockRejected,
    StockReleased,
    StockReplenished,
    StockReserved,
)

SMALL = {
    "A": Product("A", "a", 100, initial_stock=5, reorder_point=0, reorder_quantity=0),
    "B": Product("B", "b", 100, initial_stock=3, reorder_point=1, reorder_quantity=10),
}


def reserve(order: str, *lines: tuple[str, int]) -> ReserveStock:
    return ReserveStock(order_id=order, lines=tuple(StockLine(sku=s, quantity=q) for s, q in lines))


def release(order: str) -> ReleaseStock:
    return ReleaseStock(order_id=order, reason="test")


def commit(inv: Inventory, decision: Decision) -> Decision:
    for event in decision.events:
        inv.apply(event)
    return decision


def test_the_first_command_stocks_the_warehouse_from_the_catalog() -> None:
    inv = Inventory(catalog=SMALL)
    decision = commit(inv, inv.reserve(reserve("o-1", ("A", 1))))
    stocked = [e for e in decision.events if isinstance(e, StockReplenished)]
    assert [(e.sku, e.quantity) for e in stocked] == [("A", 5), ("B", 3)]
    assert inv.available == {"A": 4, "B": 3}
    assert inv.received == {"A": 5, "B": 3}
    assert inv.version == len(decision.events)


def test_reservation_is_all_or_nothing() -> None:
    inv = Inventory(catalog=SMALL)
    commit(inv, inv.reserve(reserve("o-1", ("A", 4))))
    decision = commit(inv, inv.reserve(reserve("o-2", ("A", 2), ("B", 1))))
    [rejected] = decision.events
    assert isinstance(rejected, StockRejected)
    assert rejected.short_skus == ("A",)
    assert inv.available == {"A": 1, "B": 3}, "B was not touched"
    assert inv.reservation("o-2") == (ReservationStatus.REJECTED, ())


def test_lines_of_one_sku_are_summed_before_checking() -> None:
    inv = Inventory(catalog=SMALL)
    decision = commit(inv, inv.reserve(reserve("o-1", ("A", 3), ("A", 3))))
    assert isinstance(decision.events[-1], StockRejected)
    assert inv.available["A"] == 5


def test_unknown_skus_are_rejected_with_their_names() -> None:
    inv = Inventory(catalog=SMALL)
    decision = inv.reserve(reserve("o-1", ("A", 1), ("ZZZ", 1)))
    rejected = decision.events[-1]
    assert isinstance(rejected, StockRejected)
    assert (rejected.reason, rejected.short_skus) == ("unknown SKU", ("ZZZ",))


def test_a_repeated_reserve_gets_the_same_answer_and_stores_nothing() -> None:
    inv = Inventory(catalog=SMALL)
    commit(inv, inv.reserve(reserve("o-1", ("A", 2))))
    version = inv.version
    again = inv.reserve(reserve("o-1", ("A", 2)))
    assert again.events == ()
    assert again.replies == (
        StockReserved(order_id="o-1", lines=(StockLine(sku="A", quantity=2),)),
    )
    assert inv.version == version


def test_release_gives_stock_back_once() -> None:
    inv = Inventory(catalog=SMALL)
    commit(inv, inv.reserve(reserve("o-1", ("A", 2))))
    decision = commit(inv, inv.release(release("o-1")))
    assert decision.events == (
        StockReleased(order_id="o-1", lines=(StockLine(sku="A", quantity=2),)),
    )
    assert inv.available["A"] == 5
    assert inv.reserved["A"] == 0
    assert inv.release(release("o-1")) == Decision()


def test_release_before_reserve_leaves_a_tombstone_that_refuses_the_late_reserve() -> None:
    inv = Inventory(catalog=SMALL)
    commit(inv, inv.release(release("o-1")))
    decision = inv.reserve(reserve("o-1", ("A", 1)))
    assert decision.events == ()
    [answer] = decision.replies
    assert isinstance(answer, StockRejected)
    assert answer.reason == "order already cancelled"


def test_reorderable_skus_are_replenished_at_their_reorder_point_limited_ones_never() -> None:
    inv = Inventory(catalog=SMALL)
    decision = commit(inv, inv.reserve(reserve("o-1", ("B", 2), ("A", 5))))
    reorders = [e for e in decision.events[2:] if isinstance(e, StockReplenished)]
    assert [(e.sku, e.quantity) for e in reorders] == [("B", 10)]
    assert inv.available == {"A": 0, "B": 11}
    assert inv.violations() == []


def test_apply_refuses_events_that_break_the_rules() -> None:
    inv = Inventory(catalog=SMALL)
    inv.apply(StockReplenished(sku="A", quantity=1))
    with pytest.raises(InventoryInvariantError, match="leave -1"):
        inv.apply(StockReserved(order_id="o-1", lines=(StockLine(sku="A", quantity=2),)))
    assert inv.available["A"] == 1


def test_events_round_trip_through_the_event_store_encoding() -> None:
    event = StockReserved(order_id="o-1", lines=(StockLine(sku="A", quantity=2),))
    assert decode_event(*encode_event(event)) == event


COMMANDS = st.lists(
    st.tuples(
        st.sampled_from(["reserve", "release"]),
        st.integers(0, 15),
        st.lists(
            st.tuples(st.sampled_from(sorted(CATALOG)[:6]), st.integers(1, 60)),
            min_size=1,
            max_size=3,
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(COMMANDS, st.integers(0, 60))
def test_any_commands_conserve_stock_and_snapshots_replay_to_the_same_state(
    commands: list[tuple[str, int, list[tuple[str, int]]]], snapshot_at: int
) -> None:
    inv = Inventory()
    log = []
    snapshot = None
    for kind, order, lines in commands:
        order_id = f"o-{order}"
        decision = (
            inv.reserve(reserve(order_id, *lines))
            if kind == "reserve"
            else inv.release(release(order_id))
        )
        for event in decision.events:
            inv.apply(event)
            log.append(encode_event(event))
            if len(log) == snapshot_at:
                snapshot = inv.snapshot()
        assert all(v >= 0 for v in inv.available.values())
    assert inv.violations() == []
    replayed = Inventory()
    for stored in log:
        replayed.apply(decode_event(*stored))
    assert replayed.same_state(inv)
    if snapshot is not None:
        restored = Inventory.from_snapshot(snapshot)
        for stored in log[snapshot_at:]:
            restored.apply(decode_event(*stored))
        assert restored.same_state(inv)
