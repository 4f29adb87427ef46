"""The local autoscaler against the embedded broker: KEDA's lag, the policy, the log."""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker
from rivulet.deploy import DeployConfig, Scaling, ServiceOptions
from rivulet.deploy.autoscale import LagTrigger, ScalingRule
from rivulet.deploy.local import LocalAutoscaler, read_lags

TOPIC = "work"
GROUP = "workers"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_topic(bootstrap: str, partitions: int = 2) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=partitions)])[TOPIC].result(10)


def produce(bootstrap: str, counts: dict[int, int]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, count in counts.items():
        for i in range(count):
            producer.produce(TOPIC, value=b"x%d" % i, partition=partition)
    assert producer.flush(10) == 0


def commit(bootstrap: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        consumer.commit(
            offsets=[TopicPartition(TOPIC, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_lag_is_latest_minus_committed_and_uncommitted_counts_whole(broker: ThreadedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    make_topic(bootstrap)
    produce(bootstrap, {0: 30, 1: 20})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    trigger = LagTrigger(GROUP, TOPIC, 2)
    assert read_lags(admin, [trigger]) == {(GROUP, TOPIC): 50}  # nothing committed yet
    commit(bootstrap, {0: 10})
    assert read_lags(admin, [trigger]) == {(GROUP, TOPIC): 20 + 20}
    # Unknown topics are left out: the policy then holds the current count.
    assert read_lags(admin, [LagTrigger(GROUP, "missing", 1)]) == {}


def test_a_lagging_service_scales_up_then_back_down(
    broker: ThreadedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap = broker.bootstrap_servers
    make_topic(bootstrap, partitions=2)
    produce(bootstrap, {0: 40, 1: 40})
    rule = ScalingRule(
        "worker", (LagTrigger(GROUP, TOPIC, 2),),
        min_replicas=1, max_replicas=2, lag_threshold=10, scale_down_window_s=30,
    )  # fmt: skip
    clock = Clock()
    scaler = LocalAutoscaler({"jobs:worker": rule}, bootstrap_servers=bootstrap, clock=clock)
    caplog.set_level(logging.INFO, logger="rivulet.autoscale")

    assert scaler.poll({"jobs:worker": 1})["jobs:worker"].desired == 2
    commit(bootstrap, {0: 40, 1: 40})  # the two replicas caught up
    clock.now = 10.0
    assert scaler.poll({"jobs:worker": 2})["jobs:worker"].desired == 2  # inside the window
    clock.now = 41.0
    assert scaler.poll({"jobs:worker": 2})["jobs:worker"].desired == 1

    assert [r.getMessage() for r in caplog.records] == [
        (
            "autoscale worker: lag workers@work=80 (capped 20) -> proposal 2, "
            "replicas 1 -> 2 (scale up)"
        ),
        "autoscale worker: lag workers@work=0 -> proposal 1, replicas 2 -> 1 (scale down)",
    ]


APP_SOURCE = """
from rivulet import App, Context, Event

class Job(Event):
    job_id: str

worker = App("worker")

@worker.handler("work")
async def run(event: Job, ctx: Context) -> None:
    pass

api = App("api")
api.publishes("work", Job)
api.topic("work", partitions=4)
"""


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"autoscale_apps_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_SOURCE)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    yield name
    sys.modules.pop(name, None)


def test_rules_for_apps_follow_the_deploy_config(module: str) -> None:
    config = DeployConfig(
        services=(
            ServiceOptions(f"{module}:worker", scaling=Scaling(max_replicas=8, lag_threshold=5)),
        )
    )
    scaler = LocalAutoscaler.for_apps(
        [f"{module}:worker", f"{module}:api"], bootstrap_servers="127.0.0.1:1", config=config
    )
    assert set(scaler.rules) == {f"{module}:worker"}  # api consumes nothing
    rule = scaler.rules[f"{module}:worker"]
    assert (rule.max_replicas, rule.lag_threshold) == (4, 5)  # capped at the 4 partitions
    assert rule.triggers == (LagTrigger("worker", "work", 4),)
    assert scaler.interval_s == 15.0
