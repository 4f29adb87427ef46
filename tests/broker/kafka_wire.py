"""A bare Kafka wire client for tests: send any request, read any response, raw bytes too."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import struct
from collections.abc import Mapping
from typing import Any

from rivulet.protocol.messages import decode_response, encode_request

__all__ = ["WireClient"]

_SIZE = struct.Struct(">i")


class WireClient:
    """One TCP connection to a broker, speaking requests built from mappings."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, bootstrap: str) -> WireClient:
        host, _, port = bootstrap.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def send(
        self, api_key: int, version: int, body: Mapping[str, Any] | Any, client_id: str = "wire"
    ) -> int:
        """Send a request without waiting; return its correlation id."""
        correlation_id = next(self._ids)
        self.writer.write(encode_request(api_key, version, correlation_id, client_id, body))
        await self.writer.drain()
        return correlation_id

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_frame(self) -> bytes:
        size = _SIZE.unpack(await self.reader.readexactly(4))[0]
        return await self.reader.readexactly(size)

    async def receive(self, api_key: int, version: int) -> tuple[int, Any]:
        """Read the next response, decoded as ``api_key`` at ``version``."""
        return decode_response(api_key, version, await self.read_frame())

    async def request(self, api_key: int, version: int, body: Mapping[str, Any] | Any) -> Any:
        """Send a request and return the decoded body of its response."""
        correlation_id = await self.send(api_key, version, body)
        got, response = await asyncio.wait_for(self.receive(api_key, version), 30)
        assert got == correlation_id
        return response

    async def closed_by_peer(self) -> bool:
        """Whether the broker closed this connection (waits for it, up to 10 s)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), 10)
        except ConnectionResetError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await self.writer.wait_closed()
