"""Idempotent producers over real TCP, with a bare wire client that picks its own sequences.

InitProducerId at every advertised version; a resent batch is acknowledged
with its original offset and stored once; gaps, stale epochs and missing
sequences get Kafka's error codes; producer ids and producer state outlive a
broker restart.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker import EmbeddedBroker
from rivulet.broker.handlers import HANDLERS
from rivulet.broker.producer_ids import BLOCK_FILE, BLOCK_SIZE, ProducerIdAllocator
from rivulet.protocol.batch import iter_batches
from rivulet.protocol.records import Record, decode_batch, encode_batch

from .kafka_wire import WireClient

INIT_PRODUCER_ID = 22
PRODUCE = 0
FETCH = 1
(INIT_RANGE,) = [(h.min_version, h.max_version) for h in HANDLERS if h.api_key == INIT_PRODUCER_ID]
(PRODUCE_RANGE,) = [(h.min_version, h.max_version) for h in HANDLERS if h.api_key == PRODUCE]


@pytest.fixture
async def client(async_broker: EmbeddedBroker) -> AsyncIterator[WireClient]:
    wire = await WireClient.connect(async_broker.bootstrap_servers)
    yield wire
    await wire.close()


def batch(seq: int, count: int = 1, *, pid: int, epoch: int = 0, tag: bytes = b"v") -> bytes:
    """A batch as an idempotent producer sends it, stamped with the current time."""
    records = [Record(value=b"%s%d" % (tag, seq + i), offset_delta=i) for i in range(count)]
    return encode_batch(
        records,
        base_timestamp=time.time_ns() // 1_000_000,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
    )


async def init_producer_id(
    client: WireClient, version: int = 4, *, pid: int = -1, epoch: int = -1, txn: str | None = None
) -> Any:
    return await client.request(
        INIT_PRODUCER_ID,
        version,
        {
            "transactional_id": txn,
            "transaction_timeout": 60_000,
            "producer_id": pid,
            "producer_epoch": epoch,
        },
    )


async def produce(client: WireClient, topic: str, data: bytes, version: int = 9) -> Any:
    response = await client.request(
        PRODUCE,
        version,
        {
            "acks": -1,
            "timeout": 5000,
            "transactional_id": None,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": data}]}],
        },
    )
    (partition,) = response.responses[0].partition_responses
    return partition


async def values(client: WireClient, topic: str) -> list[bytes | None]:
    """Every record value of partition 0, read with Fetch v4."""
    response = await client.request(
        FETCH,
        4,
        {
            "max_wait": 0,
            "min_bytes": 0,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "topics": [
                {
                    "topic": topic,
                    "partitions": [
                        {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                    ],
                }
            ],
        },
    )
    records = response.responses[0].partitions[0].records or b""
    out: list[bytes | None] = []
    for pos, header in iter_batches(records):
        out += [r.value for r in decode_batch(records[pos : pos + header.size]).records]
    return out


# -- InitProducerId ----------------------------------------------------------------


@pytest.mark.parametrize("version", range(INIT_RANGE[0], INIT_RANGE[1] + 1))
async def test_init_producer_id_hands_out_fresh_ids(client: WireClient, version: int) -> None:
    first = await init_producer_id(client, version)
    second = await init_producer_id(client, version)
    for response in (first, second):
        assert response.error_code is ErrorCode.none
        assert response.producer_epoch == 0
    assert first.producer_id >= 0
    assert second.producer_id > first.producer_id


@pytest.mark.parametrize("version", [3, 4, 5])
async def test_init_producer_id_bumps_the_epoch_of_a_known_producer(
    client: WireClient, version: int
) -> None:
    first = await init_producer_id(client, version)
    bumped = await init_producer_id(
        client, version, pid=first.producer_id, epoch=first.producer_epoch
    )
    assert bumped.error_code is ErrorCode.none
    assert (bumped.producer_id, bumped.producer_epoch) == (first.producer_id, 1)
    # An id this broker never issued, or an exhausted epoch: a fresh id instead.
    stranger = await init_producer_id(client, version, pid=10**12, epoch=4)
    assert stranger.producer_id not in (first.producer_id, 10**12)
    assert stranger.producer_epoch == 0
    exhausted = await init_producer_id(client, version, pid=first.producer_id, epoch=32766)
    assert exhausted.producer_id != first.producer_id
    assert exhausted.producer_epoch == 0


async def test_init_producer_id_refuses_what_it_cannot_serve(client: WireClient) -> None:
    for txn in ("orders-txn", ""):
        response = await init_producer_id(client, 4, txn=txn)
        assert response.error_code is ErrorCode.invalid_request
        assert (response.producer_id, response.producer_epoch) == (-1, -1)
    half = await init_producer_id(client, 4, pid=5, epoch=-1)
    assert half.error_code is ErrorCode.invalid_request
    # The connection is still good.
    assert (await init_producer_id(client, 0)).error_code is ErrorCode.none


async def test_producer_ids_are_never_reused_after_a_restart(broker_dir: Path) -> None:
    async with EmbeddedBroker(broker_dir) as first:
        wire = await WireClient.connect(first.bootstrap_servers)
        before = [(await init_producer_id(wire)).producer_id for _ in range(3)]
        await wire.close()
    assert (broker_dir / BLOCK_FILE).read_text() == f"{BLOCK_SIZE}\n"
    async with EmbeddedBroker(broker_dir) as again:
        wire = await WireClient.connect(again.bootstrap_servers)
        after = (await init_producer_id(wire)).producer_id
        # An epoch bump still works for an id issued before the restart.
        bumped = await init_producer_id(wire, pid=before[0], epoch=0)
        await wire.close()
    assert before == [0, 1, 2]
    assert after == BLOCK_SIZE
    assert (bumped.producer_id, bumped.producer_epoch) == (before[0], 1)


def test_ids_are_reserved_a_block_at_a_time(tmp_path: Path) -> None:
    ids = ProducerIdAllocator(tmp_path, block_size=3)
    assert [ids.allocate() for _ in range(4)] == [0, 1, 2, 3]
    assert (tmp_path / BLOCK_FILE).read_text() == "6\n"
    again = ProducerIdAllocator(tmp_path, block_size=3)
    assert again.issued(5)
    assert not again.issued(6)
    assert again.allocate() == 6
    assert (tmp_path / BLOCK_FILE).read_text() == "9\n"


@pytest.fixture
def damaged_dir(broker_dir: Path) -> Path:
    """A data directory whose producer id reservation cannot be read."""
    broker_dir.mkdir(parents=True)
    (broker_dir / BLOCK_FILE).write_text("twelve\n")
    return broker_dir


def test_an_unreadable_id_block_file_stops_allocation(damaged_dir: Path) -> None:
    with pytest.raises(OSError, match="unreadable"):
        ProducerIdAllocator(damaged_dir).allocate()
    assert (damaged_dir / BLOCK_FILE).read_text() == "twelve\n"


async def test_init_producer_id_is_retriable_while_ids_cannot_be_reserved(
    damaged_dir: Path,
) -> None:
    async with EmbeddedBroker(damaged_dir) as embedded:
        wire = await WireClient.connect(embedded.bootstrap_servers)
        response = await init_producer_id(wire)
        await wire.close()
    # Retriable: the client asks again, and succeeds once the file is fixed.
    assert response.error_code is ErrorCode.coordinator_not_available


# -- Produce -----------------------------------------------------------------------


@pytest.mark.parametrize("version", range(PRODUCE_RANGE[0], PRODUCE_RANGE[1] + 1))
async def test_a_resent_batch_gets_its_original_offset_and_is_stored_once(
    client: WireClient, version: int
) -> None:
    topic = f"idempotent-{version}"
    pid = (await init_producer_id(client)).producer_id
    await produce(client, topic, encode_batch([Record(value=b"plain")]), version)
    first = await produce(client, topic, batch(0, 3, pid=pid), version)
    second = await produce(client, topic, batch(3, pid=pid), version)
    assert (first.error_code, first.base_offset) == (ErrorCode.none, 1)
    assert (second.error_code, second.base_offset) == (ErrorCode.none, 4)
    for resent, offset in ((batch(0, 3, pid=pid), 1), (batch(3, pid=pid), 4)):
        again = await produce(client, topic, resent, version)
        assert (again.error_code, again.base_offset) == (ErrorCode.none, offset)
    assert await values(client, topic) == [b"plain", b"v0", b"v1", b"v2", b"v3"]


async def test_a_sequence_gap_is_out_of_order(client: WireClient) -> None:
    pid = (await init_producer_id(client)).producer_id
    await produce(client, "gap", batch(0, 2, pid=pid))
    gap = await produce(client, "gap", batch(3, pid=pid))
    assert gap.error_code is ErrorCode.out_of_order_sequence_number
    assert gap.base_offset == -1
    assert "expected 2" in gap.error_message
    assert (await produce(client, "gap", batch(2, pid=pid))).base_offset == 2
    assert await values(client, "gap") == [b"v0", b"v1", b"v2"]


async def test_an_older_epoch_is_fenced_and_a_new_one_starts_at_zero(client: WireClient) -> None:
    first = await init_producer_id(client)
    pid = first.producer_id
    await produce(client, "epochs", batch(0, pid=pid))
    bumped = await init_producer_id(client, pid=pid, epoch=0)
    assert bumped.producer_epoch == 1
    wrong_start = await produce(client, "epochs", batch(5, pid=pid, epoch=1))
    assert wrong_start.error_code is ErrorCode.out_of_order_sequence_number
    assert (
        await produce(client, "epochs", batch(0, pid=pid, epoch=1, tag=b"e1-"))
    ).base_offset == 1
    stale = await produce(client, "epochs", batch(1, pid=pid, epoch=0))
    assert stale.error_code is ErrorCode.invalid_producer_epoch
    assert await values(client, "epochs") == [b"v0", b"e1-0"]


async def test_a_producer_id_without_a_sequence_is_an_invalid_record(client: WireClient) -> None:
    pid = (await init_producer_id(client)).producer_id
    response = await produce(client, "no-seq", batch(-1, pid=pid))
    assert response.error_code is ErrorCode.invalid_record


async def test_one_request_with_a_good_and_a_bad_partition(client: WireClient) -> None:
    pid = (await init_producer_id(client)).producer_id
    response = await client.request(
        PRODUCE,
        9,
        {
            "acks": -1,
            "timeout": 5000,
            "transactional_id": None,
            "topic_data": [
                {"name": "good", "partition_data": [{"index": 0, "records": batch(0, pid=pid)}]},
                {"name": "bad", "partition_data": [{"index": 0, "records": batch(-1, pid=pid)}]},
            ],
        },
    )
    codes = {t.name: t.partition_responses[0].error_code for t in response.responses}
    assert codes == {"good": ErrorCode.none, "bad": ErrorCode.invalid_record}


async def test_deduplication_survives_a_broker_restart(broker_dir: Path) -> None:
    async with EmbeddedBroker(broker_dir) as first:
        wire = await WireClient.connect(first.bootstrap_servers)
        pid = (await init_producer_id(wire)).producer_id
        for seq in range(6):
            assert (await produce(wire, "restart", batch(seq, pid=pid))).base_offset == seq
        await wire.close()
    async with EmbeddedBroker(broker_dir) as again:
        wire = await WireClient.connect(again.bootstrap_servers)
        for seq in range(1, 6):
            assert (await produce(wire, "restart", batch(seq, pid=pid))).base_offset == seq
        gap = await produce(wire, "restart", batch(7, pid=pid))
        assert gap.error_code is ErrorCode.out_of_order_sequence_number
        assert (await produce(wire, "restart", batch(6, pid=pid))).base_offset == 6
        assert await values(wire, "restart") == [b"v%d" % i for i in range(7)]
        await wire.close()
