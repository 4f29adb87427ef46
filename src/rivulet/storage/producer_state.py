"""Idempotent producers: one partition's producer state, kept as Kafka keeps it.

An idempotent producer stamps every batch with its producer id, its epoch and
the sequence number of the batch's first record. Sequences count records per
partition and wrap from ``2**31 - 1`` to 0, so a batch covers the sequences
``base_sequence .. (base_sequence + last_offset_delta) mod 2**31``. For each
producer id a partition remembers the epoch and the last five batches appended
(first and last sequence, first and last offset, max timestamp): Kafka's
``ProducerStateEntry``. Five because a producer keeps at most five requests in
flight per partition, so any retry it can send is one of them.

What happens to a batch with a producer id (id >= 0), in this order:

1. **Duplicate**: it has the epoch and exactly the first and last sequence of
   one of the five remembered batches. It is not stored again; the append
   answers with the original batch's offsets, as if it had just been written.
2. **Stale epoch**: its epoch is below the producer's known epoch ->
   :class:`InvalidProducerEpochError` (``INVALID_PRODUCER_EPOCH``).
3. **New epoch**: its epoch is above the known one -> it must start at
   sequence 0, else :class:`OutOfOrderSequenceError`; the remembered batches of
   the old epoch are forgotten.
4. **Same epoch**: its first sequence must follow the last one appended (last
   + 1, or 0 after ``2**31 - 1``), else :class:`OutOfOrderSequenceError`
   (``OUT_OF_ORDER_SEQUENCE_NUMBER``).
5. **Unknown producer** (never seen, or expired): any sequence is accepted.
   Kafka stopped answering ``UNKNOWN_PRODUCER_ID`` here (since 2.5, KIP-360): a
   producer whose records were all removed by retention or DeleteRecords simply
   carries on, and refusing it would make the client resend, and so duplicate,
   what it still holds.

A batch with a producer id but no sequence (base sequence -1) is malformed
(:class:`InvalidSequenceError`, ``INVALID_RECORD``). Batches without a producer
id and control batches are not looked at. Several batches of one producer in
one append must follow each other.

A producer is forgotten once its last batch's timestamp is
``producer.id.expiration.ms`` (one day) old; the check runs at most every ten
minutes, at an append (Kafka's ``producer.id.expiration.check.interval.ms``).
As in Kafka, the timestamp is the batch's max timestamp: the producer's clock
with CreateTime, the broker's with LogAppendTime.

The state is rebuilt from batch headers alone (:meth:`ProducerStateManager.replay`,
no record is decoded) and saved in snapshots by the segmented log (see
:mod:`rivulet.storage.segmented.producer_snapshots`).

>>> from rivulet.protocol.records import Record, encode_batch
>>> from rivulet.storage.segmented.appending import place_batches
>>> state = ProducerStateManager()
>>> data = bytearray(encode_batch([Record(value=b"a")], producer_id=7, producer_epoch=0,
...                               base_sequence=0))
>>> pending = state.check(data, now_ms=0)
>>> state.record(pending, place_batches(data, 40, log_append_time_ms=None))
>>> state.check(data, now_ms=0).duplicate
BatchMetadata(first_seq=0, last_seq=0, first_offset=40, last_offset=40, timestamp=0)
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rivulet.protocol.batch import HEADER_SIZE, LOG_OVERHEAD, BatchHeader, iter_batches
from rivulet.storage.base import DAY_MS, AppendResult
from rivulet.storage.errors import StorageError

if TYPE_CHECKING:
    # Types only: the segmented log imports this module.
    from rivulet.storage.segmented.appending import BatchInfo

__all__ = [
    "BATCHES_RETAINED",
    "DEFAULT_EXPIRATION_CHECK_INTERVAL_MS",
    "DEFAULT_EXPIRATION_MS",
    "NO_EPOCH",
    "NO_SEQUENCE",
    "BatchMetadata",
    "InvalidProducerEpochError",
    "InvalidSequenceError",
    "OutOfOrderSequenceError",
    "PendingAppend",
    "ProducerEntry",
    "ProducerStateError",
    "ProducerStateManager",
    "in_sequence",
]

BATCHES_RETAINED = 5
"""Batches remembered per producer (Kafka's ``NUM_BATCHES_TO_RETAIN``)."""

DEFAULT_EXPIRATION_MS = DAY_MS
"""Kafka's ``producer.id.expiration.ms``."""

DEFAULT_EXPIRATION_CHECK_INTERVAL_MS = 10 * 60 * 1000
"""Kafka's ``producer.id.expiration.check.interval.ms``."""

NO_EPOCH = -1
NO_SEQUENCE = -1
_SEQUENCE_LIMIT = 1 << 31
_BATCH_LENGTH = struct.Struct(">i")  # at byte 8 of a batch
_PRODUCER_ID = struct.Struct(">q")  # at byte 43


class ProducerStateError(StorageError):
    """A batch breaks its producer's sequence or epoch rules; nothing was appended."""


class OutOfOrderSequenceError(ProducerStateError):
    """The batch's first sequence does not follow the producer's last one."""


class InvalidProducerEpochError(ProducerStateError):
    """The batch comes from an older epoch of a producer that has moved on (fenced)."""


class InvalidSequenceError(ProducerStateError):
    """The batch has a producer id but no sequence number."""


def in_sequence(last_seq: int, next_seq: int) -> bool:
    """Whether ``next_seq`` is the sequence right after ``last_seq`` (wrapping at 2**31)."""
    return next_seq == last_seq + 1 or (next_seq == 0 and last_seq == _SEQUENCE_LIMIT - 1)


@dataclass(frozen=True, slots=True)
class BatchMetadata:
    """What is remembered of one appended batch."""

    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int
    timestamp: int
    """The batch's max timestamp (its append time with LogAppendTime)."""

    def result(self, log_start_offset: int, *, log_append_time: bool) -> AppendResult:
        """The answer to a duplicate of this batch: where the original landed."""
        return AppendResult(
            base_offset=self.first_offset,
            last_offset=self.last_offset,
            log_append_time_ms=self.timestamp if log_append_time else -1,
            log_start_offset=log_start_offset,
        )


@dataclass(slots=True)
class ProducerEntry:
    """One producer's epoch and its last batches, oldest first."""

    producer_id: int
    epoch: int
    batches: deque[BatchMetadata] = field(default_factory=lambda: deque(maxlen=BATCHES_RETAINED))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else NO_SEQUENCE

    @property
    def last_timestamp(self) -> int:
        return self.batches[-1].timestamp if self.batches else -1

    def find_duplicate(self, epoch: int, first_seq: int, last_seq: int) -> BatchMetadata | None:
        """The remembered batch with this epoch and sequence range, if any."""
        if epoch != self.epoch:
            return None
        for batch in self.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        return None

    def add(self, epoch: int, batch: BatchMetadata) -> None:
        """Remember an appended batch; a new epoch forgets the old epoch's batches."""
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches.clear()
        self.batches.append(batch)


@dataclass(frozen=True, slots=True)
class _Planned:
    """An idempotent batch of an append that passed the checks, by its index in the buffer."""

    index: int
    producer_id: int
    epoch: int
    first_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class PendingAppend:
    """What :meth:`ProducerStateManager.check` decided about an append.

    ``duplicate`` is set when the append repeats a remembered batch: store
    nothing and answer with ``duplicate.result(...)``. Otherwise store the
    batches and hand this to :meth:`ProducerStateManager.record`.
    """

    duplicate: BatchMetadata | None = None
    planned: tuple[_Planned, ...] = ()


_NOTHING = PendingAppend()


class ProducerStateManager:
    """Every producer's state in one partition. The owning log calls it on each append.

    Not thread-safe; its log owns it. ``now_ms`` is always passed in.
    """

    def __init__(
        self,
        *,
        expiration_ms: int = DEFAULT_EXPIRATION_MS,
        expiration_check_interval_ms: int = DEFAULT_EXPIRATION_CHECK_INTERVAL_MS,
    ) -> None:
        self._entries: dict[int, ProducerEntry] = {}
        self._expiration_ms = expiration_ms
        self._check_interval_ms = expiration_check_interval_ms
        self._next_expiry_check_ms: int | None = None

    # -- state ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[ProducerEntry]:
        return iter(list(self._entries.values()))

    def get(self, producer_id: int) -> ProducerEntry | None:
        """The state of ``producer_id``, if known. Do not modify it."""
        return self._entries.get(producer_id)

    # -- appends -------------------------------------------------------------

    def check(self, batches: bytes | bytearray | memoryview, *, now_ms: int) -> PendingAppend:
        """Decide whether ``batches`` may be appended; change nothing but expiry.

        Raises a :class:`ProducerStateError` when a batch breaks its producer's
        rules (then none of ``batches`` may be appended), and
        :class:`~rivulet.protocol.errors.InvalidBatchError` for a malformed buffer.
        """
        self._maybe_expire(now_ms)
        if not _has_producer_id(batches):
            return _NOTHING
        planned: list[_Planned] = []
        # Producers met earlier in this append: (epoch, last sequence) after those batches.
        running: dict[int, tuple[int, int]] = {}
        for index, (_, header) in enumerate(iter_batches(batches)):
            producer_id = header.producer_id
            if producer_id < 0 or header.is_control:
                continue
            epoch, first_seq, last_seq = (
                header.producer_epoch,
                header.base_sequence,
                header.last_sequence,
            )
            if first_seq < 0:
                raise InvalidSequenceError(
                    f"record batch of producer {producer_id} has no sequence number "
                    f"(base sequence {first_seq}); an idempotent producer must number its batches"
                )
            entry = self._entries.get(producer_id)
            if entry is not None:
                duplicate = entry.find_duplicate(epoch, first_seq, last_seq)
                if duplicate is not None:
                    return PendingAppend(duplicate=duplicate)
            if producer_id in running:
                known: tuple[int, int] | None = running[producer_id]
            else:
                known = (entry.epoch, entry.last_seq) if entry is not None else None
            if known is not None:
                _check_against(producer_id, known, header)
            running[producer_id] = (epoch, last_seq)
            planned.append(_Planned(index, producer_id, epoch, first_seq, last_seq))
        return PendingAppend(planned=tuple(planned)) if planned else _NOTHING

    def record(self, pending: PendingAppend, placed: Sequence[BatchInfo]) -> None:
        """Remember the batches of a checked append, now stored at ``placed``.

        ``placed`` describes every batch of the append, in order (what
        :func:`~rivulet.storage.segmented.appending.place_batches` returns).
        """
        for batch in pending.planned:
            info = placed[batch.index]
            self._add(
                batch.producer_id,
                batch.epoch,
                BatchMetadata(
                    batch.first_seq,
                    batch.last_seq,
                    info.base_offset,
                    info.last_offset,
                    info.max_timestamp,
                ),
            )

    def replay(self, header: BatchHeader) -> None:
        """Learn from a batch already in the log (rebuilding state), without checks."""
        if header.producer_id < 0 or header.is_control or header.base_sequence < 0:
            return
        self._add(
            header.producer_id,
            header.producer_epoch,
            BatchMetadata(
                header.base_sequence,
                header.last_sequence,
                header.base_offset,
                header.last_offset,
                header.max_timestamp,
            ),
        )

    def _add(self, producer_id: int, epoch: int, batch: BatchMetadata) -> None:
        entry = self._entries.get(producer_id)
        if entry is None:
            entry = self._entries[producer_id] = ProducerEntry(producer_id, epoch)
        entry.add(epoch, batch)

    # -- expiry, reloading ---------------------------------------------------

    def _maybe_expire(self, now_ms: int) -> None:
        if self._next_expiry_check_ms is not None and now_ms < self._next_expiry_check_ms:
            return
        self._next_expiry_check_ms = now_ms + self._check_interval_ms
        self.expire(now_ms=now_ms)

    def expire(self, *, now_ms: int) -> int:
        """Forget producers whose last batch is ``producer.id.expiration.ms`` old; how many."""
        horizon = now_ms - self._expiration_ms
        expired = [pid for pid, e in self._entries.items() if e.last_timestamp <= horizon]
        for producer_id in expired:
            del self._entries[producer_id]
        return len(expired)

    def load(self, entries: Iterable[ProducerEntry]) -> None:
        """Replace the state with ``entries`` (read from a snapshot)."""
        self._entries = {entry.producer_id: entry for entry in entries}
        self._next_expiry_check_ms = None

    def clear(self) -> None:
        """Forget every producer (before rebuilding the state from the log)."""
        self.load(())


def _has_producer_id(batches: bytes | bytearray | memoryview) -> bool:
    """Whether any batch may carry a producer id: a cheap look before decoding headers.

    Most appends have none, so this reads two fields per batch instead of the
    whole header. A buffer it cannot walk answers True, for the full decoding
    to judge.
    """
    position, end = 0, len(batches)
    while position < end:
        if end - position < HEADER_SIZE:
            return True
        if _PRODUCER_ID.unpack_from(batches, position + 43)[0] >= 0:
            return True
        length = _BATCH_LENGTH.unpack_from(batches, position + 8)[0]
        if length < HEADER_SIZE - LOG_OVERHEAD:
            return True
        position += length + LOG_OVERHEAD
    return False


def _check_against(producer_id: int, known: tuple[int, int], header: BatchHeader) -> None:
    """Apply the epoch and sequence rules to a batch of a known producer."""
    known_epoch, last_seq = known
    epoch, first_seq = header.producer_epoch, header.base_sequence
    if epoch < known_epoch:
        raise InvalidProducerEpochError(
            f"producer {producer_id} sent epoch {epoch}, older than its current epoch "
            f"{known_epoch}: a newer instance of this producer has taken over"
        )
    if epoch > known_epoch:
        if first_seq != 0:
            raise OutOfOrderSequenceError(
                f"producer {producer_id} began epoch {epoch} at sequence {first_seq}; "
                "a new epoch must start at sequence 0"
            )
        return
    if not in_sequence(last_seq, first_seq):
        raise OutOfOrderSequenceError(
            f"producer {producer_id} (epoch {epoch}) sent sequence {first_seq}, but the "
            f"last one appended was {last_seq}: expected {(last_seq + 1) % _SEQUENCE_LIMIT}"
        )
