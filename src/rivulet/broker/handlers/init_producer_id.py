"""InitProducerId (API key 22): give an idempotent producer its id and epoch.

A producer without a transactional id gets a producer id never handed out
before (:mod:`rivulet.broker.producer_ids`) and epoch 0. From v3 a client may
pass the id and epoch it holds, asking for its epoch to be bumped (KIP-360;
librdkafka does so after a batch's fate became unknown): when that id is one
this broker issued and the epoch is not exhausted, the answer is the same id
with the next epoch, so every partition sees the producer restart its
sequences at 0 in a newer epoch. Otherwise (an id this broker never issued, an
epoch at 32766 or more) it gets a fresh id at epoch 0, which is what Apache
Kafka answers every producer without a transactional id; clients accept either.

Transactions are not served: a request with a transactional id is answered
INVALID_REQUEST (and the broker log says why), never with a crash. An empty
transactional id is INVALID_REQUEST in Kafka too, as is giving only one of
producer id and epoch.
"""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.router import Handler, RequestContext, Response

__all__ = ["HANDLER"]

log = logging.getLogger(__name__)

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
EXHAUSTED_EPOCH = 32767 - 1
"""As in Kafka: an epoch this high is not bumped (markers need the one above); a new id is."""


def _answer(
    code: ErrorCode, producer_id: int = NO_PRODUCER_ID, epoch: int = NO_PRODUCER_EPOCH
) -> Response:
    return {
        "throttle_time": 0,
        "error_code": code,
        "producer_id": producer_id,
        "producer_epoch": epoch,
    }


async def handle(ctx: RequestContext, request: Any) -> Response | None:
    transactional_id = request.transactional_id
    if transactional_id is not None:
        if transactional_id:
            log.warning(
                "client %r asked for transactional id %r: this broker does not support "
                "transactions; use an idempotent producer (enable.idempotence) instead",
                ctx.header.client_id,
                transactional_id,
            )
        return _answer(ErrorCode.invalid_request)
    producer_id = getattr(request, "producer_id", NO_PRODUCER_ID)
    epoch = getattr(request, "producer_epoch", NO_PRODUCER_EPOCH)
    if (producer_id == NO_PRODUCER_ID) != (epoch == NO_PRODUCER_EPOCH):
        return _answer(ErrorCode.invalid_request)
    allocator = ctx.broker.producer_ids
    try:
        if 0 <= epoch < EXHAUSTED_EPOCH and allocator.issued(producer_id):
            return _answer(ErrorCode.none, producer_id, epoch + 1)
        return _answer(ErrorCode.none, allocator.allocate(), 0)
    except OSError:
        log.exception("could not reserve producer ids")
        # Retriable for clients: they try again once the disk is writable.
        return _answer(ErrorCode.coordinator_not_available)


HANDLER = Handler(api_key=22, min_version=0, max_version=5, handle=handle, name="InitProducerId")
