"""Produce (API key 0): validate record batches and append them as received.

Per partition: the batches must be record batch v2 (magic 2) with a good
CRC32C (else CORRUPT_MESSAGE), none larger than the topic's
``max.message.bytes`` (else MESSAGE_TOO_LARGE). Valid data is appended
unchanged except for what the log patches (base offsets; with
``message.timestamp.type=LogAppendTime`` the append time and CRC). Records are
never parsed here: only batch headers are read. The request is read by
:func:`~rivulet.protocol.produce.read_produce_request`, so the batches are
checked, patched and written where the request frame received them, never
copied.

acks=0 gets no response. acks=-1 is acknowledged once appended (this broker is
the only replica), after an fsync when the broker runs with ``fsync_acks_all``.

Batches of idempotent producers are checked by the log
(:mod:`rivulet.storage.producer_state`): a retried batch is answered with its
original offsets and not stored again; a broken sequence or a stale epoch is
refused with the error code in :data:`_PRODUCER_ERRORS`.
"""

from __future__ import annotations

import logging
from typing import Any

from kio.schema.errors import ErrorCode

from rivulet.broker.errors import BrokerError, InvalidTopicError
from rivulet.broker.handlers._common import lookup_topic
from rivulet.broker.router import Handler, RequestContext, Response
from rivulet.broker.topics import Partition
from rivulet.protocol.batch import iter_batches, verify_crc
from rivulet.protocol.errors import InvalidBatchError
from rivulet.protocol.produce import ProduceRequest, read_produce_request
from rivulet.storage.errors import StorageError
from rivulet.storage.producer_state import (
    InvalidProducerEpochError,
    InvalidSequenceError,
    OutOfOrderSequenceError,
    ProducerStateError,
)

__all__ = ["HANDLER"]

log = logging.getLogger(__name__)

_PRODUCER_ERRORS: dict[type[ProducerStateError], ErrorCode] = {
    OutOfOrderSequenceError: ErrorCode.out_of_order_sequence_number,
    InvalidProducerEpochError: ErrorCode.invalid_producer_epoch,
    InvalidSequenceError: ErrorCode.invalid_record,
}


def _failed(index: int, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time": -1,
        "log_start_offset": -1,
        "record_errors": [],
        "error_message": message,
    }


def _append(partition: Partition, records: memoryview | None, now_ms: int) -> dict[str, Any]:
    index = partition.index
    if not records:
        return _failed(index, ErrorCode.corrupt_message, "produce request has no record batch")
    max_bytes = partition.topic.log_config.max_message_bytes
    try:
        for pos, header in iter_batches(records):
            if header.size > max_bytes:
                return _failed(
                    index,
                    ErrorCode.message_too_large,
                    f"record batch of {header.size} bytes exceeds max.message.bytes "
                    f"({max_bytes}) of topic {partition.topic.name!r}",
                )
            verify_crc(records, pos, header)
    except InvalidBatchError as exc:
        return _failed(index, ErrorCode.corrupt_message, str(exc))
    try:
        result = partition.append(records, now_ms=now_ms)
    except ProducerStateError as exc:
        return _failed(index, _PRODUCER_ERRORS[type(exc)], str(exc))
    except (StorageError, OSError) as exc:
        log.exception("append to %r failed", partition)
        return _failed(index, ErrorCode.kafka_storage_error, f"append failed: {exc}")
    return {
        "index": index,
        "error_code": ErrorCode.none,
        "base_offset": result.base_offset,
        "log_append_time": result.log_append_time_ms,
        "log_start_offset": result.log_start_offset,
        "record_errors": [],
        "error_message": None,
    }


async def handle(ctx: RequestContext, request: ProduceRequest) -> Response | None:
    broker = ctx.broker
    acks = request.acks
    now_ms = ctx.now_ms()
    appended: list[Partition] = []
    responses = []
    for topic_data in request.topic_data:
        name = topic_data.name
        partitions = topic_data.partition_data
        error: tuple[ErrorCode, str] | None = None
        if acks not in (0, 1, -1):
            error = (ErrorCode.invalid_required_acks, f"acks must be 0, 1 or -1, not {acks}")
        else:
            try:
                topic = lookup_topic(broker, name, auto_create=True)
                if topic.internal:
                    raise InvalidTopicError(f"clients cannot write to internal topic {name!r}")
            except BrokerError as exc:
                error = (exc.error_code, str(exc))
        results = []
        for data in partitions:
            if error is not None:
                results.append(_failed(data.index, *error))
                continue
            partition = topic.partition(data.index)
            if partition is None:
                results.append(
                    _failed(
                        data.index,
                        ErrorCode.unknown_topic_or_partition,
                        f"topic {name!r} has no partition {data.index}",
                    )
                )
                continue
            result = _append(partition, data.records, now_ms)
            if result["error_code"] is ErrorCode.none:
                appended.append(partition)
            results.append(result)
        responses.append({"name": name, "partition_responses": results})
    if acks == -1 and broker.config.fsync_acks_all:
        for partition in dict.fromkeys(appended):
            partition.log.flush()
    if acks == 0:
        return None
    return {"responses": responses, "throttle_time": 0}


HANDLER = Handler(
    api_key=0,
    min_version=3,
    max_version=11,
    handle=handle,
    name="Produce",
    read_body=read_produce_request,
)
