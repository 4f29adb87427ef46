"""``rivulet groups``: list, describe and reset-offsets against the embedded broker over TCP.

The topic has three partitions holding 10, 20 and 30 records with known
timestamps; a group commits offset 4 on partition 0 and 20 on partition 1 and
nothing on partition 2, so describe must show lags 6, 0 and "none". What the
commands commit is read back with an AdminClient of the test's own.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker
from rivulet.cli._group_admin import GroupsError
from rivulet.cli.groups import ResetTo, parse_datetime, parse_topic, plan_reset
from rivulet.cli.main import main

BrokerFactory = Callable[..., ThreadedBroker]
TOPIC = "orders"
RECORDS = {0: 10, 1: 20, 2: 30}
# Partition p's record i has timestamp BASE_MS + i * STEP_MS[p].
BASE_MS = 1_700_000_000_000
STEP_MS = {0: 1000, 1: 500, 2: 2000}
COMMITTED = {0: 4, 1: 20}
TIMEOUT = 30.0


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> ThreadedBroker:
    started = broker_factory(group_initial_rebalance_delay_ms=0)
    admin = AdminClient({"bootstrap.servers": started.bootstrap_servers})
    admin.create_topics([NewTopic(TOPIC, len(RECORDS), 1)])[TOPIC].result(TIMEOUT)
    producer = Producer({"bootstrap.servers": started.bootstrap_servers, "linger.ms": 5})
    for partition, count in RECORDS.items():
        for i in range(count):
            timestamp = BASE_MS + i * STEP_MS[partition]
            producer.produce(TOPIC, b"x", partition=partition, timestamp=timestamp)
    assert producer.flush(TIMEOUT) == 0
    return started


def admin_of(broker: ThreadedBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": broker.bootstrap_servers})


def committed(broker: ThreadedBroker, group: str) -> dict[int, int]:
    admin = admin_of(broker)  # kept referenced: a collected client never answers
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    result = futures[group].result(TIMEOUT)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def groups(broker: ThreadedBroker, *args: str) -> list[str]:
    return ["groups", "--bootstrap-servers", broker.bootstrap_servers, *args]


def run_json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def new_consumer(broker: ThreadedBroker, group: str, **config: str) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "heartbeat.interval.ms": 300,
            **config,
        }
    )
    consumer.subscribe([TOPIC])
    return consumer


def join(consumers: list[Consumer]) -> list[set[int]]:
    """Poll every consumer until their assignments split the partitions between them."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        owned = [{tp.partition for tp in c.assignment()} for c in consumers]
        if all(owned) and sorted(p for o in owned for p in o) == sorted(RECORDS):
            return owned
        assert time.monotonic() < deadline, f"no stable assignment: {owned}"
        for consumer in consumers:
            consumer.poll(0.05)


def commit_owned(consumer: Consumer, owned: set[int]) -> None:
    offsets = [TopicPartition(TOPIC, p, o) for p, o in COMMITTED.items() if p in owned]
    if offsets:
        consumer.commit(offsets=offsets, asynchronous=False)


@pytest.fixture
def live_group(broker: ThreadedBroker) -> Iterator[list[tuple[Consumer, set[int]]]]:
    """Group "live": a static member and a dynamic one, offsets committed, still running."""
    static = new_consumer(broker, "live", **{"client.id": "static-c", "group.instance.id": "pod-0"})
    dynamic = new_consumer(broker, "live", **{"client.id": "dynamic-c"})
    try:
        owned = join([static, dynamic])
        for consumer, mine in zip([static, dynamic], owned, strict=True):
            commit_owned(consumer, mine)
        yield list(zip([static, dynamic], owned, strict=True))
    finally:
        dynamic.close()
        static.close()


@pytest.fixture
def stopped_group(broker: ThreadedBroker) -> str:
    """Group "stopped": one member committed the offsets, then left."""
    consumer = new_consumer(broker, "stopped", **{"client.id": "gone"})
    (owned,) = join([consumer])
    commit_owned(consumer, owned)
    consumer.close()
    assert committed(broker, "stopped") == COMMITTED
    return "stopped"


def test_describe_shows_members_assignments_and_exact_lag(
    broker: ThreadedBroker,
    live_group: list[tuple[Consumer, set[int]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    described = run_json(capsys, groups(broker, "describe", "live", "--json"))

    assert described["group"] == "live"
    assert described["state"] == "Stable"
    assert described["assignor"] == "range"
    by_client = {m["client_id"]: m for m in described["members"]}
    assert set(by_client) == {"static-c", "dynamic-c"}
    assert by_client["static-c"]["group_instance_id"] == "pod-0"
    assert by_client["dynamic-c"]["group_instance_id"] is None
    assert all(m["host"].endswith("127.0.0.1") for m in described["members"])
    for (_, owned), client in zip(live_group, ["static-c", "dynamic-c"], strict=True):
        assignment = by_client[client]["assignment"]
        assert {(a["topic"], a["partition"]) for a in assignment} == {(TOPIC, p) for p in owned}
    owner = {
        p: m["member_id"]
        for m in described["members"]
        for p in (a["partition"] for a in m["assignment"])
    }
    rows = {(r["topic"], r["partition"]): r for r in described["partitions"]}
    assert rows == {
        (TOPIC, 0): {"topic": TOPIC, "partition": 0, "committed_offset": 4, "log_end_offset": 10,
                     "lag": 6, "member_id": owner[0]},
        (TOPIC, 1): {"topic": TOPIC, "partition": 1, "committed_offset": 20, "log_end_offset": 20,
                     "lag": 0, "member_id": owner[1]},
        (TOPIC, 2): {"topic": TOPIC, "partition": 2, "committed_offset": None,
                     "log_end_offset": 30, "lag": None, "member_id": owner[2]},
    }  # fmt: skip
    assert described["total_lag"] == 6


def test_describe_table_reads_like_kafka_consumer_groups(
    broker: ThreadedBroker,
    live_group: list[tuple[Consumer, set[int]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(groups(broker, "describe", "live")) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("GROUP "))
    assert lines[header].split() == [
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG",
        "CONSUMER-ID", "HOST", "CLIENT-ID",
    ]  # fmt: skip
    cells = [line.split() for line in lines[header + 1 : header + 4]]
    assert [c[:6] for c in cells] == [
        ["live", TOPIC, "0", "4", "10", "6"],
        ["live", TOPIC, "1", "20", "20", "0"],
        ["live", TOPIC, "2", "-", "30", "-"],
    ]
    assert "state Stable" in lines[0]
    assert "total lag 6" in lines[0]
    members = next(i for i, line in enumerate(lines) if line.startswith("CONSUMER-ID"))
    assert "GROUP-INSTANCE-ID" in lines[members]
    static_line = next(line for line in lines[members:] if "static-c" in line)
    assert "pod-0" in static_line
    static_owned = live_group[0][1]
    assert f"{TOPIC}({','.join(map(str, sorted(static_owned)))})" in static_line


def test_list_shows_live_and_stopped_groups(
    broker: ThreadedBroker,
    live_group: list[tuple[Consumer, set[int]]],
    stopped_group: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = run_json(capsys, groups(broker, "list", "--json"))
    assert listed == [
        {"group": "live", "state": "Stable", "members": 2},
        {"group": "stopped", "state": "Empty", "members": 0},
    ]
    assert main(groups(broker, "list")) == 0
    assert [line.split() for line in capsys.readouterr().out.splitlines()] == [
        ["GROUP", "STATE", "MEMBERS"],
        ["live", "Stable", "2"],
        ["stopped", "Empty", "0"],
    ]


def test_bootstrap_servers_default_to_the_environment(
    broker: ThreadedBroker,
    stopped_group: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RIVULET_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    assert run_json(capsys, ["groups", "list", "--json"]) == [
        {"group": "stopped", "state": "Empty", "members": 0}
    ]
    # An explicit address wins, given before or after the action.
    monkeypatch.setenv("RIVULET_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    after = ["groups", "list", "--json", "--bootstrap-servers", broker.bootstrap_servers]
    assert len(run_json(capsys, after)) == 1
    assert len(run_json(capsys, groups(broker, "list", "--json"))) == 1


def test_describe_a_stopped_group(
    broker: ThreadedBroker, stopped_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    described = run_json(capsys, groups(broker, "describe", stopped_group, "--json"))
    assert described["state"] == "Empty"
    assert described["members"] == []
    # Only the partitions with a committed offset: nobody is assigned any.
    assert [(r["partition"], r["committed_offset"], r["lag"]) for r in described["partitions"]] == [
        (0, 4, 6),
        (1, 20, 0),
    ]
    assert main(groups(broker, "describe", stopped_group)) == 0
    assert f"Consumer group {stopped_group!r} has no active members." in capsys.readouterr().out


def test_reset_is_refused_while_the_group_has_members(
    broker: ThreadedBroker,
    live_group: list[tuple[Consumer, set[int]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(groups(broker, "reset-offsets", "live", "--topic", TOPIC, "--to-earliest"))
    assert status == 1
    err = capsys.readouterr().err
    assert "'live' is active" in err
    assert "stop its consumers first" in err
    assert "group.instance.id" in err  # a static member: why it may linger after stopping
    assert committed(broker, "live") == COMMITTED


def _datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (["--to-earliest"], {0: 0, 1: 2, 2: 0}),  # partition 1 starts at 2 (records deleted)
        (["--to-latest"], {0: 10, 1: 20, 2: 30}),
        (["--to-offset", "15"], {0: 10, 1: 15, 2: 15}),  # clamped to the log end
        (["--to-offset", "1"], {0: 1, 1: 2, 2: 1}),  # clamped to the earliest
        # The first record at or after BASE + 6 s: 6 s / 1 s, 6 s / 0.5 s, 6 s / 2 s.
        (["--to-datetime", _datetime(BASE_MS + 6000)], {0: 6, 1: 12, 2: 3}),
        (["--to-datetime", _datetime(BASE_MS + 5500)], {0: 6, 1: 11, 2: 3}),
        (["--to-datetime", "2000-01-01T00:00:00+02:00"], {0: 0, 1: 2, 2: 0}),
        (["--to-datetime", _datetime(BASE_MS + 86_400_000)], {0: 10, 1: 20, 2: 30}),
    ],
)
def test_reset_modes_after_the_group_stopped(
    broker: ThreadedBroker,
    stopped_group: str,
    capsys: pytest.CaptureFixture[str],
    mode: list[str],
    expected: Mapping[int, int],
) -> None:
    admin = admin_of(broker)
    deleted = admin.delete_records([TopicPartition(TOPIC, 1, 2)])
    for future in deleted.values():
        future.result(TIMEOUT)

    plan = run_json(
        capsys, groups(broker, "reset-offsets", stopped_group, "--topic", TOPIC, *mode, "--json")
    )

    assert plan["applied"] is True
    assert [(p["partition"], p["current_offset"], p["new_offset"]) for p in plan["partitions"]] == [
        (0, 4, expected[0]),
        (1, 20, expected[1]),
        (2, None, expected[2]),
    ]
    assert committed(broker, stopped_group) == expected


def test_reset_some_partitions_prints_the_plan(
    broker: ThreadedBroker, stopped_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = groups(broker, "reset-offsets", stopped_group, "--topic", f"{TOPIC}:0,2")
    assert main([*argv, "--to-offset", "7"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET", "NOTE"
    ]  # fmt: skip
    assert [line.split() for line in lines[1:3]] == [
        [stopped_group, TOPIC, "0", "4", "7"],
        [stopped_group, TOPIC, "2", "-", "7"],
    ]
    assert "Committed the new offsets of 2 partition(s)" in lines[3]
    assert committed(broker, stopped_group) == {0: 7, 1: 20, 2: 7}


def test_reset_all_topics_moves_the_committed_partitions(
    broker: ThreadedBroker, stopped_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = groups(broker, "reset-offsets", stopped_group, "--all-topics", "--to-latest")
    assert main(argv) == 0
    assert committed(broker, stopped_group) == {0: 10, 1: 20}


def test_dry_run_changes_nothing(
    broker: ThreadedBroker, stopped_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = groups(broker, "reset-offsets", stopped_group, "--topic", TOPIC, "--to-earliest")
    plan = run_json(capsys, [*argv, "--dry-run", "--json"])
    assert plan["applied"] is False
    assert [p["new_offset"] for p in plan["partitions"]] == [0, 0, 0]
    assert main([*argv, "--dry-run"]) == 0
    assert "Dry run: nothing committed" in capsys.readouterr().out
    assert committed(broker, stopped_group) == COMMITTED
    # A dry run for a group that does not exist does not create it either.
    new = groups(broker, "reset-offsets", "fresh", "--topic", TOPIC, "--to-latest", "--dry-run")
    assert main(new) == 0
    assert "does not exist yet" in capsys.readouterr().out
    assert [g["group"] for g in run_json(capsys, groups(broker, "list", "--json"))] == [
        stopped_group
    ]


def test_unknown_group_topic_and_partition(
    broker: ThreadedBroker, stopped_group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(groups(broker, "describe", "no-such-group")) == 1
    assert "consumer group 'no-such-group' does not exist" in capsys.readouterr().err
    reset = groups(broker, "reset-offsets", stopped_group, "--to-latest", "--topic")
    assert main([*reset, "no-such-topic"]) == 1
    assert "topic 'no-such-topic' does not exist" in capsys.readouterr().err
    assert main([*reset, f"{TOPIC}:1,3"]) == 1
    assert f"topic '{TOPIC}' has partitions 0-2, not 3" in capsys.readouterr().err
    assert committed(broker, stopped_group) == COMMITTED


def test_unreachable_broker_fails_fast_with_a_clear_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once it closes
    status = main(["groups", "--bootstrap-servers", address, "--timeout", "20", "describe", "g"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"cannot reach Kafka at {address}" in err
    assert "Is the broker running?" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--to-datetime", "yesterday"], "'yesterday' is not an ISO 8601 date and time"),
        (["--to-offset", "-3"], "--to-offset wants a non-negative offset"),
        (["--to-latest", "--to-earliest"], "not allowed with argument"),
    ],
)
def test_bad_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["groups", "reset-offsets", "g", "--topic", TOPIC, *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_parse_topic_and_datetime() -> None:
    assert parse_topic("t:2,0,2").partitions == (0, 2)
    assert parse_topic("t").partitions is None
    assert parse_datetime("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert parse_datetime("2024-05-01T12:00:00").tzinfo is not None  # local time


def test_plan_without_offsets_from_the_broker_is_an_error() -> None:
    tp = ("t", 0)
    with pytest.raises(GroupsError, match="no earliest/latest offset"):
        plan_reset([tp], ResetTo("latest"), committed={}, earliest={tp: 0}, latest={tp: None})
