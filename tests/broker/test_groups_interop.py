"""One consumer group, two pure-Python clients: aiokafka and kafka-python, range assignor.

The clients must agree on the protocol the broker selects, split the partitions
between them without overlap, consume every record, and hand everything to the
survivor when one leaves.
"""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor as AioRange
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.broker import ThreadedBroker

# kafka-python 3 loads its protocol schemas with a deprecated importlib call.
OPEN_TEXT_DEPRECATED = "ignore:open_text is deprecated:DeprecationWarning"
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "open_text is deprecated", DeprecationWarning)
    from kafka import KafkaConsumer
    from kafka.coordinator.assignors.range import RangePartitionAssignor as SyncRange

pytestmark = [pytest.mark.interop, pytest.mark.filterwarnings(OPEN_TEXT_DEPRECATED)]

BrokerFactory = Callable[..., ThreadedBroker]
TOPIC = "mixed"
PARTITIONS = 6
GROUP = "mixed-clients"
TIMEOUT = 30.0
COMMON = {
    "group_id": GROUP,
    "session_timeout_ms": 6_000,
    "heartbeat_interval_ms": 300,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "fetch_max_wait_ms": 50,
}


class KafkaPythonMember(threading.Thread):
    """A kafka-python consumer polling in its own thread until told to stop."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(name="kafka-python-member", daemon=True)
        self.bootstrap = bootstrap
        self.owned: set[int] = set()
        self.consumed: set[bytes] = set()
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                consumer = KafkaConsumer(
                    TOPIC,
                    bootstrap_servers=self.bootstrap,
                    partition_assignment_strategy=[SyncRange],
                    client_id="kafka-python",
                    **COMMON,
                )
            try:
                while not self.stop_event.is_set():
                    batches = consumer.poll(timeout_ms=100)
                    for messages in batches.values():
                        self.consumed.update(m.value for m in messages)
                    if batches:
                        consumer.commit()
                    self.owned = {tp.partition for tp in consumer.assignment()}
            finally:
                consumer.close()  # sends LeaveGroup
        except BaseException as exc:  # reported by the test thread
            self.error = exc


async def test_aiokafka_and_kafka_python_share_a_group_with_the_range_assignor(
    broker_factory: BrokerFactory,
) -> None:
    broker = broker_factory(group_initial_rebalance_delay_ms=0)
    bootstrap = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)]).values():
        future.result(TIMEOUT)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    sent = {f"record-{n}".encode() for n in range(60)}
    for n, value in enumerate(sorted(sent)):
        producer.produce(TOPIC, value=value, partition=n % PARTITIONS)
    assert producer.flush(TIMEOUT) == 0

    sync_member = KafkaPythonMember(bootstrap)
    sync_member.start()
    aio = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        partition_assignment_strategy=(AioRange,),
        client_id="aiokafka",
        **COMMON,
    )
    await aio.start()
    consumed: set[bytes] = set()
    try:

        async def poll_until(condition: Callable[[], bool], what: str) -> None:
            deadline = time.monotonic() + TIMEOUT
            while not condition():
                assert sync_member.error is None, sync_member.error
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                batches = await aio.getmany(timeout_ms=100)
                for messages in batches.values():
                    consumed.update(m.value for m in messages if m.value is not None)
                if batches:
                    await aio.commit()

        def split_evenly() -> bool:
            mine = {tp.partition for tp in aio.assignment()}
            theirs = sync_member.owned
            return len(mine) == len(theirs) == 3 and mine | theirs == set(range(PARTITIONS))

        await poll_until(split_evenly, "the two clients to split the partitions")
        # Range gives each member a contiguous block.
        blocks = sorted(
            [sorted(tp.partition for tp in aio.assignment()), sorted(sync_member.owned)]
        )
        assert blocks == [[0, 1, 2], [3, 4, 5]]
        await poll_until(lambda: sent <= consumed | sync_member.consumed, "every record")

        sync_member.stop_event.set()
        await asyncio.to_thread(sync_member.join, TIMEOUT)
        assert sync_member.error is None, sync_member.error
        await poll_until(
            lambda: {tp.partition for tp in aio.assignment()} == set(range(PARTITIONS)),
            "aiokafka to take over every partition",
        )
    finally:
        sync_member.stop_event.set()
        await aio.stop()
        await asyncio.to_thread(sync_member.join, TIMEOUT)
