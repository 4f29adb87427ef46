"""DeleteRecords (API key 21): move partitions' log start offsets forward.

An offset of -1 means the high watermark (delete everything). Offsets above
the high watermark, or negative, get OFFSET_OUT_OF_RANGE; offsets below the
current log start change nothing. The answer is each partition's new low
watermark (log start offset).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.storage.errors import StorageError

__all__ = ["HANDLER"]

_HIGH_WATERMARK = -1


async def handle(ctx: RequestContext, request: Any) -> Response:
    topics = ctx.broker.topics
    out = []
    for wanted in request.topics:
        topic = topics.get(wanted.name)
        partitions = []
        for p in wanted.partitions:
            partition = topic.partition(p.partition_index) if topic is not None else None
            entry: dict[str, Any] = {
                "partition_index": p.partition_index,
                "low_watermark": -1,
                "error_code": ErrorCode.none,
            }
            if partition is None:
                entry["error_code"] = ErrorCode.unknown_topic_or_partition
            else:
                plog = partition.log
                offset = plog.end_offset if p.offset == _HIGH_WATERMARK else p.offset
                if not 0 <= offset <= plog.end_offset:
                    entry["error_code"] = ErrorCode.offset_out_of_range
                else:
                    try:
                        entry["low_watermark"] = plog.delete_records_before(offset)
                    except StorageError:
                        entry["error_code"] = ErrorCode.kafka_storage_error
            partitions.append(entry)
        out.append({"name": wanted.name, "partitions": partitions})
    return {"throttle_time": 0, "topics": out}


HANDLER = Handler(api_key=21, min_version=0, max_version=2, handle=handle, name="DeleteRecords")
