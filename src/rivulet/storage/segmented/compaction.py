"""Log compaction: keep the latest record per key. Pure decisions over batch bytes.

Used by :class:`~rivulet.storage.segmented.log.SegmentedLog` and
:class:`~rivulet.storage.memory.MemoryLog` alike; the logs only move bytes.

What a compaction pass does, following Kafka's log cleaner:

* Only *cleanable* segments are touched: the leading run of rolled segments whose
  largest timestamp is at least ``min.compaction.lag.ms`` old. The active segment
  never is, so records still being appended are never rewritten.
* A first pass over the cleanable batches maps each key to the offset of its
  latest record. Compressed batches are decompressed to read the keys.
* A second pass rewrites each batch keeping only records that are the latest for
  their key. Offsets never change: a rewritten batch keeps its base offset and
  last offset delta (so the next offset is still known), and its records keep
  their offset and timestamp deltas. A batch losing records is re-encoded with
  its original codec; a batch keeping all of them is left byte for byte.
* A tombstone (null value) is kept while it is younger than
  ``delete.retention.ms``, measured from its own timestamp, so that a consumer
  reading within that time still sees the deletion; then it goes too.
* Records without a key cannot be compacted and are dropped (Kafka rejects them
  on produce to a compacted topic).
* A batch left with no records is dropped, unless it is the last batch of its
  producer id in the cleanable range: then it is kept empty, so that the
  producer's last sequence and epoch survive for idempotence.
* Control batches (transaction markers) are kept as they are; aborted
  transactional records are compacted like any other (a simplification).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rivulet.protocol.batch import read_header
from rivulet.protocol.errors import InvalidBatchError
from rivulet.protocol.records import DecodedBatch, Record, decode_batch, encode_batch
from rivulet.storage.base import CleanupPolicy, LogConfig
from rivulet.storage.errors import CorruptLogError
from rivulet.storage.segmented.retention import SegmentStats

__all__ = ["CompactionPlan", "cleanable_count", "plan"]

BatchBytes = bytes | bytearray | memoryview


def _decode(batch: BatchBytes) -> DecodedBatch:
    try:
        return decode_batch(batch, verify=False)
    except InvalidBatchError as exc:
        header = read_header(batch)
        raise CorruptLogError(
            f"cannot compact: the batch at offset {header.base_offset} does not decode ({exc}); "
            "the log holds data its producer's client could not have written"
        ) from exc


def cleanable_count(segments: Sequence[SegmentStats], config: LogConfig, *, now_ms: int) -> int:
    """How many leading segments a compaction pass may rewrite (never the last)."""
    if CleanupPolicy.COMPACT not in config.cleanup_policy:
        return 0
    count = 0
    horizon = now_ms - config.min_compaction_lag_ms
    while count < len(segments) - 1 and segments[count].max_timestamp <= horizon:
        count += 1
    return count


class CompactionPlan:
    """What to keep of each cleanable batch, once the latest offset per key is known."""

    __slots__ = ("_config", "_latest", "_now_ms", "_producer_last")

    def __init__(
        self,
        latest: dict[bytes, int],
        producer_last: dict[int, int],
        config: LogConfig,
        now_ms: int,
    ) -> None:
        self._latest = latest
        self._producer_last = producer_last
        self._config = config
        self._now_ms = now_ms

    def rewrite(self, batch: BatchBytes) -> BatchBytes | None:
        """``batch`` itself if it stays whole, its smaller rewrite, or ``None`` to drop it."""
        header = read_header(batch)
        if header.is_control:
            return batch
        decoded = _decode(batch)
        kept = [r for r in decoded.records if self._keep(decoded, r)]
        if len(kept) == len(decoded.records):
            return batch
        if not kept and self._producer_last.get(header.producer_id) != header.last_offset:
            return None
        if header.log_append_time or not kept:
            max_timestamp = header.max_timestamp
        else:
            max_timestamp = max(decoded.timestamp(r) for r in kept)
        return encode_batch(
            kept,
            base_offset=header.base_offset,
            base_timestamp=header.base_timestamp,
            max_timestamp=max_timestamp,
            last_offset_delta=header.last_offset_delta,
            compression=header.compression,
            producer_id=header.producer_id,
            producer_epoch=header.producer_epoch,
            base_sequence=header.base_sequence,
            partition_leader_epoch=header.partition_leader_epoch,
            transactional=header.is_transactional,
            log_append_time=header.log_append_time,
        )

    def _keep(self, batch: DecodedBatch, record: Record) -> bool:
        key = record.key
        if key is None or self._latest.get(key) != batch.offset(record):
            return False
        if record.value is None:
            return batch.timestamp(record) + self._config.delete_retention_ms > self._now_ms
        return True


def plan(batches: Iterable[BatchBytes], config: LogConfig, *, now_ms: int) -> CompactionPlan:
    """Read every cleanable batch once and decide what compaction keeps.

    Raises :class:`~rivulet.storage.errors.CorruptLogError` (here or from
    :meth:`CompactionPlan.rewrite`) when a batch's records do not decode.
    """
    latest: dict[bytes, int] = {}
    producer_last: dict[int, int] = {}
    for batch in batches:
        header = read_header(batch)
        if header.producer_id >= 0:
            producer_last[header.producer_id] = header.last_offset
        if header.is_control:
            continue
        decoded = _decode(batch)
        for record in decoded.records:
            if record.key is not None:
                latest[record.key] = decoded.offset(record)
    return CompactionPlan(latest, producer_last, config, now_ms)
