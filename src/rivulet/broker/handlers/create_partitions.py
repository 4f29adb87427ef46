"""CreatePartitions (API key 37): add partitions to existing topics."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError
from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]


async def handle(ctx: RequestContext, request: Any) -> Response:
    broker = ctx.broker
    counts = Counter(t.name for t in request.topics)
    results = []
    for wanted in request.topics:
        entry: dict[str, Any] = {
            "name": wanted.name,
            "error_code": ErrorCode.none,
            "error_message": None,
        }
        if counts[wanted.name] > 1:
            entry.update(
                error_code=ErrorCode.invalid_request,
                error_message=f"topic {wanted.name!r} appears more than once in the request",
            )
            results.append(entry)
            continue
        assignments = (
            None if wanted.assignments is None else [list(a.broker_ids) for a in wanted.assignments]
        )
        try:
            broker.topics.create_partitions(
                wanted.name,
                wanted.count,
                assignments=assignments,
                node_id=broker.config.node_id,
                validate_only=request.validate_only,
            )
        except BrokerError as exc:
            entry.update(error_code=exc.error_code, error_message=str(exc))
        results.append(entry)
    return {"throttle_time": 0, "results": results}


HANDLER = Handler(api_key=37, min_version=0, max_version=3, handle=handle, name="CreatePartitions")
