"""Framework benchmarks: figures, never pass/fail.

``python -m bench.framework --codec`` measures the JSON codec choices of
docs/decisions/0005-framework-json-codec.md on a ~220-byte event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime

from rivulet import Event


class OrderPlaced(Event):
    """The ~220-byte event of the codec measurements."""

    order_id: str
    customer_id: str
    sku: str
    qty: int
    unit_price: float
    currency: str
    placed_at: datetime
    note: str | None = None


SAMPLE = OrderPlaced(
    order_id="ord-7f3a9c2e-5b1d-4e8a",
    customer_id="cust-000123456",
    sku="SKU-ABC-12345",
    qty=3,
    unit_price=1299.99,
    currency="EUR",
    placed_at=datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC),
    note="leave at the door please, ring twice",
)


def codec_cases() -> dict[str, Callable[[], object]]:
    """The decode and encode variants compared, by name (orjson's when it is installed)."""
    import pydantic_core  # noqa: PLC0415

    data = SAMPLE.__pydantic_serializer__.to_json(SAMPLE)
    serializer = OrderPlaced.__pydantic_serializer__
    cases: dict[str, Callable[[], object]] = {
        "decode model_validate_json": lambda: OrderPlaced.model_validate_json(data),
        "decode json.loads + model_validate": lambda: OrderPlaced.model_validate(json.loads(data)),
        "encode __pydantic_serializer__.to_json": lambda: serializer.to_json(SAMPLE),
        "encode pydantic_core.to_json": lambda: pydantic_core.to_json(SAMPLE),
        "encode model_dump_json().encode()": lambda: SAMPLE.model_dump_json().encode(),
        "encode json.dumps(model_dump(mode=json))": lambda: json.dumps(
            SAMPLE.model_dump(mode="json")
        ).encode(),
    }
    try:
        import orjson  # noqa: PLC0415 - not a dependency; compared when present
    except ImportError:
        return cases
    cases["decode orjson.loads + model_validate"] = lambda: OrderPlaced.model_validate(
        orjson.loads(data)
    )
    cases["encode orjson.dumps(model_dump())"] = lambda: orjson.dumps(SAMPLE.model_dump())
    return dict(sorted(cases.items(), key=lambda item: item[0].split()[0]))


def run_codec(number: int) -> None:
    """Print us/event and events/s for each codec variant (median of 3 runs)."""
    size = len(SAMPLE.__pydantic_serializer__.to_json(SAMPLE))
    print(f"codec: {size}-byte {OrderPlaced.__name__}, median of 3 runs x best of 3 x {number}")
    for name, case in codec_cases().items():
        runs = [min(timeit.repeat(case, number=number, repeat=3)) / number for _ in range(3)]
        seconds = statistics.median(runs)
        print(f"  {name:44s} {seconds * 1e6:6.2f} us  {1 / seconds / 1000:8.0f} k/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.framework", description=__doc__)
    parser.add_argument("--codec", action="store_true", help="measure the JSON codec choices")
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing")
    args = parser.parse_args(argv)
    if args.codec:
        run_codec(args.number)
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
