"""Fetch (API key 1): read record batches, long-polling until enough data arrives.

Reading follows Kafka's rules:

* Partitions are read in request order, each up to its ``partition_max_bytes``
  and all together up to ``max_bytes``; the first batch of the first partition
  that has data is returned whole even when it is larger than either limit
  (KIP-74), so a consumer can always make progress.
* If fewer than ``min_bytes`` are available and no partition has an error, the
  response waits up to ``max_wait`` for appends to any requested partition.
* Offsets outside ``[log start, high watermark]`` get OFFSET_OUT_OF_RANGE.

The high watermark and last stable offset are the log end offset: the broker
is the only replica and runs no transactions, so ``read_committed`` reads the
same data. Fetch sessions (KIP-227) are not kept: every response carries
session id 0, which tells clients to send full fetch requests.

Responses are framed by :func:`rivulet.protocol.fetch.encode_fetch_response`
around the log's own chunks, so record data is not copied here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.router import EncodedResponse, Handler, RequestContext, Response
from rivulet.broker.topics import Partition, Topic
from rivulet.protocol.fetch import FetchPartition, FetchTopic, encode_fetch_response
from rivulet.storage.base import ReadChunk
from rivulet.storage.errors import OffsetOutOfRangeError

__all__ = ["HANDLER"]

_TOPIC_IDS_FROM = 13
_READ_COMMITTED = 1
_NO_SESSION = 0
_NO_TOPIC_ID = uuid.UUID(int=0)


class _Plan:
    """The request's partitions, resolved once, read as often as the wait needs."""

    __slots__ = ("max_bytes", "read_committed", "registry", "topics")

    def __init__(self, ctx: RequestContext, request: Any) -> None:
        topics_registry = self.registry = ctx.broker.topics
        by_id = ctx.api_version >= _TOPIC_IDS_FROM
        self.max_bytes: int = max(0, request.max_bytes)
        self.read_committed = getattr(request, "isolation_level", 0) == _READ_COMMITTED
        self.topics: list[tuple[str, uuid.UUID, Topic | None, ErrorCode, list[Any]]] = []
        for wanted in request.topics:
            if by_id:
                # kio reads the all-zero id (no topic) as None.
                topic_id = wanted.topic_id or _NO_TOPIC_ID
                topic = topics_registry.get_by_id(topic_id)
                missing = ErrorCode.unknown_topic_id
                name = topic.name if topic is not None else ""
            else:
                name = wanted.topic
                topic = topics_registry.get(name)
                missing = ErrorCode.unknown_topic_or_partition
                topic_id = topic.topic_id if topic is not None else _NO_TOPIC_ID
            self.topics.append((name, topic_id, topic, missing, list(wanted.partitions)))

    def read(self) -> tuple[list[FetchTopic[ReadChunk]], int, bool, list[Partition]]:
        """Read every partition once: (topics, bytes, any error, partitions read)."""
        remaining = self.max_bytes
        min_one = True
        total = 0
        failed = False
        watched: list[Partition] = []
        aborted = () if self.read_committed else None
        out_topics: list[FetchTopic[ReadChunk]] = []
        for name, topic_id, known, missing, wanted_partitions in self.topics:
            # A topic deleted (or re-created) while the fetch waited counts as gone.
            topic = known if known is not None and self.registry.get(known.name) is known else None
            out_partitions: list[FetchPartition[ReadChunk]] = []
            for wanted in wanted_partitions:
                index = wanted.partition
                partition = topic.partition(index) if topic is not None else None
                if partition is None:
                    failed = True
                    out_partitions.append(FetchPartition(index, missing))
                    continue
                plog = partition.log
                end = plog.end_offset
                start = plog.start_offset
                try:
                    result = plog.read(
                        wanted.fetch_offset,
                        max(0, min(wanted.partition_max_bytes, remaining)),
                        min_one=min_one,
                    )
                except OffsetOutOfRangeError:
                    failed = True
                    out_partitions.append(
                        FetchPartition(index, ErrorCode.offset_out_of_range, end, end, start)
                    )
                    continue
                watched.append(partition)
                if result.size:
                    min_one = False
                    remaining = max(0, remaining - result.size)
                    total += result.size
                out_partitions.append(
                    FetchPartition(
                        index,
                        ErrorCode.none,
                        end,
                        end,
                        start,
                        aborted,
                        -1,
                        result.chunks,
                        result.size,
                    )
                )
            out_topics.append(FetchTopic(name, topic_id, out_partitions))
        return out_topics, total, failed, watched


async def _wait_for_append(partitions: Sequence[Partition], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    for partition in partitions:
        partition.watch(waiter)
    timer = loop.call_later(seconds, _resolve, waiter)
    try:
        await waiter
    finally:
        timer.cancel()
        for partition in partitions:
            partition.unwatch(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def handle(ctx: RequestContext, request: Any) -> Response:
    version = ctx.api_version
    correlation_id = ctx.header.correlation_id
    session_id = getattr(request, "session_id", _NO_SESSION)
    if session_id != _NO_SESSION:
        # We never hand out sessions, so a client naming one is confused: make it
        # start over with a full fetch.
        return EncodedResponse(
            encode_fetch_response(
                version, correlation_id, [], error_code=ErrorCode.fetch_session_id_not_found
            )
        )
    plan = _Plan(ctx, request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.max_wait.total_seconds()
    broker = ctx.broker
    while True:
        topics, total, failed, watched = plan.read()
        remaining = deadline - loop.time()
        if total >= request.min_bytes or failed or remaining <= 0 or broker.closing:
            break
        await _wait_for_append(watched, remaining)
    pieces = encode_fetch_response(version, correlation_id, topics)
    return EncodedResponse(pieces)


HANDLER = Handler(api_key=1, min_version=4, max_version=17, handle=handle, name="Fetch")
