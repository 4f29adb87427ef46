"""The registry keeps nothing itself: a new one rebuilds everything from the topic."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker
from rivulet.registry import RegistryError, RegistryServer, RegistrySettings

BrokerFactory = Callable[..., ThreadedBroker]


def schema(*fields: str) -> str:
    return json.dumps(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": f, "type": "string", "default": ""} for f in fields],
        }
    )


def settings(broker: ThreadedBroker, **overrides: Any) -> RegistrySettings:
    return RegistrySettings(broker.bootstrap_servers, port=0, timeout_s=20.0, **overrides)


def everything(http: httpx.Client) -> dict[str, Any]:
    """What clients can see, for comparing two registries."""
    subjects = http.get("/subjects", params={"deleted": "true"}).json()
    seen: dict[str, Any] = {"subjects": subjects, "config": http.get("/config").json()}
    for subject in subjects:
        versions = http.get(f"/subjects/{subject}/versions", params={"deleted": "true"}).json()
        seen[subject] = {
            "live": http.get(f"/subjects/{subject}/versions").json(),
            "config": http.get(f"/config/{subject}").json(),
            "versions": [
                http.get(f"/subjects/{subject}/versions/{v}", params={"deleted": "true"}).json()
                for v in versions
            ],
        }
    return seen


def test_restart_rebuilds_the_same_state_and_ids(
    broker_factory: BrokerFactory, broker_dir: Path
) -> None:
    broker = broker_factory()
    with (
        RegistryServer.start_in_thread(settings(broker)) as first,
        httpx.Client(base_url=first.url) as http,
    ):
        registrations = [("a", ["x"]), ("a", ["x", "y"]), ("b", ["x"]), ("c", ["z"]), ("d", ["w"])]
        ids = [
            http.post(f"/subjects/{s}/versions", json={"schema": schema(*fields)}).json()["id"]
            for s, fields in registrations
        ]
        assert ids == [1, 2, 1, 3, 4]
        http.put("/config/a", json={"compatibility": "FULL"})
        http.put("/config", json={"compatibility": "NONE"})
        http.delete("/subjects/c")
        http.delete("/subjects/d")
        http.delete("/subjects/d", params={"permanent": "true"})  # id 4 is gone for good
        before = everything(http)
    broker.stop()
    broker = broker_factory(data_dir=broker_dir)  # the broker restarts too, from its files
    with (
        RegistryServer.start_in_thread(settings(broker)) as second,
        httpx.Client(base_url=second.url) as http,
    ):
        assert everything(http) == before
        assert http.get("/schemas/ids/3").status_code == 200  # soft-deleted: still served
        new = http.post("/subjects/e/versions", json={"schema": schema("n")}).json()["id"]
        assert new == 5  # never 4, which was hard-deleted
        same = http.post("/subjects/e2/versions", json={"schema": schema("x", "y")}).json()
        assert same["id"] == 2


def produce_raw(
    bootstrap: str, records: list[tuple[dict[str, Any], dict[str, Any] | None]]
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic("_schemas", 1, 1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([topic]).values():
        future.result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in records:
        raw_value = None if value is None else json.dumps(value).encode()
        producer.produce("_schemas", key=json.dumps(key).encode(), value=raw_value)
    assert producer.flush(10) == 0


def test_reads_a_topic_written_by_confluent(broker_factory: BrokerFactory) -> None:
    broker = broker_factory()
    string_schema = '"string"'
    produce_raw(
        broker.bootstrap_servers,
        [
            ({"keytype": "NOOP", "magic": 0}, None),
            (
                {"keytype": "SCHEMA", "subject": "s", "version": 1, "magic": 1},
                {"subject": "s", "version": 1, "id": 21, "schema": string_schema, "deleted": False},
            ),
            (
                {"keytype": "SCHEMA", "subject": "s", "version": 2, "magic": 1},
                {"subject": "s", "version": 2, "id": 22, "schema": '"bytes"', "deleted": False},
            ),
            (
                {"keytype": "SCHEMA", "subject": "t", "version": 1, "magic": 1},
                {"subject": "t", "version": 1, "id": 21, "schema": string_schema},
            ),
            ({"keytype": "CONFIG", "subject": "s", "magic": 0}, {"compatibilityLevel": "NONE"}),
            (
                {"keytype": "DELETE_SUBJECT", "subject": "t", "magic": 0},
                {"subject": "t", "version": 1},
            ),
            ({"keytype": "SOMETHING_NEWER", "magic": 0}, {"whatever": True}),
            ({"keytype": "SCHEMA", "subject": "s", "version": 2, "magic": 1}, None),
        ],
    )
    with RegistryServer.start_in_thread(settings(broker)) as registry:
        assert registry.server.state.skipped == 1
        with httpx.Client(base_url=registry.url) as http:
            assert http.get("/subjects").json() == ["s"]
            assert http.get("/subjects/s/versions").json() == [1]
            assert http.get("/config/s").json() == {"compatibilityLevel": "NONE"}
            assert http.get("/schemas/ids/21").json() == {"schema": string_schema}
            assert http.get("/schemas/ids/22").status_code == 404
            answer = http.post("/subjects/u/versions", json={"schema": string_schema}).json()
            assert answer == {"id": 21}
            # Id 22 was given out before its hard delete: it is not given out again.
            assert http.post("/subjects/v/versions", json={"schema": '"int"'}).json() == {"id": 23}


@pytest.mark.parametrize(
    ("topic_config", "partitions", "says"),
    [({"cleanup.policy": "delete"}, 1, "cleanup.policy"), ({}, 2, "exactly one")],
)
def test_refuses_a_topic_that_would_lose_or_reorder_schemas(
    broker_factory: BrokerFactory, topic_config: dict[str, str], partitions: int, says: str
) -> None:
    broker = broker_factory()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    for future in admin.create_topics(
        [NewTopic("_schemas", partitions, 1, config=topic_config)]
    ).values():
        future.result(10)
    with pytest.raises(RegistryError, match=says):
        RegistryServer.start_in_thread(settings(broker))


async def test_a_registry_whose_reader_stopped_says_so(broker_factory: BrokerFactory) -> None:
    broker = broker_factory()
    async with RegistryServer(settings(broker)) as server:
        server.store._stopping = True  # the reader ends as if the topic could not be read
        with pytest.raises(RegistryError, match="reader stopped"):
            await asyncio.wait_for(server.wait_stopped(), 10)
