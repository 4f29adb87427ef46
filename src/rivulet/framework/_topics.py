"""Creating the topics an app needs before it subscribes (``create_topics`` setting).

Consumers subscribed to a topic that does not exist yet get no partitions, and retry
and dead-letter topics only appear with the first failure. So at start the app
creates what its topology names and the broker lacks: event topics with their
declared partition count (else the broker's default), retry and dead-letter topics
with as many partitions as their main topic, as Spring does. Topics that exist are
left alone. In production, where topics come from the topology as Strimzi KafkaTopic
resources, turn this off (``RIVULET_CREATE_TOPICS=false``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from rivulet.framework._retry import main_topic_of
from rivulet.framework._topology import Topology
from rivulet.framework._wire import ConsumedRecord

__all__ = ["ensure_topics"]

_log = logging.getLogger("rivulet.topics")
_ALREADY_EXISTS = 36
_TIMEOUT_S = 15.0


async def ensure_topics(topology: Topology, client_config: Mapping[str, Any]) -> list[str]:
    """Create the topology's missing topics; returns the names created."""
    return await asyncio.to_thread(_ensure, topology, dict(client_config))


def _ensure(topology: Topology, config: dict[str, Any]) -> list[str]:
    admin = AdminClient(config)
    existing = _partition_counts(admin)
    created: list[str] = []
    main = [t for t in topology.topics if t.role == "events"]
    derived = [t for t in topology.topics if t.role != "events"]
    created += _create(admin, [(t.name, t.partitions or -1, t.config) for t in main], existing)
    if derived:
        existing = _partition_counts(admin)
        wanted = []
        for info in derived:
            origin = main_topic_of(ConsumedRecord(info.name, 0, 0, 0, None, None))
            if info.role == "dead-letter":
                origin = info.name.removesuffix("-dlt")
            wanted.append((info.name, existing.get(origin, -1), info.config))
        created += _create(admin, wanted, existing)
    return created


def _partition_counts(admin: AdminClient) -> dict[str, int]:
    metadata = admin.list_topics(timeout=_TIMEOUT_S)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def _create(
    admin: AdminClient,
    wanted: list[tuple[str, int, Mapping[str, str]]],
    existing: Mapping[str, int],
) -> list[str]:
    missing = [
        NewTopic(name, num_partitions=partitions, config=dict(config))
        for name, partitions, config in wanted
        if name not in existing
    ]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=_TIMEOUT_S).items():
        try:
            future.result(_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - KafkaException; reported, not fatal
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() == _ALREADY_EXISTS:
                continue
            _log.warning("could not create topic %s: %s (create it, or check ACLs)", name, exc)
        else:
            created.append(name)
    if created:
        _log.info("created topics %s", ", ".join(sorted(created)))
    return created
