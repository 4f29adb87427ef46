"""Pricing order requests, status precedence, and the load generator's baskets."""

from __future__ import annotations

from collections import Counter

from shop.domain.catalog import CATALOG
from shop.domain.load import OrderMix, Pacer
from shop.domain.orders import MAX_LINES, next_status, price


def test_prices_come_from_the_catalog_and_lines_of_a_sku_merge() -> None:
    priced = price([("CAP-LOGO", 2), ("SOCKS-3PK", 1), ("CAP-LOGO", 1)])
    assert priced.problems == ()
    assert [(line.sku, line.quantity, line.unit_price_cents) for line in priced.lines] == [
        ("CAP-LOGO", 3, CATALOG["CAP-LOGO"].price_cents),
        ("SOCKS-3PK", 1, CATALOG["SOCKS-3PK"].price_cents),
    ]
    assert priced.total_cents == 3 * 2400 + 1200


def test_every_problem_is_reported_with_where_it_is() -> None:
    priced = price([("CAP-LOGO", 0), ("NOPE", 2), ("MUG-ENAMEL", 1001)])
    assert priced.lines == ()
    assert priced.problems == (
        "lines[0].quantity: must be between 1 and 1000, not 0",
        "lines[1].sku: unknown SKU NOPE",
        "lines[2].quantity: must be between 1 and 1000, not 1001",
    )
    assert price([]).problems == ("lines: an order needs at least one line",)
    assert "at most" in price([("CAP-LOGO", 1)] * (MAX_LINES + 1)).problems[0]


def test_status_never_goes_back_and_terminal_states_stay() -> None:
    assert next_status("placed", "confirmed") == "confirmed"
    assert next_status("shipped", "confirmed") == "shipped"
    assert next_status("confirmed", "cancelled") == "cancelled"
    assert next_status("cancelled", "shipped") == "cancelled"
    assert next_status("shipped", "cancelled") == "shipped"


def test_the_order_mix_is_reproducible_and_realistic() -> None:
    orders = [OrderMix(seed=11).next_order() for _ in range(1)]
    mix = OrderMix(seed=11)
    baskets = [mix.next_order() for _ in range(3_000)]
    assert baskets[0] == orders[0]
    assert all(
        order.lines and len({s for s, _ in order.lines}) == len(order.lines) for order in baskets
    )
    assert all(sku in CATALOG for order in baskets for sku, _ in order.lines)
    sizes = Counter(len(order.lines) for order in baskets)
    assert sizes[1] > sizes[2] > sizes[3] > 0
    skus = Counter(sku for order in baskets for sku, _ in order.lines)
    assert skus["TEE-CLASSIC-BLK-M"] > 5 * skus["VINYL-FIRST-PRESS"] > 0
    bulk = [order for order in baskets if any(q >= 10 for _, q in order.lines)]
    assert 0 < len(bulk) < 100
    assert all(price(list(order.lines)).problems == () for order in baskets)


def test_the_pacer_keeps_an_absolute_schedule() -> None:
    pacer = Pacer(200)
    assert [pacer.due_s(n) for n in (0, 1, 200)] == [0.0, 0.005, 1.0]
