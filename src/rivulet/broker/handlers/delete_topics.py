"""DeleteTopics (API key 20): delete topics by name (v1-5) or by name or id (v6)."""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

_NO_TOPIC_ID = uuid.UUID(int=0)


async def handle(ctx: RequestContext, request: Any) -> Response:
    topics = ctx.broker.topics
    if ctx.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, None) for name in request.topic_names]
    responses = []
    for wanted_name, topic_id in wanted:
        name = wanted_name
        entry: dict[str, Any] = {
            "name": name,
            "topic_id": topic_id or _NO_TOPIC_ID,
            "error_code": ErrorCode.none,
            "error_message": None,
        }
        if name is None:
            topic = topics.get_by_id(topic_id) if topic_id is not None else None
            if topic is None:
                entry.update(
                    error_code=ErrorCode.unknown_topic_id,
                    error_message=f"no topic has id {topic_id}",
                )
                responses.append(entry)
                continue
            name = entry["name"] = topic.name
        try:
            deleted = topics.delete(name)
        except BrokerError as exc:
            entry.update(error_code=exc.error_code, error_message=str(exc))
        else:
            entry["topic_id"] = deleted.topic_id
            ctx.broker.groups.topics_deleted([name])  # a re-created topic starts afresh
        responses.append(entry)
    return {"throttle_time": 0, "responses": responses}


HANDLER = Handler(api_key=20, min_version=1, max_version=6, handle=handle, name="DeleteTopics")
