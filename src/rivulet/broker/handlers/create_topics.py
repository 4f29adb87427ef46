"""CreateTopics (API key 19): create topics, or with ``validate_only`` check them.

Each topic is created or refused on its own (TOPIC_ALREADY_EXISTS,
INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, INVALID_REPLICATION_FACTOR,
INVALID_REPLICA_ASSIGNMENT, INVALID_CONFIG); a name given twice in one request
is refused with INVALID_REQUEST, as Kafka does. From v5 the response describes
the new topic's partitions, replication factor and configs.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topic_configs import describe_topic_configs
from rivulet.broker.topics import Topic

__all__ = ["HANDLER"]

_NO_TOPIC_ID = uuid.UUID(int=0)


def _created(topic: Topic, num_partitions: int, defaults: Any) -> dict[str, Any]:
    return {
        "name": topic.name,
        "topic_id": topic.topic_id,
        "error_code": ErrorCode.none,
        "error_message": None,
        "topic_config_error_code": 0,
        "num_partitions": num_partitions,
        "replication_factor": 1,
        "configs": [
            {
                "name": entry.name,
                "value": entry.value,
                "read_only": entry.read_only,
                "config_source": int(entry.source),
                "is_sensitive": entry.is_sensitive,
            }
            for entry in describe_topic_configs(defaults, topic.overrides)
        ],
    }


def _failed(name: str, code: ErrorCode, message: str) -> dict[str, Any]:
    return {
        "name": name,
        "topic_id": _NO_TOPIC_ID,
        "error_code": code,
        "error_message": message,
        "topic_config_error_code": 0,
        "num_partitions": -1,
        "replication_factor": -1,
        "configs": None,
    }


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    validate_only = getattr(request, "validate_only", False)
    counts = Counter(t.name for t in request.topics)
    results = []
    for wanted in request.topics:
        if counts[wanted.name] > 1:
            results.append(
                _failed(
                    wanted.name,
                    ErrorCode.invalid_request,
                    f"topic {wanted.name!r} appears more than once in the request",
                )
            )
            continue
        assignments = {a.partition_index: list(a.broker_ids) for a in wanted.assignments}
        try:
            topic = broker.topics.create(
                wanted.name,
                num_partitions=wanted.num_partitions,
                replication_factor=wanted.replication_factor,
                assignments=assignments,
                configs={c.name: c.value for c in wanted.configs},
                node_id=broker.config.node_id,
                validate_only=validate_only,
            )
        except BrokerError as exc:
            results.append(_failed(wanted.name, exc.error_code, str(exc)))
            continue
        num_partitions = (
            len(topic.partitions)
            if not validate_only
            else (
                len(assignments)
                or (
                    wanted.num_partitions
                    if wanted.num_partitions != -1
                    else broker.config.num_partitions
                )
            )
        )
        results.append(_created(topic, num_partitions, broker.topics.log_defaults))
    return {"throttle_time": 0, "topics": results}


HANDLER = Handler(api_key=19, min_version=2, max_version=7, handle=handle, name="CreateTopics")
