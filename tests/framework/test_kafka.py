"""The producer wrapper against the embedded broker: what it sends is what arrives.

``Producer.produce`` calls confluent-kafka positionally (keyword parsing costs as much
as the rest of the call), so these tests hold the argument order to account: key,
value, headers, partitioning by key, a broker timestamp of "now", and the delivery
report each have to land where they belong.
"""

from __future__ import annotations

import time
from typing import Any

from rivulet.framework._kafka import Producer, producer_config
from rivulet.framework._wire import OutgoingRecord
from rivulet.framework.testing import KafkaHarness


async def test_produce_sends_key_value_headers_and_reports_delivery(kafka: KafkaHarness) -> None:
    producer = Producer(producer_config(kafka.bootstrap_servers, {}))
    producer.start()
    reports: list[tuple[Any, Any]] = []
    headers = [("ce_id", b"e-1"), ("traceparent", b"00-ab-cd-01"), ("empty", b"")]
    before_ms = int(time.time() * 1000)
    try:
        record = OutgoingRecord("positional", b"order-7", b'{"n":1}', headers)
        assert producer.produce(record, lambda error, message: reports.append((error, message)))
        assert await producer.flush(10) == 0
    finally:
        await producer.close(10)

    assert len(reports) == 1
    error, message = reports[0]
    assert error is None
    assert (message.topic(), message.offset()) == ("positional", 0)
    [read] = await kafka.records("positional", count=1)
    assert (read.key, read.value) == (b"order-7", b'{"n":1}')
    assert list(read.headers) == headers
    assert read.timestamp_type == "CreateTime"
    assert before_ms <= read.timestamp_ms <= int(time.time() * 1000) + 1


async def test_produce_partitions_by_key(tmp_path: Any) -> None:
    async with KafkaHarness.start(tmp_path, partitions=4) as kafka:
        producer = Producer(producer_config(kafka.bootstrap_servers, {}))
        producer.start()
        try:
            records = [
                OutgoingRecord("keyed", key, str(n).encode(), [])
                for n, key in enumerate([b"a", b"b", b"c", b"d"] * 5)
            ]
            await producer.send_and_wait(records)
        finally:
            await producer.close(10)
        read = await kafka.records("keyed", count=len(records))
    partitions_of: dict[bytes | None, set[int]] = {}
    for record in read:
        partitions_of.setdefault(record.key, set()).add(record.partition)
    # Every key stays in one partition, and the four keys do not all share one.
    assert all(len(parts) == 1 for parts in partitions_of.values())
    assert len({next(iter(parts)) for parts in partitions_of.values()}) > 1
