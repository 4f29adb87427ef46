"""DescribeConfigs (API key 32): every config of a topic or the broker, with sources.

A topic config's source is DYNAMIC_TOPIC_CONFIG when set on the topic,
STATIC_BROKER_CONFIG when it comes from a broker setting that differs from
Kafka's default, and DEFAULT_CONFIG otherwise; with ``include_synonyms`` the
chain behind the value is listed (topic override, broker setting, default).
"""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.handlers._resources import config_target
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topic_configs import (
    ConfigEntry,
    describe_broker_configs,
    describe_topic_configs,
)

__all__ = ["HANDLER"]


def _entry(entry: ConfigEntry, *, synonyms: bool, documentation: bool) -> dict[str, Any]:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": entry.read_only,
        "config_source": int(entry.source),
        "is_sensitive": entry.is_sensitive,
        "synonyms": [
            {"name": name, "value": value, "source": int(source)}
            for name, value, source in entry.synonyms
        ]
        if synonyms
        else [],
        "config_type": int(entry.type),
        "documentation": entry.documentation if documentation else None,
    }


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    synonyms = bool(getattr(request, "include_synonyms", False))
    documentation = bool(getattr(request, "include_documentation", False))
    results = []
    for resource in request.resources:
        result: dict[str, Any] = {
            "error_code": ErrorCode.none,
            "error_message": None,
            "resource_type": resource.resource_type,
            "resource_name": resource.resource_name,
            "configs": [],
        }
        try:
            topic = config_target(broker, resource.resource_type, resource.resource_name)
        except BrokerError as exc:
            result.update(error_code=exc.error_code, error_message=str(exc))
            results.append(result)
            continue
        keys = resource.configuration_keys
        entries = (
            describe_broker_configs(broker.config, keys)
            if topic is None
            else describe_topic_configs(broker.topics.log_defaults, topic.overrides, keys)
        )
        result["configs"] = [
            _entry(e, synonyms=synonyms, documentation=documentation) for e in entries
        ]
        results.append(result)
    return {"throttle_time": 0, "results": results}


HANDLER = Handler(api_key=32, min_version=1, max_version=4, handle=handle, name="DescribeConfigs")
