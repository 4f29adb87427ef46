"""Dispatch without sockets: the router, ApiVersions, when to close, the fsync option."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from rivulet.broker import Broker, BrokerConfig, StorageKind
from rivulet.broker.core import CloseConnectionError
from rivulet.broker.handlers import HANDLERS, api_versions
from rivulet.broker.router import Handler, RequestContext, Response, Router
from rivulet.protocol.messages import decode_response, encode_request
from rivulet.protocol.records import build_batch
from rivulet.storage.memory import MemoryLog


async def _noop(ctx: RequestContext, request: Any) -> Response | None:
    return None


def test_duplicate_api_key_refused() -> None:
    router = Router([Handler(3, 0, 1, _noop, "first")])
    with pytest.raises(ValueError, match="already has a handler"):
        router.register(Handler(3, 0, 12, _noop, "second"))


def test_versions_kio_lacks_are_refused() -> None:
    with pytest.raises(ValueError, match="no schema"):
        Router([Handler(0, 0, 3, _noop, "Produce")])  # kio has Produce from v3 only
    with pytest.raises(ValueError, match="empty version range"):
        Router([Handler(3, 2, 1, _noop, "backwards")])


def test_lookup_and_listing() -> None:
    router = Router(HANDLERS)
    assert router.lookup(1, 4) is not None
    assert router.lookup(1, 3) is None
    assert router.lookup(9999, 0) is None
    listing = router.api_versions()
    assert [key for key, _, _ in listing] == sorted(h.api_key for h in HANDLERS)
    assert (18, 0, 4) in listing


def test_every_handler_module_declares_one_handler() -> None:
    names = [h.name for h in HANDLERS]
    assert len(names) == len(set(names))
    assert api_versions.HANDLER in HANDLERS


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    broker = Broker(BrokerConfig(data_dir=tmp_path, port=0, storage=StorageKind.MEMORY))
    broker.open()
    return broker


async def test_registered_handler_is_advertised_and_called(tmp_path: Path) -> None:
    calls: list[int] = []

    async def describe_groups(ctx: RequestContext, request: Any) -> Response:
        calls.append(ctx.api_version)
        return {"throttle_time": 0, "groups": []}

    broker = Broker(
        BrokerConfig(data_dir=tmp_path, storage=StorageKind.MEMORY),
        handlers=[
            *(h for h in HANDLERS if h.api_key != 15),
            Handler(15, 0, 5, describe_groups, "TestDescribeGroups"),
        ],
    )
    broker.open()
    pieces = await broker.handle_frame(
        encode_request(
            18, 3, 1, "t", {"client_software_name": "t", "client_software_version": "1"}
        )[4:]
    )
    assert pieces is not None
    _, response = decode_response(18, 3, b"".join(bytes(p) for p in pieces)[4:])  # type: ignore[arg-type]
    assert any(k.api_key == 15 and k.max_version == 5 for k in response.api_keys)
    pieces = await broker.handle_frame(
        encode_request(15, 5, 2, "t", {"groups": [], "include_authorized_operations": False})[4:]
    )
    assert calls == [5]


async def test_unsupported_api_versions_version_answers_v0(broker: Broker) -> None:
    frame = struct.pack(">hhih", 18, 77, 5, -1)
    pieces = await broker.handle_frame(frame)
    assert pieces is not None
    correlation_id, response = decode_response(18, 0, b"".join(bytes(p) for p in pieces)[4:])  # type: ignore[arg-type]
    assert correlation_id == 5
    assert response.error_code is ErrorCode.unsupported_version
    assert len(response.api_keys) == len(HANDLERS)


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">hhih", 9999, 0, 1, -1),  # unknown API key
        struct.pack(">hhih", 1, 3, 1, -1),  # Fetch v3: below our range
        struct.pack(">hhih", 3, 1, 1, -1) + b"\x00",  # truncated body
        b"\x00\x03",  # truncated header
    ],
)
async def test_unanswerable_requests_close_the_connection(broker: Broker, frame: bytes) -> None:
    with pytest.raises(CloseConnectionError):
        await broker.handle_frame(frame)


async def test_handler_bug_closes_the_connection(tmp_path: Path) -> None:
    async def broken(ctx: RequestContext, request: Any) -> Response:
        raise RuntimeError("bug")

    broker = Broker(
        BrokerConfig(data_dir=tmp_path, storage=StorageKind.MEMORY),
        handlers=[Handler(3, 0, 12, broken, "Metadata")],
    )
    broker.open()
    with pytest.raises(CloseConnectionError, match="Metadata failed: bug"):
        await broker.handle_frame(encode_request(3, 1, 1, None, {"topics": None})[4:])


class CountingLog(MemoryLog):
    flushes = 0

    def flush(self) -> None:
        CountingLog.flushes += 1
        super().flush()


@pytest.mark.parametrize(
    ("fsync", "acks", "flushed"), [(True, -1, 1), (True, 1, 0), (False, -1, 0)]
)
async def test_fsync_before_acknowledging_acks_all(
    tmp_path: Path, fsync: bool, acks: int, flushed: int
) -> None:
    CountingLog.flushes = 0
    broker = Broker(
        BrokerConfig(data_dir=tmp_path, storage=StorageKind.MEMORY, fsync_acks_all=fsync),
        log_factory=lambda _path, config: CountingLog(config),
    )
    broker.open()
    body = {
        "acks": acks,
        "timeout": 1000,
        "topic_data": [
            {"name": "t", "partition_data": [{"index": 0, "records": build_batch([(None, b"v")])}]}
        ],
    }
    pieces = await broker.handle_frame(encode_request(0, 9, 1, None, body)[4:])
    assert pieces is not None
    assert CountingLog.flushes == flushed
