"""confluent-kafka consumer groups against the broker over TCP.

Members come and go (close, SIGKILL, join); after every rebalance each partition
has exactly one owner and every produced record is consumed at least once.
With cooperative-sticky only the partitions that move are revoked. Committed
offsets survive a broker restart.
"""

from __future__ import annotations

import itertools
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker

pytestmark = pytest.mark.interop

BrokerFactory = Callable[..., ThreadedBroker]
TOPIC = "events"
PARTITIONS = 6
TIMEOUT = 30.0
FENCED_COMMIT = (
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
)
SESSION_MS = 6_000
MEMBER_CONFIG = {
    "session.timeout.ms": SESSION_MS,
    "heartbeat.interval.ms": 300,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
    "fetch.wait.max.ms": 50,
    "topic.metadata.refresh.interval.ms": 1_000,
}


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> ThreadedBroker:
    started = broker_factory(group_initial_rebalance_delay_ms=0)
    admin = AdminClient({"bootstrap.servers": started.bootstrap_servers})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(TIMEOUT)
    return started


class Producing:
    """Produces numbered records spread over every partition."""

    def __init__(self, broker: ThreadedBroker) -> None:
        self.producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 1})
        self.sent: set[bytes] = set()
        self._numbers = itertools.count()

    def send(self, count: int) -> None:
        for _ in range(count):
            n = next(self._numbers)
            value = f"record-{n}".encode()
            self.producer.produce(TOPIC, value=value, partition=n % PARTITIONS)
            self.sent.add(value)
        assert self.producer.flush(TIMEOUT) == 0


class Member:
    """One in-process consumer: tracks what it owns and what it consumed."""

    def __init__(self, broker: ThreadedBroker, group: str, name: str, **config: Any) -> None:
        self.name = name
        self.owned: set[int] = set()
        self.revocations: list[set[int]] = []
        self.assignments: list[set[int]] = []
        self.consumed: set[bytes] = set()
        self.cooperative = config.get("partition.assignment.strategy") == "cooperative-sticky"
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "group.id": group,
                "client.id": name,
                **MEMBER_CONFIG,
                **config,
            }
        )
        self.consumer.subscribe([TOPIC], on_assign=self._assigned, on_revoke=self._revoked)
        self.closed = False

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        given = {tp.partition for tp in partitions}
        self.assignments.append(given)
        self.owned = self.owned | given if self.cooperative else given

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        taken = {tp.partition for tp in partitions}
        self.revocations.append(taken)
        self.owned -= taken

    def poll(self) -> None:
        if self.closed:
            return
        messages = self.consumer.consume(num_messages=500, timeout=0.05)
        got = [m for m in messages if m.error() is None]
        for message in got:
            value = message.value()
            assert value is not None
            self.consumed.add(value)
        if got:
            try:
                self.consumer.commit(asynchronous=False)
            except KafkaException as exc:
                # A rebalance may fence this commit: the records get consumed again.
                if exc.args[0].code() not in FENCED_COMMIT:
                    raise

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        member.close()


def poll_until(
    members: Iterable[Member], condition: Callable[[], bool], what: str, timeout: float = TIMEOUT
) -> None:
    live = list(members)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            owners = {m.name: sorted(m.owned) for m in live}
            raise AssertionError(f"timed out waiting for {what}; owners: {owners}")
        for member in live:
            member.poll()


def owned_exactly_once(members: Iterable[Member]) -> bool:
    """Every partition has one owner, and nobody owns one twice."""
    owners = [p for m in members if not m.closed for p in m.owned]
    return sorted(owners) == list(range(PARTITIONS))


def consumed_all(members: Iterable[Member], producing: Producing) -> Callable[[], bool]:
    def check() -> bool:
        seen: set[bytes] = set()
        for member in members:
            seen |= member.consumed
        return producing.sent <= seen

    return check


def settle(members: list[Member], producing: Producing, what: str) -> None:
    """Wait for the group to own every partition once, then for every record to arrive."""
    live = [m for m in members if not m.closed]
    poll_until(live, lambda: owned_exactly_once(live), f"{what}: every partition owned once")
    poll_until(live, consumed_all(members, producing), f"{what}: every record consumed")
    # Keep polling briefly: a rebalance still in flight would break "exactly once".
    for _ in range(10):
        for member in live:
            member.poll()
    assert owned_exactly_once(live), {m.name: sorted(m.owned) for m in live}


KILLABLE = textwrap.dedent(
    """
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic = sys.argv[1:4]
    config = dict(eval(sys.argv[4]))
    def assigned(consumer, partitions):
        print("assigned", ",".join(str(p.partition) for p in partitions), flush=True)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **config})
    consumer.subscribe([topic], on_assign=assigned)
    while True:
        consumer.poll(0.1)  # consumes, never commits: its records must be read again
    """
)


def test_three_members_share_six_partitions_through_leave_kill_and_join(
    broker: ThreadedBroker, members: list[Member]
) -> None:
    producing = Producing(broker)
    producing.send(60)
    members.extend(Member(broker, "shop", f"member-{i}") for i in range(3))
    settle(members, producing, "three members")
    assert all(len(m.owned) == 2 for m in members)

    # One member leaves cleanly (LeaveGroup): the other two take its partitions.
    members[2].close()
    producing.send(60)
    settle(members, producing, "after a member left")

    # A member in another process joins, gets partitions, and is SIGKILLed.
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLABLE,
            broker.bootstrap_servers,
            "shop",
            TOPIC,
            repr({**MEMBER_CONFIG, "client.id": "doomed"}),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines: queue.Queue[str] = queue.Queue()

        def read_lines() -> None:
            for line in process.stdout or ():
                lines.put(line)

        threading.Thread(target=read_lines, daemon=True).start()
        live = members[:2]
        doomed: set[int] = set()

        def doomed_owns_some() -> bool:
            while not lines.empty():
                line = lines.get()
                if line.startswith("assigned"):
                    parts = line.split()
                    doomed.clear()
                    if len(parts) > 1:
                        doomed.update(int(p) for p in parts[1].split(","))
            mine = sorted(p for m in live for p in m.owned)
            return bool(doomed) and sorted([*mine, *doomed]) == list(range(PARTITIONS))

        poll_until(live, doomed_owns_some, "the other process to own partitions")
        process.send_signal(signal.SIGKILL)
        process.wait(TIMEOUT)
        killed_at = time.monotonic()
        producing.send(60)
        settle(members, producing, "after a member was killed")
        # Its partitions came back once its session expired, not before.
        assert time.monotonic() - killed_at >= SESSION_MS / 1000 * 0.8
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(TIMEOUT)
        if process.stdout is not None:
            process.stdout.close()

    # A new member joins: three owners again.
    members.append(Member(broker, "shop", "member-3"))
    producing.send(60)
    settle(members, producing, "after a member joined")
    assert sorted(len(m.owned) for m in members if not m.closed) == [2, 2, 2]


def test_cooperative_sticky_revokes_only_the_partitions_that_move(
    broker: ThreadedBroker, members: list[Member]
) -> None:
    producing = Producing(broker)
    producing.send(30)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    first = Member(broker, "coop", "first", **coop)
    members.append(first)
    settle(members, producing, "one member")
    assert first.owned == set(range(PARTITIONS))
    assert first.revocations == []

    second = Member(broker, "coop", "second", **coop)
    members.append(second)
    producing.send(30)
    settle(members, producing, "two members")
    assert len(first.owned) == len(second.owned) == 3
    # The first member gave up exactly what the second got, and kept the rest throughout.
    assert set().union(*first.revocations) == second.owned
    assert all(len(r) < PARTITIONS for r in first.revocations)

    earlier = len(first.revocations), len(second.revocations)
    third = Member(broker, "coop", "third", **coop)
    members.append(third)
    producing.send(30)
    settle(members, producing, "three members")
    assert sorted(len(m.owned) for m in members) == [2, 2, 2]
    revoked_now = set().union(*first.revocations[earlier[0] :], *second.revocations[earlier[1] :])
    assert revoked_now == third.owned


def test_committed_offsets_survive_a_broker_restart(
    broker_factory: BrokerFactory, broker: ThreadedBroker
) -> None:
    producing = Producing(broker)
    producing.send(30)
    member = Member(broker, "durable", "before")
    poll_until([member], consumed_all([member], producing), "the first records")
    member.close()
    producing.producer.flush(TIMEOUT)
    committed_before = set(member.consumed)
    broker.stop()

    again = broker_factory(group_initial_rebalance_delay_ms=0)
    later = Producing(again)
    later._numbers = itertools.count(1_000)
    later.send(30)
    after = Member(again, "durable", "after")
    try:
        poll_until([after], consumed_all([after], later), "records produced after the restart")
        # Resumed exactly after the last commit: nothing from before comes again.
        assert not (after.consumed & committed_before)
        positions = after.consumer.committed(
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=TIMEOUT
        )
        assert sum(tp.offset for tp in positions) == 60
    finally:
        after.close()
