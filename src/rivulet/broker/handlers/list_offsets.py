"""ListOffsets (API key 2): find offsets by time, or the log's ends.

Special timestamps, as Kafka defines them: -2 the log start offset (earliest),
-1 the log end offset (latest; also the high watermark and last stable offset
here), -3 the offset of the record with the largest timestamp (v7+). Any
other timestamp >= 0 finds the first offset whose timestamp is at least it,
from the log's time index; when there is none the answer is offset -1.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.storage.base import PartitionLog

__all__ = ["HANDLER"]

LATEST = -1
EARLIEST = -2
MAX_TIMESTAMP = -3
_NOT_FOUND = (-1, -1)


def _lookup(plog: PartitionLog, timestamp: int, version: int) -> tuple[int, int] | ErrorCode:
    """``(offset, timestamp)`` for a ListOffsets query, or the error to answer."""
    if timestamp == LATEST:
        return plog.end_offset, -1
    if timestamp == EARLIEST:
        return plog.start_offset, -1
    if timestamp == MAX_TIMESTAMP and version >= 7:
        found = plog.max_timestamp()
        return found if found is not None else _NOT_FOUND
    if timestamp < 0:
        return ErrorCode.invalid_request
    found = plog.offset_for_timestamp(timestamp)
    return found if found is not None else _NOT_FOUND


async def handle(ctx: RequestContext, request: Any) -> Response:
    topics = ctx.broker.topics
    version = ctx.api_version
    out = []
    for wanted in request.topics:
        topic = topics.get(wanted.name)
        partitions = []
        for p in wanted.partitions:
            partition = topic.partition(p.partition_index) if topic is not None else None
            entry: dict[str, Any] = {
                "partition_index": p.partition_index,
                "error_code": ErrorCode.none,
                "timestamp": -1,
                "offset": -1,
                "leader_epoch": -1,
            }
            if partition is None:
                entry["error_code"] = ErrorCode.unknown_topic_or_partition
            else:
                found = _lookup(partition.log, p.timestamp, version)
                if isinstance(found, ErrorCode):
                    entry["error_code"] = found
                else:
                    entry["offset"], entry["timestamp"] = found
                    entry["leader_epoch"] = 0
            partitions.append(entry)
        out.append({"name": wanted.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": out}


HANDLER = Handler(api_key=2, min_version=1, max_version=7, handle=handle, name="ListOffsets")
