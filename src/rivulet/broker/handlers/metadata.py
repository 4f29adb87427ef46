"""Metadata (API key 3): brokers, topics, partitions and leaders.

This broker leads every partition, so each partition lists it as leader,
replica and in-sync replica, at leader epoch 0. Unknown topics are created
when auto-creation is on and the request allows it (v4+).
"""

from __future__ import annotations

import uuid
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.handlers._common import AUTHORIZED_OPERATIONS_OMITTED, lookup_topic
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topics import Topic

__all__ = ["HANDLER", "describe_topic"]

_NO_TOPIC_ID = uuid.UUID(int=0)
_ALL_TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))
"""READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS:
without ACLs every client may do everything."""


def describe_topic(topic: Topic, node_id: int, *, operations: int) -> dict[str, Any]:
    """A Metadata response topic entry."""
    return {
        "error_code": ErrorCode.none,
        "name": topic.name,
        "topic_id": topic.topic_id,
        "is_internal": topic.internal,
        "partitions": [
            {
                "error_code": ErrorCode.none,
                "partition_index": p.index,
                "leader_id": node_id,
                "leader_epoch": 0,
                "replica_nodes": [node_id],
                "isr_nodes": [node_id],
                "offline_replicas": [],
            }
            for p in topic.partitions
        ],
        "topic_authorized_operations": operations,
    }


def _error_entry(
    code: ErrorCode, name: str | None, topic_id: uuid.UUID = _NO_TOPIC_ID
) -> dict[str, Any]:
    return {
        "error_code": code,
        "name": name,
        "topic_id": topic_id,
        "is_internal": False,
        "partitions": [],
        "topic_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
    }


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    node_id = broker.config.node_id
    operations = (
        _ALL_TOPIC_OPERATIONS
        if getattr(request, "include_topic_authorized_operations", False)
        else AUTHORIZED_OPERATIONS_OMITTED
    )
    # v0: an empty list means every topic; v1+: null means every topic.
    requested = request.topics
    if requested is None or (ctx.api_version == 0 and not requested):
        topics = [describe_topic(t, node_id, operations=operations) for t in broker.topics]
    else:
        auto_create = getattr(request, "allow_auto_topic_creation", True)
        topics = []
        for wanted in requested:
            name = getattr(wanted, "name", None)
            topic_id = getattr(wanted, "topic_id", None)
            if name is None:
                topic = broker.topics.get_by_id(topic_id) if topic_id is not None else None
                if topic is None:
                    topics.append(
                        _error_entry(ErrorCode.unknown_topic_id, None, topic_id or _NO_TOPIC_ID)
                    )
                    continue
            else:
                try:
                    topic = lookup_topic(broker, name, auto_create=auto_create)
                except BrokerError as exc:
                    topics.append(_error_entry(exc.error_code, name))
                    continue
            topics.append(describe_topic(topic, node_id, operations=operations))
    return {
        "throttle_time": 0,
        "brokers": [
            {
                "node_id": node_id,
                "host": broker.config.client_host,
                "port": broker.port,
                "rack": None,
            }
        ],
        "cluster_id": broker.cluster_id,
        "controller_id": node_id,
        "topics": topics,
        "cluster_authorized_operations": AUTHORIZED_OPERATIONS_OMITTED,
        "error_code": ErrorCode.none,
    }


HANDLER = Handler(api_key=3, min_version=0, max_version=13, handle=handle, name="Metadata")
