"""EmbeddedBroker in the caller's loop and in a thread; periodic retention."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from rivulet.broker import EmbeddedBroker, StorageKind, serving_on
from rivulet.broker.errors import ConfigError
from rivulet.protocol.records import build_batch

from .kafka_wire import WireClient


async def test_async_context_manager_serves_on_a_free_port(tmp_path: Path) -> None:
    embedded = EmbeddedBroker(tmp_path)
    with pytest.raises(RuntimeError, match="not been started"):
        _ = embedded.bootstrap_servers
    async with embedded as broker:
        host, port = broker.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        client = await WireClient.connect(broker.bootstrap_servers)
        assert (await client.request(3, 1, {"topics": None})).brokers[0].port == int(port)
        await client.close()
    with socket.socket() as probe:  # the port is released
        probe.bind(("127.0.0.1", int(port)))


async def test_the_loop_serving_a_broker_is_known_while_it_serves() -> None:
    # Clients on that loop must not block it waiting for the broker (the framework asks).
    loop = asyncio.get_running_loop()
    assert not serving_on(loop)
    async with EmbeddedBroker(), EmbeddedBroker():
        assert serving_on(loop)
    assert not serving_on(loop)
    with EmbeddedBroker.start_in_thread():  # its own loop, in its own thread
        assert not serving_on(loop)


async def test_without_data_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with EmbeddedBroker() as broker:
        assert broker.config.storage is StorageKind.MEMORY
        broker.broker.topics.create("t")
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's tiny directory


def test_thread_handle_starts_and_stops(tmp_path: Path) -> None:
    with EmbeddedBroker.start_in_thread(tmp_path, num_partitions=3) as handle:
        assert handle.broker.config.num_partitions == 3

        async def create() -> int:
            return len(handle.broker.topics.create("t").partitions)

        assert handle.call(create()) == 3
    handle.stop()  # stopping twice is harmless


def test_start_errors_surface_in_the_caller(tmp_path: Path) -> None:
    with EmbeddedBroker.start_in_thread(tmp_path) as handle:

        async def create() -> None:
            handle.broker.topics.create("t")

        handle.call(create())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="address already in use"):
            EmbeddedBroker.start_in_thread(tmp_path, port=taken.getsockname()[1])
    # The logs it had opened were closed cleanly (see docs/decisions/0002).
    assert (tmp_path / "t-0" / "clean-shutdown").exists()
    with pytest.raises(ConfigError):
        EmbeddedBroker(tmp_path, num_partitions=0)


async def test_retention_runs_in_the_background(tmp_path: Path) -> None:
    async with EmbeddedBroker(tmp_path, retention_check_interval_ms=20) as broker:
        topic = broker.broker.topics.create(
            "old", configs={"retention.ms": "1000", "segment.ms": "1"}
        )
        partition = topic.partitions[0]
        now = time.time_ns() // 1_000_000  # the broker runs on the system clock
        ancient = build_batch([(None, b"ancient")], timestamp_ms=now - 10 * 86_400_000)
        partition.append(bytearray(ancient), now_ms=now - 10)
        partition.append(bytearray(build_batch([(None, b"fresh")], timestamp_ms=now)), now_ms=now)
        for _ in range(500):  # the cleaner runs every 20 ms
            if partition.log.start_offset == 1:
                break
            await asyncio.sleep(0.01)
        assert partition.log.start_offset == 1
