"""Every API at every advertised version, over real TCP, with a bare wire client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker import EmbeddedBroker
from rivulet.broker.handlers import HANDLERS
from rivulet.protocol.batch import iter_batches
from rivulet.protocol.records import build_batch, decode_batch

from .kafka_wire import WireClient

RANGES = {h.api_key: (h.min_version, h.max_version) for h in HANDLERS}


def versions(api_key: int) -> list[int]:
    low, high = RANGES[api_key]
    return list(range(low, high + 1))


@pytest.fixture
async def client(async_broker: EmbeddedBroker) -> AsyncIterator[WireClient]:
    wire = await WireClient.connect(async_broker.bootstrap_servers)
    yield wire
    await wire.close()


async def create_topic(
    client: WireClient, name: str, partitions: int = 1, configs: dict[str, str] | None = None
) -> Any:
    response = await client.request(
        19,
        5,
        {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
                }
            ],
            "timeout": 5000,
        },
    )
    assert response.topics[0].error_code is ErrorCode.none, response
    return response.topics[0]


async def topic_id(client: WireClient, name: str) -> uuid.UUID:
    response = await client.request(
        3,
        12,
        {
            "topics": [{"name": name, "topic_id": uuid.UUID(int=0)}],
            "include_topic_authorized_operations": False,
        },
    )
    found: uuid.UUID = response.topics[0].topic_id
    return found


def produce_body(topic: str, batch: bytes, partition: int = 0, acks: int = -1) -> dict[str, Any]:
    return {
        "acks": acks,
        "timeout": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": partition, "records": batch}]}],
    }


def fetch_body(
    version: int,
    topic: str,
    tid: uuid.UUID,
    offset: int,
    *,
    max_wait: int = 0,
    min_bytes: int = 0,
    partition_max_bytes: int = 1 << 20,
    max_bytes: int = 50 << 20,
) -> dict[str, Any]:
    return {
        "max_wait": max_wait,
        "min_bytes": min_bytes,
        "max_bytes": max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "topic_id": tid,
                "partitions": [
                    {
                        "partition": 0,
                        "fetch_offset": offset,
                        "partition_max_bytes": partition_max_bytes,
                    }
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }


def values_in(records: bytes) -> list[bytes | None]:
    out: list[bytes | None] = []
    for pos, header in iter_batches(records):
        decoded = decode_batch(records[pos : pos + header.size])
        out += [r.value for r in decoded.records]
    return out


@pytest.mark.parametrize("version", versions(18))
async def test_api_versions_lists_every_handler(client: WireClient, version: int) -> None:
    response = await client.request(
        18, version, {"client_software_name": "t", "client_software_version": "1"}
    )
    assert response.error_code is ErrorCode.none
    advertised = {k.api_key: (k.min_version, k.max_version) for k in response.api_keys}
    assert advertised == RANGES
    # What clients need (KAFKA-CLIENT-NEEDS.md): produce 3-10, fetch 4-16, metadata to 12.
    assert advertised[0][0] <= 3
    assert advertised[0][1] >= 10
    assert advertised[1][0] <= 4
    assert advertised[1][1] >= 16
    assert advertised[3][1] >= 12


async def test_api_versions_too_new_answers_v0_with_unsupported_version(
    client: WireClient,
) -> None:
    correlation_id = await client.send(
        18, 3, {"client_software_name": "t", "client_software_version": "1"}
    )
    await client.receive(18, 3)
    # A version we do not have: header v2, an empty body the broker cannot decode.
    frame = (
        (10).to_bytes(4, "big")
        + (18).to_bytes(2, "big")
        + (99).to_bytes(2, "big")
        + (correlation_id + 1).to_bytes(4, "big")
        + (0).to_bytes(2, "big")
    )
    await client.send_raw(frame)
    got, response = await client.receive(18, 0)
    assert got == correlation_id + 1
    assert response.error_code is ErrorCode.unsupported_version
    assert {k.api_key for k in response.api_keys} == set(RANGES)
    # The connection stays usable: the client retries at a version we support.
    retry = await client.request(
        18, 3, {"client_software_name": "t", "client_software_version": "1"}
    )
    assert retry.error_code is ErrorCode.none


@pytest.mark.parametrize("version", versions(3))
async def test_metadata_auto_creates_and_describes(
    client: WireClient, async_broker: EmbeddedBroker, version: int
) -> None:
    name = f"meta-{version}"
    response = await client.request(
        3,
        version,
        {
            "topics": [{"name": name, "topic_id": uuid.UUID(int=0)}],
            "allow_auto_topic_creation": True,
            "include_topic_authorized_operations": False,
            "include_cluster_authorized_operations": False,
        },
    )
    (broker_entry,) = response.brokers
    assert broker_entry.port == async_broker.broker.port
    assert broker_entry.host == "127.0.0.1"
    (topic,) = response.topics
    assert topic.error_code is ErrorCode.none
    assert topic.name == name
    assert [p.partition_index for p in topic.partitions] == [0]
    node = broker_entry.node_id
    assert topic.partitions[0].leader_id == node
    if version >= 1:
        assert response.controller_id == node
    if version >= 2:
        assert response.cluster_id == async_broker.broker.cluster_id
    if version >= 10:
        assert topic.topic_id == async_broker.broker.topics.get(name).topic_id  # type: ignore[union-attr]


async def test_metadata_errors(client: WireClient) -> None:
    response = await client.request(
        3,
        12,
        {
            "topics": [
                {"name": "nope", "topic_id": uuid.UUID(int=0)},
                {"name": "bad name!", "topic_id": uuid.UUID(int=0)},
                {"name": None, "topic_id": uuid.uuid4()},
            ],
            "allow_auto_topic_creation": False,
            "include_topic_authorized_operations": False,
        },
    )
    codes = [t.error_code for t in response.topics]
    assert codes == [
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.invalid_topic_exception,
        ErrorCode.unknown_topic_id,
    ]


async def test_metadata_all_topics_and_by_id(client: WireClient) -> None:
    await create_topic(client, "a", 2)
    await create_topic(client, "b", 3)
    everything = await client.request(
        3, 12, {"topics": None, "include_topic_authorized_operations": True}
    )
    assert {t.name: len(t.partitions) for t in everything.topics} == {"a": 2, "b": 3}
    assert all(t.topic_authorized_operations > 0 for t in everything.topics)
    v0 = await client.request(3, 0, {"topics": []})
    assert {t.name for t in v0.topics} == {"a", "b"}
    tid = await topic_id(client, "b")
    by_id = await client.request(
        3,
        12,
        {"topics": [{"name": None, "topic_id": tid}], "include_topic_authorized_operations": False},
    )
    assert by_id.topics[0].name == "b"


@pytest.mark.parametrize("version", versions(0))
async def test_produce_every_version_then_fetch(client: WireClient, version: int) -> None:
    name = f"produce-{version}"
    batch = build_batch([(b"k", b"v1"), (None, b"v2")], timestamp_ms=1000)
    response = await client.request(0, version, produce_body(name, batch))
    (partition,) = response.responses[0].partition_responses
    assert partition.error_code is ErrorCode.none
    assert partition.base_offset == 0
    again = await client.request(0, version, produce_body(name, batch))
    assert again.responses[0].partition_responses[0].base_offset == 2
    if version >= 5:
        assert again.responses[0].partition_responses[0].log_start_offset == 0
    fetched = await client.request(1, 4, fetch_body(4, name, uuid.UUID(int=0), 0))
    assert values_in(fetched.responses[0].partitions[0].records) == [b"v1", b"v2"] * 2


@pytest.mark.parametrize("version", versions(1))
async def test_fetch_every_version(client: WireClient, version: int) -> None:
    name = f"fetch-{version}"
    await create_topic(client, name)
    tid = await topic_id(client, name)
    for i in range(3):
        await client.request(0, 9, produce_body(name, build_batch([(None, b"m%d" % i)])))
    response = await client.request(1, version, fetch_body(version, name, tid, 1))
    (topic,) = response.responses
    if version >= 13:
        assert topic.topic_id == tid
    else:
        assert topic.topic == name
    (partition,) = topic.partitions
    assert partition.error_code is ErrorCode.none
    assert partition.high_watermark == 3
    assert partition.last_stable_offset == 3
    if version >= 5:
        assert partition.log_start_offset == 0
    # Whole batches come back: the one holding offset 1, then the next.
    assert values_in(partition.records) == [b"m1", b"m2"]
    if version >= 7:
        assert response.session_id == 0


@pytest.mark.parametrize("version", versions(2))
async def test_list_offsets_every_version(client: WireClient, version: int) -> None:
    name = f"offsets-{version}"
    await create_topic(client, name)
    for i, ts in enumerate([1000, 3000, 2000]):
        await client.request(
            0, 9, produce_body(name, build_batch([(None, b"x%d" % i)], timestamp_ms=ts))
        )
    queries = {-2: (0, -1), -1: (3, -1), 1500: (1, 3000), 3000: (1, 3000), 3001: (-1, -1)}
    if version >= 7:
        queries[-3] = (1, 3000)
    response = await client.request(
        2,
        version,
        {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [
                {
                    "name": name,
                    "partitions": [
                        {"partition_index": 0, "timestamp": ts, "current_leader_epoch": -1}
                        for ts in queries
                    ],
                }
            ],
        },
    )
    got = {
        ts: (p.offset, p.timestamp)
        for ts, p in zip(queries, response.topics[0].partitions, strict=True)
    }
    assert got == queries
    assert all(p.error_code is ErrorCode.none for p in response.topics[0].partitions)


async def test_list_offsets_unknown_partition(client: WireClient) -> None:
    await create_topic(client, "lo")
    response = await client.request(
        2,
        7,
        {
            "replica_id": -1,
            "isolation_level": 0,
            "topics": [
                {"name": "lo", "partitions": [{"partition_index": 5, "timestamp": -1}]},
                {"name": "missing", "partitions": [{"partition_index": 0, "timestamp": -1}]},
            ],
        },
    )
    assert [t.partitions[0].error_code for t in response.topics] == [
        ErrorCode.unknown_topic_or_partition
    ] * 2


@pytest.mark.parametrize("version", versions(19))
async def test_create_topics_every_version(client: WireClient, version: int) -> None:
    body = {
        "topics": [
            {
                "name": "ok",
                "num_partitions": 3,
                "replication_factor": 1,
                "assignments": [],
                "configs": [{"name": "retention.ms", "value": "1000"}],
            },
            {
                "name": "bad-config",
                "num_partitions": 1,
                "replication_factor": 1,
                "assignments": [],
                "configs": [{"name": "retention.ms", "value": "soon"}],
            },
            {
                "name": "bad-rf",
                "num_partitions": 1,
                "replication_factor": 3,
                "assignments": [],
                "configs": [],
            },
            {
                "name": "bad-partitions",
                "num_partitions": 0,
                "replication_factor": -1,
                "assignments": [],
                "configs": [],
            },
        ],
        "timeout": 5000,
        "validate_only": False,
    }
    response = await client.request(19, version, body)
    codes = {t.name: t.error_code for t in response.topics}
    assert codes == {
        "ok": ErrorCode.none,
        "bad-config": ErrorCode.invalid_config,
        "bad-rf": ErrorCode.invalid_replication_factor,
        "bad-partitions": ErrorCode.invalid_partitions,
    }
    assert all(t.error_message for t in response.topics if t.name != "ok")
    ok = next(t for t in response.topics if t.name == "ok")
    if version >= 5:
        assert ok.num_partitions == 3
        assert ok.replication_factor == 1
        configs = {c.name: (c.value, c.config_source) for c in ok.configs}
        assert configs["retention.ms"] == ("1000", 1)
        assert configs["segment.bytes"][1] == 5
    if version >= 7:
        assert ok.topic_id is not None
    again = await client.request(19, version, body)
    assert again.topics[0].error_code is ErrorCode.topic_already_exists


async def test_create_topics_validate_only_and_duplicates(client: WireClient) -> None:
    topic = {
        "name": "dry",
        "num_partitions": 2,
        "replication_factor": 1,
        "assignments": [],
        "configs": [],
    }
    response = await client.request(
        19, 7, {"topics": [topic], "timeout": 1000, "validate_only": True}
    )
    assert response.topics[0].error_code is ErrorCode.none
    assert response.topics[0].num_partitions == 2
    meta = await client.request(
        3,
        12,
        {
            "topics": [{"name": "dry", "topic_id": uuid.UUID(int=0)}],
            "allow_auto_topic_creation": False,
            "include_topic_authorized_operations": False,
        },
    )
    assert meta.topics[0].error_code is ErrorCode.unknown_topic_or_partition
    twice = await client.request(19, 7, {"topics": [topic, topic], "timeout": 1000})
    assert [t.error_code for t in twice.topics] == [ErrorCode.invalid_request] * 2


@pytest.mark.parametrize("version", versions(20))
async def test_delete_topics_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "gone")
    await create_topic(client, "gone-by-id")
    tid = await topic_id(client, "gone-by-id")
    if version >= 6:
        body: dict[str, Any] = {
            "topics": [
                {"name": "gone", "topic_id": uuid.UUID(int=0)},
                {"name": None, "topic_id": tid},
                {"name": "never", "topic_id": uuid.UUID(int=0)},
                {"name": None, "topic_id": uuid.uuid4()},
            ],
            "timeout": 1000,
        }
        expected = [
            ErrorCode.none,
            ErrorCode.none,
            ErrorCode.unknown_topic_or_partition,
            ErrorCode.unknown_topic_id,
        ]
    else:
        body = {"topic_names": ["gone", "gone-by-id", "never"], "timeout": 1000}
        expected = [ErrorCode.none, ErrorCode.none, ErrorCode.unknown_topic_or_partition]
    response = await client.request(20, version, body)
    assert [r.error_code for r in response.responses] == expected
    if version >= 6:
        assert response.responses[1].name == "gone-by-id"
    listing = await client.request(3, 1, {"topics": None})
    assert {t.name for t in listing.topics} == set()


@pytest.mark.parametrize("version", versions(37))
async def test_create_partitions_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "grow", 2)
    response = await client.request(
        37,
        version,
        {
            "topics": [
                {"name": "grow", "count": 5, "assignments": None},
                {"name": "missing", "count": 5, "assignments": None},
            ],
            "timeout": 1000,
            "validate_only": False,
        },
    )
    assert [r.error_code for r in response.results] == [
        ErrorCode.none,
        ErrorCode.unknown_topic_or_partition,
    ]
    shrink = await client.request(
        37,
        version,
        {
            "topics": [{"name": "grow", "count": 3, "assignments": None}],
            "timeout": 1000,
            "validate_only": False,
        },
    )
    assert shrink.results[0].error_code is ErrorCode.invalid_partitions
    meta = await client.request(3, 1, {"topics": [{"name": "grow"}]})
    assert len(meta.topics[0].partitions) == 5


@pytest.mark.parametrize("version", versions(32))
async def test_describe_configs_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "described", configs={"cleanup.policy": "compact"})
    response = await client.request(
        32,
        version,
        {
            "resources": [
                {"resource_type": 2, "resource_name": "described", "configuration_keys": None},
                {
                    "resource_type": 2,
                    "resource_name": "described",
                    "configuration_keys": ["retention.ms"],
                },
                {"resource_type": 4, "resource_name": "", "configuration_keys": None},
                {"resource_type": 2, "resource_name": "missing", "configuration_keys": None},
            ],
            "include_synonyms": True,
            "include_documentation": True,
        },
    )
    everything, one, broker_configs, missing = response.results
    configs = {c.name: c for c in everything.configs}
    assert configs["cleanup.policy"].value == "compact"
    assert configs["cleanup.policy"].config_source == 1
    assert configs["retention.ms"].value == str(7 * 24 * 3600 * 1000)
    assert configs["retention.ms"].config_source == 5
    assert configs["cleanup.policy"].synonyms[0].source == 1
    if version >= 3:
        assert configs["retention.ms"].config_type == 5  # LONG
    assert [c.name for c in one.configs] == ["retention.ms"]
    assert broker_configs.error_code is ErrorCode.none
    assert {c.name for c in broker_configs.configs} >= {"num.partitions", "message.max.bytes"}
    assert all(c.read_only for c in broker_configs.configs)
    assert missing.error_code is ErrorCode.unknown_topic_or_partition


async def describe(client: WireClient, topic: str) -> dict[str, tuple[str | None, int]]:
    response = await client.request(
        32,
        4,
        {"resources": [{"resource_type": 2, "resource_name": topic, "configuration_keys": None}]},
    )
    return {c.name: (c.value, c.config_source) for c in response.results[0].configs}


@pytest.mark.parametrize("version", versions(33))
async def test_alter_configs_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "altered", configs={"cleanup.policy": "compact"})

    async def alter(configs: dict[str, str], validate_only: bool = False) -> Any:
        return await client.request(
            33,
            version,
            {
                "resources": [
                    {
                        "resource_type": 2,
                        "resource_name": "altered",
                        "configs": [{"name": k, "value": v} for k, v in configs.items()],
                    }
                ],
                "validate_only": validate_only,
            },
        )

    dry = await alter({"retention.ms": "5000"}, validate_only=True)
    assert dry.responses[0].error_code is ErrorCode.none
    assert (await describe(client, "altered"))["retention.ms"][1] == 5
    response = await alter({"retention.ms": "5000"})
    assert response.responses[0].error_code is ErrorCode.none
    configs = await describe(client, "altered")
    assert configs["retention.ms"] == ("5000", 1)
    # AlterConfigs replaces the whole set: cleanup.policy is back to its default.
    assert configs["cleanup.policy"] == ("delete", 5)
    bad = await alter({"no.such.config": "1"})
    assert bad.responses[0].error_code is ErrorCode.invalid_config
    broker = await client.request(
        33,
        version,
        {
            "resources": [
                {
                    "resource_type": 4,
                    "resource_name": "",
                    "configs": [{"name": "num.partitions", "value": "3"}],
                }
            ],
            "validate_only": False,
        },
    )
    assert broker.responses[0].error_code is ErrorCode.invalid_request


@pytest.mark.parametrize("version", versions(44))
async def test_incremental_alter_configs_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "inc", configs={"retention.ms": "1000"})

    async def alter(*ops: tuple[str, int, str | None]) -> ErrorCode:
        response = await client.request(
            44,
            version,
            {
                "resources": [
                    {
                        "resource_type": 2,
                        "resource_name": "inc",
                        "configs": [
                            {"name": n, "config_operation": op, "value": v} for n, op, v in ops
                        ],
                    }
                ],
                "validate_only": False,
            },
        )
        code: ErrorCode = response.responses[0].error_code
        return code

    assert await alter(("segment.ms", 0, "60000"), ("retention.ms", 1, None)) is ErrorCode.none
    configs = await describe(client, "inc")
    assert configs["segment.ms"] == ("60000", 1)
    assert configs["retention.ms"][1] == 5
    assert await alter(("cleanup.policy", 2, "compact")) is ErrorCode.none
    assert (await describe(client, "inc"))["cleanup.policy"] == ("delete,compact", 1)
    assert await alter(("cleanup.policy", 3, "delete")) is ErrorCode.none
    assert (await describe(client, "inc"))["cleanup.policy"] == ("compact", 1)
    assert await alter(("cleanup.policy", 3, "compact")) is ErrorCode.invalid_config
    assert await alter(("retention.ms", 2, "5")) is ErrorCode.invalid_config
    assert await alter(("retention.ms", 9, "5")) is ErrorCode.invalid_request
    # A failed resource changes nothing, not even its valid operations.
    assert await alter(("segment.ms", 0, "1"), ("retention.ms", 0, "x")) is ErrorCode.invalid_config
    assert (await describe(client, "inc"))["segment.ms"] == ("60000", 1)


@pytest.mark.parametrize("version", versions(21))
async def test_delete_records_every_version(client: WireClient, version: int) -> None:
    await create_topic(client, "trim")
    for i in range(4):
        await client.request(0, 9, produce_body("trim", build_batch([(None, b"%d" % i)])))

    async def delete(offset: int, partition: int = 0) -> Any:
        response = await client.request(
            21,
            version,
            {
                "topics": [
                    {
                        "name": "trim",
                        "partitions": [{"partition_index": partition, "offset": offset}],
                    }
                ],
                "timeout": 1000,
            },
        )
        return response.topics[0].partitions[0]

    first = await delete(2)
    assert (first.error_code, first.low_watermark) == (ErrorCode.none, 2)
    assert (await delete(1)).low_watermark == 2
    assert (await delete(9)).error_code is ErrorCode.offset_out_of_range
    assert (await delete(0, partition=3)).error_code is ErrorCode.unknown_topic_or_partition
    fetched = await client.request(1, 4, fetch_body(4, "trim", uuid.UUID(int=0), 0))
    assert fetched.responses[0].partitions[0].error_code is ErrorCode.offset_out_of_range
    everything = await delete(-1)
    assert everything.low_watermark == 4


@pytest.mark.parametrize("version", versions(60))
async def test_describe_cluster_every_version(
    client: WireClient, async_broker: EmbeddedBroker, version: int
) -> None:
    response = await client.request(
        60,
        version,
        {
            "include_cluster_authorized_operations": False,
            "endpoint_type": 1,
            "include_fenced_brokers": False,
        },
    )
    assert response.error_code is ErrorCode.none
    assert response.cluster_id == async_broker.broker.cluster_id
    (only,) = response.brokers
    assert only.port == async_broker.broker.port
    if version >= 1:
        controllers = await client.request(
            60,
            version,
            {
                "include_cluster_authorized_operations": False,
                "endpoint_type": 2,
                "include_fenced_brokers": False,
            },
        )
        assert controllers.error_code is ErrorCode.unsupported_endpoint_type
