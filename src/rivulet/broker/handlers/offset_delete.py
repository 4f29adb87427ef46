"""OffsetDelete (API key 47): delete a group's committed offsets for some partitions.

Refused per partition (GROUP_SUBSCRIBED_TO_TOPIC) for topics an active consumer
group subscribes to; refused for the whole group (NON_EMPTY_GROUP) when it has
members of another protocol type; partitions of unknown topics get
UNKNOWN_TOPIC_OR_PARTITION.
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.model import TopicPartition
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    topics = ctx.broker.topics
    known = [
        TopicPartition(wanted.name, p.partition_index)
        for wanted in request.topics
        if (topic := topics.get(wanted.name)) is not None
        for p in wanted.partitions
        if topic.partition(p.partition_index) is not None
    ]
    result = groups(ctx).delete_offsets(request.group_id, known)
    if result.error is not ErrorCode.none:
        return {"error_code": result.error, "throttle_time": 0, "topics": []}
    return {
        "error_code": ErrorCode.none,
        "throttle_time": 0,
        "topics": [
            {
                "name": wanted.name,
                "partitions": [
                    {
                        "partition_index": p.partition_index,
                        "error_code": result.partition_errors.get(
                            TopicPartition(wanted.name, p.partition_index),
                            ErrorCode.unknown_topic_or_partition,
                        ),
                    }
                    for p in wanted.partitions
                ],
            }
            for wanted in request.topics
        ],
    }


HANDLER = Handler(api_key=47, min_version=0, max_version=0, handle=handle, name="OffsetDelete")
