"""OffsetCommit (API key 8): store a group's consumed positions.

Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION; the rest go to the
group coordinator, which checks the member and generation and answers only once
the commit is appended to ``__consumer_offsets``. v2-4 may carry a retention
time, v6+ the leader epoch, v7+ ``group.instance.id``; from v9 a commit naming a
generation of a group that does not exist gets GROUP_ID_NOT_FOUND (before:
ILLEGAL_GENERATION).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.model import OffsetCommitRequest, OffsetToCommit, TopicPartition
from rivulet.broker.handlers._groups import groups, millis
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_GROUP_ID_NOT_FOUND_FROM = 9


async def handle(ctx: RequestContext, request: Any) -> Response:
    topics = ctx.broker.topics
    errors: dict[TopicPartition, ErrorCode] = {}
    offsets: dict[TopicPartition, OffsetToCommit] = {}
    for wanted in request.topics:
        topic = topics.get(wanted.name)
        for p in wanted.partitions:
            tp = TopicPartition(wanted.name, p.partition_index)
            if topic is None or topic.partition(p.partition_index) is None:
                errors[tp] = ErrorCode.unknown_topic_or_partition
            else:
                offsets[tp] = OffsetToCommit(
                    p.committed_offset,
                    getattr(p, "committed_leader_epoch", -1),
                    p.committed_metadata,
                )
    if offsets:
        commit = OffsetCommitRequest(
            group_id=request.group_id,
            member_id=request.member_id,
            group_instance_id=getattr(request, "group_instance_id", None),
            generation_id=request.generation_id_or_member_epoch,
            retention_time_ms=millis(getattr(request, "retention_time", -1)),
            offsets=offsets,
            unknown_group_error=(
                ErrorCode.group_id_not_found
                if ctx.api_version >= _GROUP_ID_NOT_FOUND_FROM
                else ErrorCode.illegal_generation
            ),
        )
        errors.update(groups(ctx).commit_offsets(commit))
    return {
        "throttle_time": 0,
        "topics": [
            {
                "name": wanted.name,
                "partitions": [
                    {
                        "partition_index": p.partition_index,
                        "error_code": errors[TopicPartition(wanted.name, p.partition_index)],
                    }
                    for p in wanted.partitions
                ],
            }
            for wanted in request.topics
        ],
    }


HANDLER = Handler(api_key=8, min_version=2, max_version=9, handle=handle, name="OffsetCommit")
