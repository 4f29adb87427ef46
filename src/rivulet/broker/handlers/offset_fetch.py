"""OffsetFetch (API key 9): a group's committed positions.

A partition without a committed offset answers offset -1 (the consumer then
applies ``auto.offset.reset``). v1 names partitions; v2+ may ask for every
committed partition (null topics) and carry a top-level error; v8+ ask for
several groups at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.coordinator.model import TopicPartition
from rivulet.broker.coordinator.records import CommittedOffset
from rivulet.broker.handlers._groups import groups
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_MULTI_GROUP_FROM = 8


def _partition(index: int, committed: CommittedOffset | None) -> dict[str, Any]:
    return {
        "partition_index": index,
        "committed_offset": -1 if committed is None else committed.offset,
        "committed_leader_epoch": -1 if committed is None else committed.leader_epoch,
        "metadata": "" if committed is None else committed.metadata,
        "error_code": ErrorCode.none,
    }


def _fetch_group(ctx: RequestContext, group_id: str, topics: Sequence[Any] | None) -> list[Any]:
    if topics is None:
        found = groups(ctx).fetch_offsets(group_id, None)
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for tp in sorted(found):
            by_topic.setdefault(tp.topic, []).append(_partition(tp.partition, found[tp]))
        return [{"name": name, "partitions": parts} for name, parts in by_topic.items()]
    wanted = [TopicPartition(t.name, i) for t in topics for i in t.partition_indexes]
    found = groups(ctx).fetch_offsets(group_id, wanted)
    return [
        {
            "name": t.name,
            "partitions": [
                _partition(i, found[TopicPartition(t.name, i)]) for i in t.partition_indexes
            ],
        }
        for t in topics
    ]


async def handle(ctx: RequestContext, request: Any) -> Response:
    if ctx.api_version >= _MULTI_GROUP_FROM:
        return {
            "throttle_time": 0,
            "groups": [
                {
                    "group_id": g.group_id,
                    "topics": _fetch_group(ctx, g.group_id, g.topics),
                    "error_code": ErrorCode.none,
                }
                for g in request.groups
            ],
        }
    return {
        "throttle_time": 0,
        "topics": _fetch_group(ctx, request.group_id, request.topics),
        "error_code": ErrorCode.none,
    }


HANDLER = Handler(api_key=9, min_version=1, max_version=9, handle=handle, name="OffsetFetch")
