"""Every consumer group API at every advertised version, over TCP, with real flows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker import EmbeddedBroker
from rivulet.broker.handlers import HANDLERS

from .kafka_wire import WireClient

E = ErrorCode
RANGES = {h.api_key: (h.min_version, h.max_version) for h in HANDLERS}
FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
COMMIT, FETCH, DESCRIBE, LIST, DELETE_GROUPS, OFFSET_DELETE = 8, 9, 15, 16, 42, 47


def versions(api_key: int) -> list[int]:
    low, high = RANGES[api_key]
    return list(range(low, high + 1))


def test_the_group_apis_are_served_at_the_versions_clients_use() -> None:
    # librdkafka 2.x, aiokafka and kafka-python ask for these (see KAFKA-CLIENT-NEEDS.md).
    assert RANGES[FIND_COORDINATOR] == (0, 6)
    assert RANGES[JOIN] == (0, 9)
    assert RANGES[SYNC] == (0, 5)
    assert RANGES[HEARTBEAT] == (0, 4)
    assert RANGES[LEAVE] == (0, 5)
    assert RANGES[COMMIT] == (2, 9)
    assert RANGES[FETCH] == (1, 9)
    assert RANGES[DESCRIBE] == (0, 6)
    assert RANGES[LIST] == (0, 5)
    assert RANGES[DELETE_GROUPS] == (0, 2)
    assert RANGES[OFFSET_DELETE] == (0, 0)


async def start(data_dir: Path) -> EmbeddedBroker:
    broker = EmbeddedBroker(data_dir, group_initial_rebalance_delay_ms=0, num_partitions=2)
    await broker.start()
    return broker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    embedded = await start(tmp_path / "broker")
    yield embedded
    await embedded.stop()


@pytest.fixture
async def client(broker: EmbeddedBroker) -> AsyncIterator[WireClient]:
    wire = await WireClient.connect(broker.bootstrap_servers)
    yield wire
    await wire.close()


def join_body(group: str, member_id: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "group_id": group,
        "session_timeout": 10_000,
        "rebalance_timeout": 10_000,
        "member_id": member_id,
        "group_instance_id": None,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": b"subscription"}],
        "reason": None,
        **extra,
    }


async def join(client: WireClient, version: int, group: str, **extra: Any) -> Any:
    """Join as a new member, going through MEMBER_ID_REQUIRED where the version has it."""
    answer = await client.request(JOIN, version, join_body(group, **extra))
    if version >= 4:
        assert answer.error_code is E.member_id_required
        assert answer.member_id
        answer = await client.request(JOIN, version, join_body(group, answer.member_id, **extra))
    assert answer.error_code is E.none, answer
    return answer


async def ensure_topic(client: WireClient, name: str) -> None:
    await client.request(3, 4, {"topics": [{"name": name}], "allow_auto_topic_creation": True})


# --- FindCoordinator -------------------------------------------------------------------------


@pytest.mark.parametrize("version", versions(FIND_COORDINATOR))
async def test_find_coordinator_names_this_broker(
    client: WireClient, broker: EmbeddedBroker, version: int
) -> None:
    port = int(broker.bootstrap_servers.rsplit(":", 1)[1])
    body = {"key": "g", "key_type": 0, "coordinator_keys": ["g", "txn"]}
    answer = await client.request(FIND_COORDINATOR, version, body)
    if version >= 4:
        assert [(c.key, c.node_id, c.port, c.error_code) for c in answer.coordinators] == [
            ("g", 1, port, E.none),
            ("txn", 1, port, E.none),
        ]
    else:
        assert (answer.error_code, answer.node_id, answer.host, answer.port) == (
            E.none,
            1,
            "127.0.0.1",
            port,
        )
    if version >= 1:
        transaction = await client.request(FIND_COORDINATOR, version, {**body, "key_type": 1})
        if version >= 4:
            assert transaction.coordinators[0].error_code is E.none
        else:
            assert transaction.error_code is E.none
        share = await client.request(FIND_COORDINATOR, version, {**body, "key_type": 2})
        error = share.coordinators[0].error_code if version >= 4 else share.error_code
        assert error is E.invalid_request


# --- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------------------


@pytest.mark.parametrize("version", versions(JOIN))
async def test_one_member_joins_syncs_heartbeats_and_leaves(
    client: WireClient, version: int
) -> None:
    group = f"solo-v{version}"
    joined = await join(client, version, group)
    member = joined.member_id
    assert joined.generation_id == 1
    assert joined.leader == member
    assert joined.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in joined.members] == [(member, b"subscription")]
    if version >= 7:
        assert joined.protocol_type == "consumer"

    sync_version = min(version, RANGES[SYNC][1])
    synced = await client.request(
        SYNC,
        sync_version,
        {
            "group_id": group,
            "generation_id": 1,
            "member_id": member,
            "group_instance_id": None,
            "protocol_type": "consumer",
            "protocol_name": "range",
            "assignments": [{"member_id": member, "assignment": b"all of it"}],
        },
    )
    assert synced.error_code is E.none
    assert synced.assignment == b"all of it"

    heartbeat_version = min(version, RANGES[HEARTBEAT][1])
    beat = {"group_id": group, "generation_id": 1, "member_id": member, "group_instance_id": None}
    assert (await client.request(HEARTBEAT, heartbeat_version, beat)).error_code is E.none
    stale = await client.request(HEARTBEAT, heartbeat_version, {**beat, "generation_id": 0})
    assert stale.error_code is E.illegal_generation

    leave_version = min(version, RANGES[LEAVE][1])
    left = await client.request(
        LEAVE,
        leave_version,
        {
            "group_id": group,
            "member_id": member,
            "members": [{"member_id": member, "group_instance_id": None, "reason": "done"}],
        },
    )
    assert left.error_code is E.none
    if leave_version >= 3:
        assert [(m.member_id, m.error_code) for m in left.members] == [(member, E.none)]
    gone = await client.request(HEARTBEAT, heartbeat_version, beat)
    assert gone.error_code is E.unknown_member_id


async def test_a_second_member_parks_until_the_first_rejoins(broker: EmbeddedBroker) -> None:
    first = await WireClient.connect(broker.bootstrap_servers)
    second = await WireClient.connect(broker.bootstrap_servers)
    try:
        a = await join(first, 5, "pair")
        member_a = a.member_id
        await first.request(
            SYNC,
            3,
            {
                "group_id": "pair",
                "generation_id": 1,
                "member_id": member_a,
                "assignments": [{"member_id": member_a, "assignment": b"A"}],
            },
        )
        required = await second.request(JOIN, 5, join_body("pair"))
        member_b = required.member_id
        correlation = await second.send(JOIN, 5, join_body("pair", member_b))
        beat = {"group_id": "pair", "generation_id": 1, "member_id": member_a}
        assert (await first.request(HEARTBEAT, 3, beat)).error_code is E.rebalance_in_progress
        rejoined = await first.request(JOIN, 5, join_body("pair", member_a))
        got, b = await asyncio.wait_for(second.receive(JOIN, 5), 10)
        assert got == correlation
        assert rejoined.generation_id == b.generation_id == 2
        assert rejoined.leader == member_a
        assert {m.member_id for m in rejoined.members} == {member_a, member_b}
        assert b.members == ()
    finally:
        await first.close()
        await second.close()


async def test_static_members_and_batch_leave(client: WireClient) -> None:
    joined = await client.request(
        JOIN, 5, join_body("static", group_instance_id="instance-a")
    )  # static members are admitted without MEMBER_ID_REQUIRED
    assert joined.error_code is E.none
    assert joined.members[0].group_instance_id == "instance-a"
    fenced = await client.request(
        HEARTBEAT,
        3,
        {
            "group_id": "static",
            "generation_id": 1,
            "member_id": "someone-else",
            "group_instance_id": "instance-a",
        },
    )
    assert fenced.error_code is E.fenced_instance_id
    left = await client.request(
        LEAVE,
        3,
        {
            "group_id": "static",
            "members": [
                {"member_id": "", "group_instance_id": "instance-a"},
                {"member_id": "ghost", "group_instance_id": None},
            ],
        },
    )
    assert [m.error_code for m in left.members] == [E.none, E.unknown_member_id]


async def test_join_errors(client: WireClient) -> None:
    short = await client.request(JOIN, 5, {**join_body("g"), "session_timeout": 100})
    assert short.error_code is E.invalid_session_timeout
    empty = await client.request(JOIN, 5, join_body(""))
    assert empty.error_code is E.invalid_group_id
    unknown = await client.request(JOIN, 5, join_body("nobody-here", "m-1"))
    assert unknown.error_code is E.unknown_member_id
    assert unknown.protocol_name == ""  # non-nullable before v7


# --- OffsetCommit / OffsetFetch ----------------------------------------------------------


@pytest.mark.parametrize("version", versions(COMMIT))
async def test_commit_then_fetch_every_version(client: WireClient, version: int) -> None:
    await ensure_topic(client, "orders")
    group = f"offsets-v{version}"
    committed = await client.request(
        COMMIT,
        version,
        {
            "group_id": group,
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "group_instance_id": None,
            "retention_time": -1,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {
                            "partition_index": p,
                            "committed_offset": 10 + p,
                            "committed_leader_epoch": 3,
                            "committed_metadata": f"meta-{p}",
                        }
                        for p in (0, 1, 7)
                    ],
                },
                {
                    "name": "missing-topic",
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}
                    ],
                },
            ],
        },
    )
    errors = {
        (t.name, p.partition_index): p.error_code for t in committed.topics for p in t.partitions
    }
    assert errors == {
        ("orders", 0): E.none,
        ("orders", 1): E.none,
        ("orders", 7): E.unknown_topic_or_partition,
        ("missing-topic", 0): E.unknown_topic_or_partition,
    }
    fetch_version = min(version, 7)
    fetched = await client.request(
        FETCH,
        fetch_version,
        {"group_id": group, "topics": [{"name": "orders", "partition_indexes": [0, 1, 2]}]},
    )
    found = {
        p.partition_index: (p.committed_offset, p.metadata, p.error_code)
        for p in fetched.topics[0].partitions
    }
    assert found == {0: (10, "meta-0", E.none), 1: (11, "meta-1", E.none), 2: (-1, "", E.none)}
    if fetch_version >= 5:
        epochs = [p.committed_leader_epoch for p in fetched.topics[0].partitions]
        assert epochs == ([3, 3, -1] if version >= 6 else [-1, -1, -1])


@pytest.mark.parametrize("version", versions(FETCH))
async def test_fetch_every_version(client: WireClient, version: int) -> None:
    await ensure_topic(client, "orders")
    await client.request(
        COMMIT,
        2,
        {
            "group_id": "reader",
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "retention_time": -1,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {"partition_index": 1, "committed_offset": 5, "committed_metadata": "x"}
                    ],
                }
            ],
        },
    )
    wanted = [{"name": "orders", "partition_indexes": [1]}]
    if version >= 8:
        answer = await client.request(
            FETCH,
            version,
            {
                "groups": [
                    {"group_id": "reader", "member_id": None, "member_epoch": -1, "topics": None},
                    {"group_id": "nobody", "member_id": None, "member_epoch": -1, "topics": wanted},
                ],
                "require_stable": False,
            },
        )
        reader, nobody = answer.groups
        assert [(t.name, [p.committed_offset for p in t.partitions]) for t in reader.topics] == [
            ("orders", [5])
        ]
        assert nobody.topics[0].partitions[0].committed_offset == -1
        return
    answer = await client.request(FETCH, version, {"group_id": "reader", "topics": wanted})
    assert answer.topics[0].partitions[0].committed_offset == 5
    if version >= 2:
        assert answer.error_code is E.none
        everything = await client.request(
            FETCH, version, {"group_id": "reader", "topics": None, "require_stable": True}
        )
        assert [t.name for t in everything.topics] == ["orders"]


async def test_commit_from_a_stale_generation_is_fenced(client: WireClient) -> None:
    await ensure_topic(client, "orders")
    joined = await join(client, 5, "fenced")
    body = {
        "group_id": "fenced",
        "generation_id_or_member_epoch": joined.generation_id + 1,
        "member_id": joined.member_id,
        "topics": [
            {
                "name": "orders",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}
                ],
            }
        ],
    }
    answer = await client.request(COMMIT, 7, body)
    assert answer.topics[0].partitions[0].error_code is E.illegal_generation
    unknown = await client.request(COMMIT, 9, {**body, "group_id": "no-such-group"})
    assert unknown.topics[0].partitions[0].error_code is E.group_id_not_found


# --- DescribeGroups / ListGroups / DeleteGroups / OffsetDelete --------------------------------


@pytest.mark.parametrize("version", versions(DESCRIBE))
async def test_describe_groups_every_version(client: WireClient, version: int) -> None:
    joined = await join(client, 5, "described")
    await client.request(
        SYNC,
        3,
        {
            "group_id": "described",
            "generation_id": 1,
            "member_id": joined.member_id,
            "assignments": [{"member_id": joined.member_id, "assignment": b"A"}],
        },
    )
    answer = await client.request(
        DESCRIBE,
        version,
        {"groups": ["described", "nope"], "include_authorized_operations": True},
    )
    described, missing = answer.groups
    assert (described.error_code, described.group_state, described.protocol_data) == (
        E.none,
        "Stable",
        "range",
    )
    (member,) = described.members
    assert member.member_id == joined.member_id
    assert member.client_id == "wire"
    assert member.client_host == "/127.0.0.1"
    assert (member.member_metadata, member.member_assignment) == (b"subscription", b"A")
    assert missing.group_state == "Dead"
    assert missing.error_code is (E.group_id_not_found if version >= 6 else E.none)


@pytest.mark.parametrize("version", versions(LIST))
async def test_list_groups_every_version(client: WireClient, version: int) -> None:
    await join(client, 5, "listed")
    answer = await client.request(LIST, version, {"states_filter": [], "types_filter": []})
    assert [g.group_id for g in answer.groups] == ["listed"]
    if version >= 4:
        assert answer.groups[0].group_state == "CompletingRebalance"
        stable = await client.request(LIST, version, {"states_filter": ["Stable"]})
        assert stable.groups == ()
    if version >= 5:
        assert answer.groups[0].group_type == "classic"


@pytest.mark.parametrize("version", versions(DELETE_GROUPS))
async def test_delete_groups_every_version(client: WireClient, version: int) -> None:
    await ensure_topic(client, "orders")
    await client.request(
        COMMIT,
        2,
        {
            "group_id": "idle",
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "retention_time": -1,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {"partition_index": 0, "committed_offset": 1, "committed_metadata": ""}
                    ],
                }
            ],
        },
    )
    await join(client, 5, "busy")
    answer = await client.request(DELETE_GROUPS, version, {"groups_names": ["idle", "busy", "x"]})
    assert [(r.group_id, r.error_code) for r in answer.results] == [
        ("idle", E.none),
        ("busy", E.non_empty_group),
        ("x", E.group_id_not_found),
    ]


async def test_offset_delete(client: WireClient) -> None:
    await ensure_topic(client, "orders")
    await client.request(
        COMMIT,
        2,
        {
            "group_id": "idle",
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "retention_time": -1,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {"partition_index": p, "committed_offset": 1, "committed_metadata": ""}
                        for p in (0, 1)
                    ],
                }
            ],
        },
    )
    answer = await client.request(
        OFFSET_DELETE,
        0,
        {
            "group_id": "idle",
            "topics": [
                {"name": "orders", "partitions": [{"partition_index": 0}]},
                {"name": "missing", "partitions": [{"partition_index": 0}]},
            ],
        },
    )
    assert answer.error_code is E.none
    errors = {
        (t.name, p.partition_index): p.error_code for t in answer.topics for p in t.partitions
    }
    assert errors == {("orders", 0): E.none, ("missing", 0): E.unknown_topic_or_partition}
    fetched = await client.request(
        FETCH, 5, {"group_id": "idle", "topics": [{"name": "orders", "partition_indexes": [0, 1]}]}
    )
    assert [p.committed_offset for p in fetched.topics[0].partitions] == [-1, 1]
    unknown = await client.request(OFFSET_DELETE, 0, {"group_id": "nope", "topics": []})
    assert unknown.error_code is E.group_id_not_found


# --- persistence -----------------------------------------------------------------------------


async def test_groups_and_offsets_survive_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "broker"
    broker = await start(data_dir)
    client = await WireClient.connect(broker.bootstrap_servers)
    await ensure_topic(client, "orders")
    joined = await join(client, 5, "durable")
    member = joined.member_id
    await client.request(
        SYNC,
        3,
        {
            "group_id": "durable",
            "generation_id": 1,
            "member_id": member,
            "assignments": [{"member_id": member, "assignment": b"A"}],
        },
    )
    commit = await client.request(
        COMMIT,
        7,
        {
            "group_id": "durable",
            "generation_id_or_member_epoch": 1,
            "member_id": member,
            "topics": [
                {
                    "name": "orders",
                    "partitions": [
                        {"partition_index": 1, "committed_offset": 42, "committed_metadata": "m"}
                    ],
                }
            ],
        },
    )
    assert commit.topics[0].partitions[0].error_code is E.none
    await client.close()
    await broker.stop()

    again = await start(data_dir)
    client = await WireClient.connect(again.bootstrap_servers)
    try:
        fetched = await client.request(
            FETCH,
            5,
            {"group_id": "durable", "topics": [{"name": "orders", "partition_indexes": [1]}]},
        )
        assert fetched.topics[0].partitions[0].committed_offset == 42
        assert fetched.topics[0].partitions[0].metadata == "m"
        described = await client.request(
            DESCRIBE, 4, {"groups": ["durable"], "include_authorized_operations": False}
        )
        group = described.groups[0]
        assert group.group_state == "Stable"
        assert [(m.member_id, m.member_assignment) for m in group.members] == [(member, b"A")]
        # The member carries on in its generation without rejoining.
        beat = {"group_id": "durable", "generation_id": 1, "member_id": member}
        assert (await client.request(HEARTBEAT, 3, beat)).error_code is E.none
        listed = await client.request(
            3,
            12,
            {
                "topics": None,
                "allow_auto_topic_creation": False,
                "include_topic_authorized_operations": False,
            },
        )
        internal = {t.name: t.is_internal for t in listed.topics}
        assert internal["__consumer_offsets"] is True
    finally:
        await client.close()
        await again.stop()


async def test_stopping_the_broker_answers_parked_joins(tmp_path: Path) -> None:
    broker = await start(tmp_path / "broker")
    first = await WireClient.connect(broker.bootstrap_servers)
    second = await WireClient.connect(broker.bootstrap_servers)
    try:
        await first.request(JOIN, 3, join_body("parked"))
        correlation = await second.send(JOIN, 3, join_body("parked"))  # waits for `first`
        for _ in range(1_000):  # until the broker has read and parked it
            if broker.broker.groups.coordinator.pending_tokens():
                break
            await asyncio.sleep(0.01)
        stopping = asyncio.create_task(broker.stop())
        got, answer = await asyncio.wait_for(second.receive(JOIN, 3), 10)
        assert got == correlation
        # As Kafka answers when a coordinator unloads: look for the coordinator again.
        assert answer.error_code is E.not_coordinator
        await stopping
    finally:
        await first.close()
        await second.close()


async def test_deleting_a_topic_forgets_its_committed_offsets(client: WireClient) -> None:
    await ensure_topic(client, "doomed")
    commit = {
        "group_id": "g",
        "generation_id_or_member_epoch": -1,
        "member_id": "",
        "retention_time": -1,
        "topics": [
            {
                "name": "doomed",
                "partitions": [
                    {"partition_index": 0, "committed_offset": 7, "committed_metadata": ""}
                ],
            }
        ],
    }
    assert (await client.request(COMMIT, 2, commit)).topics[0].partitions[0].error_code is E.none
    deleted = await client.request(20, 4, {"topic_names": ["doomed"], "timeout": 5_000})
    assert deleted.responses[0].error_code is E.none
    await ensure_topic(client, "doomed")  # re-created under the same name
    fetched = await client.request(
        FETCH, 5, {"group_id": "g", "topics": [{"name": "doomed", "partition_indexes": [0]}]}
    )
    assert fetched.topics[0].partitions[0].committed_offset == -1
