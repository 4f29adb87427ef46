"""Retry and dead-letter policy: what happens to a record whose handler failed.

A failed record goes through three stages, each optional but the last:

1. **In place**: the handler is called again after an exponential backoff with full
   jitter (a random delay between 0 and ``initial * multiplier**(n-1)``, capped). Only
   the record's key waits (other keys keep going when the handler runs keys
   concurrently); its offset is not committed meanwhile.
2. **Retry topics** (non-blocking): the record is republished to
   ``<topic>-retry-<delay ms>`` and its offset committed. The group consumes the retry
   topics too, and holds each record until its ``retry_topic-backoff-timestamp``.
   Hops with the same delay share one topic (Spring's "single topic" reuse).
3. **Dead letter**: ``<topic>-dlt``.

Records that cannot be decoded, and handlers raising
:class:`~rivulet.framework.NonRetriableError` (or an exception type the policy names),
skip straight to the dead-letter topic.

Retry and dead-letter records carry the headers Spring Kafka's non-blocking retries
write, with Spring's encodings, so tools built for Spring read them:

==========================================  ===========================================
Header                                      Value
==========================================  ===========================================
``kafka_dlt-original-topic``                UTF-8 (first topic the record failed on)
``kafka_dlt-original-partition``            4-byte big-endian int
``kafka_dlt-original-offset``               8-byte big-endian long
``kafka_dlt-original-timestamp``            8-byte big-endian long (ms)
``kafka_dlt-original-timestamp-type``       ``CreateTime`` or ``LogAppendTime``
``kafka_dlt-original-consumer-group``       UTF-8
``kafka_dlt-exception-fqcn``                UTF-8 (Python ``module.QualName``)
``kafka_dlt-exception-cause-fqcn``          UTF-8, when the exception has a cause
``kafka_dlt-exception-message``             UTF-8, when non-empty (at most 4 KiB)
``kafka_dlt-exception-stacktrace``          UTF-8 (truncated to 16 KiB)
``retry_topic-attempts``                    4-byte big-endian int: the delivery attempt
                                            the record is headed for (2 = first retry)
``retry_topic-backoff-timestamp``           big-endian two's complement, minimal length
                                            (Java ``BigInteger.toByteArray``), ms
``retry_topic-original-timestamp``          same encoding, the first record's timestamp
``rivulet_dlt-reason``                      UTF-8: ``handler-error``, ``malformed``,
                                            ``invalid-payload``, ``unknown-type``, ...
==========================================  ===========================================

The original headers are kept from the first failure on, so the record's origin
survives every hop; exception headers are replaced at each hop. A record carrying
``kafka_dlt-original-consumer-group`` is addressed to that group only: other groups
sharing the topic (retry topics are named after the topic, not the group) skip it.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from rivulet.framework._errors import ConfigurationError, DecodeError, NonRetriableError
from rivulet.framework._wire import ConsumedRecord, Headers

__all__ = [
    "ATTEMPTS",
    "BACKOFF_TIMESTAMP",
    "DLT_REASON",
    "EXCEPTION_CAUSE_FQCN",
    "EXCEPTION_FQCN",
    "EXCEPTION_MESSAGE",
    "EXCEPTION_STACKTRACE",
    "ORIGINAL_CONSUMER_GROUP",
    "ORIGINAL_OFFSET",
    "ORIGINAL_PARTITION",
    "ORIGINAL_TIMESTAMP",
    "ORIGINAL_TIMESTAMP_TYPE",
    "ORIGINAL_TOPIC",
    "RETRY_ORIGINAL_TIMESTAMP",
    "Backoff",
    "DeadLetter",
    "Decision",
    "RetryInPlace",
    "RetryPolicy",
    "SendToRetryTopic",
    "addressed_group",
    "attempt_of",
    "backoff_remaining_ms",
    "dead_letter_topic",
    "decode_int",
    "encode_bigint",
    "forward_headers",
    "header_value",
    "main_topic_of",
    "retry_topic",
]

ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
ORIGINAL_TIMESTAMP_TYPE: Final = "kafka_dlt-original-timestamp-type"
ORIGINAL_CONSUMER_GROUP: Final = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
EXCEPTION_CAUSE_FQCN: Final = "kafka_dlt-exception-cause-fqcn"
EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE: Final = "kafka_dlt-exception-stacktrace"
ATTEMPTS: Final = "retry_topic-attempts"
BACKOFF_TIMESTAMP: Final = "retry_topic-backoff-timestamp"
RETRY_ORIGINAL_TIMESTAMP: Final = "retry_topic-original-timestamp"
DLT_REASON: Final = "rivulet_dlt-reason"

_RETRY_SUFFIX: Final = "-retry-"
_DLT_SUFFIX: Final = "-dlt"
# Headers count against the broker's max message size: keep a failure's record small.
_MAX_STACKTRACE: Final = 16 * 1024
_MAX_MESSAGE: Final = 4 * 1024
# Replaced at every hop rather than kept from the first failure.
_PER_HOP: Final = frozenset(
    {
        EXCEPTION_FQCN,
        EXCEPTION_CAUSE_FQCN,
        EXCEPTION_MESSAGE,
        EXCEPTION_STACKTRACE,
        ATTEMPTS,
        BACKOFF_TIMESTAMP,
        DLT_REASON,
    }
)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter, in milliseconds.

    The n-th retry waits a uniformly random time in ``[0, min(max_ms, initial_ms *
    multiplier**(n-1))]`` ("full jitter": retries of many failed records spread out
    instead of hitting a recovering dependency together).

    >>> Backoff(initial_ms=100, multiplier=2.0, max_ms=1_000).ceiling_ms(3)
    400
    >>> Backoff(initial_ms=100, multiplier=2.0, max_ms=1_000).delay_ms(3, random01=0.5)
    200
    """

    initial_ms: int = 100
    multiplier: float = 2.0
    max_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.initial_ms < 0 or self.max_ms < self.initial_ms:
            raise ConfigurationError("Backoff needs 0 <= initial_ms <= max_ms")
        if self.multiplier < 1.0:
            raise ConfigurationError("Backoff.multiplier must be at least 1.0")

    def ceiling_ms(self, retry: int) -> int:
        """The largest delay before the ``retry``-th retry (1-based)."""
        if retry < 1:
            raise ValueError("retries are numbered from 1")
        # Compare logarithms so that huge retry numbers do not overflow a float.
        if self.initial_ms == 0:
            return 0
        log_delay = math.log(self.initial_ms) + (retry - 1) * math.log(self.multiplier)
        if log_delay >= math.log(self.max_ms):
            return self.max_ms
        return min(self.max_ms, round(math.exp(log_delay)))

    def delay_ms(self, retry: int, random01: float) -> int:
        """The jittered delay before the ``retry``-th retry; ``random01`` is uniform in [0, 1)."""
        return int(self.ceiling_ms(retry) * random01)


@dataclass(frozen=True, slots=True)
class RetryInPlace:
    """Call the handler again after ``delay_ms``; the record stays in flight."""

    delay_ms: int


@dataclass(frozen=True, slots=True)
class SendToRetryTopic:
    """Republish to ``topic``, to be handled again no sooner than ``delay_ms`` from now."""

    topic: str
    delay_ms: int
    #: The ``retry_topic-attempts`` value: the delivery attempt the record is headed for.
    attempt: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Publish to the dead-letter ``topic`` and move on."""

    topic: str
    reason: str


Decision = RetryInPlace | SendToRetryTopic | DeadLetter


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a handler's failures are retried before the record is dead-lettered.

    ``attempts`` counts handler calls per delivery (1 means no in-place retry);
    ``topics`` lists the delays in ms of the non-blocking retry hops; ``non_retriable``
    names exception types that go straight to the dead-letter topic (decode errors and
    :class:`~rivulet.framework.NonRetriableError` always do).

    >>> policy = RetryPolicy(attempts=2, topics=(1_000, 10_000))
    >>> policy.decide("orders", hop=0, attempt=1, error=TimeoutError(), random01=0.0)
    RetryInPlace(delay_ms=0)
    >>> policy.decide("orders", hop=0, attempt=2, error=TimeoutError(), random01=0.0)
    SendToRetryTopic(topic='orders-retry-1000', delay_ms=1000, attempt=2)
    >>> policy.decide("orders", hop=2, attempt=2, error=TimeoutError(), random01=0.0)
    DeadLetter(topic='orders-dlt', reason='handler-error')
    """

    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    topics: tuple[int, ...] = ()
    non_retriable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigurationError("RetryPolicy.attempts must be at least 1 (the first call)")
        if any(delay <= 0 for delay in self.topics):
            raise ConfigurationError(
                "RetryPolicy.topics lists retry delays in ms; each must be > 0"
            )

    def retry_topics(self, topic: str) -> tuple[str, ...]:
        """The distinct retry topics this policy uses for ``topic``, in hop order."""
        return tuple(dict.fromkeys(retry_topic(topic, delay) for delay in self.topics))

    def is_retriable(self, error: BaseException) -> bool:
        """Whether retrying could help with ``error``."""
        if isinstance(error, DecodeError | NonRetriableError):
            return False
        return not isinstance(error, self.non_retriable)

    def decide(
        self, topic: str, *, hop: int, attempt: int, error: BaseException, random01: float
    ) -> Decision:
        """What to do after call number ``attempt`` (1-based) failed with ``error``.

        ``topic`` is the main topic; ``hop`` is 0 for a record read from it and n for a
        record read from the n-th retry hop.
        """
        if not self.is_retriable(error):
            reason = error.reason if isinstance(error, DecodeError) else "non-retriable"
            return DeadLetter(dead_letter_topic(topic), reason)
        if attempt < self.attempts:
            return RetryInPlace(self.backoff.delay_ms(attempt, random01))
        if hop < len(self.topics):
            delay = self.topics[hop]
            return SendToRetryTopic(retry_topic(topic, delay), delay, attempt=hop + 2)
        return DeadLetter(dead_letter_topic(topic), "handler-error")


def retry_topic(topic: str, delay_ms: int) -> str:
    """``<topic>-retry-<delay>``, Spring's name for a retry hop with that delay."""
    return f"{topic}{_RETRY_SUFFIX}{delay_ms}"


def dead_letter_topic(topic: str) -> str:
    """``<topic>-dlt``."""
    return f"{topic}{_DLT_SUFFIX}"


def header_value(headers: Headers, name: str) -> bytes | None:
    """The last value of header ``name`` (Kafka's ``lastHeader``), or ``None``."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            found = value
    return found


def decode_int(raw: bytes | None) -> int | None:
    """A big-endian two's complement integer of any width (Spring writes 1, 4, 8 or minimal)."""
    if not raw:
        return None
    return int.from_bytes(raw, "big", signed=True)


def encode_bigint(value: int) -> bytes:
    """Java's ``BigInteger.valueOf(value).toByteArray()``: minimal two's complement.

    >>> encode_bigint(127), encode_bigint(128), encode_bigint(-1)
    (b'\\x7f', b'\\x00\\x80', b'\\xff')
    """
    # Java's bitLength() of a negative number is that of its complement (no sign bit).
    magnitude = value if value >= 0 else ~value
    return value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True)


def main_topic_of(record: ConsumedRecord) -> str:
    """The topic a (possibly retried or replayed) record was first consumed from."""
    raw = record.header(ORIGINAL_TOPIC)
    if raw is not None:
        return raw.decode("utf-8", "replace")
    base, sep, delay = record.topic.rpartition(_RETRY_SUFFIX)
    if sep and delay.isdigit():
        return base
    return record.topic


def addressed_group(record: ConsumedRecord) -> str | None:
    """The only group that should handle this record, if it is a retry or a replay."""
    raw = record.header(ORIGINAL_CONSUMER_GROUP)
    return None if raw is None else raw.decode("utf-8", "replace")


def attempt_of(record: ConsumedRecord) -> int:
    """The delivery attempt this record is (1 on the main topic, Spring's numbering)."""
    value = decode_int(record.header(ATTEMPTS))
    return 1 if value is None or value < 1 else value


def backoff_remaining_ms(record: ConsumedRecord, now_ms: int) -> int:
    """How long a retry-topic record must still wait before being handled (0: now)."""
    due = decode_int(record.header(BACKOFF_TIMESTAMP))
    return 0 if due is None else max(0, due - now_ms)


def forward_headers(
    record: ConsumedRecord,
    error: BaseException,
    *,
    group: str,
    decision: SendToRetryTopic | DeadLetter,
    now_ms: int,
) -> list[tuple[str, bytes]]:
    """Headers of the retry or dead-letter record made from ``record`` after ``error``."""
    kept: list[tuple[str, bytes]] = []
    present: set[str] = set()
    for name, value in record.headers:
        if name in _PER_HOP or value is None:
            continue
        kept.append((name, value))
        present.add(name)

    def first(name: str, value: bytes) -> None:
        if name not in present:
            kept.append((name, value))
            present.add(name)

    first(ORIGINAL_TOPIC, record.topic.encode())
    first(ORIGINAL_PARTITION, record.partition.to_bytes(4, "big", signed=True))
    first(ORIGINAL_OFFSET, record.offset.to_bytes(8, "big", signed=True))
    first(ORIGINAL_TIMESTAMP, record.timestamp_ms.to_bytes(8, "big", signed=True))
    first(ORIGINAL_TIMESTAMP_TYPE, record.timestamp_type.encode())
    first(ORIGINAL_CONSUMER_GROUP, group.encode())
    kept.extend(_exception_headers(error))
    if isinstance(decision, SendToRetryTopic):
        first(RETRY_ORIGINAL_TIMESTAMP, encode_bigint(record.timestamp_ms))
        kept.append((ATTEMPTS, decision.attempt.to_bytes(4, "big", signed=True)))
        kept.append((BACKOFF_TIMESTAMP, encode_bigint(now_ms + decision.delay_ms)))
    else:
        kept.append((ATTEMPTS, attempt_of(record).to_bytes(4, "big", signed=True)))
        kept.append((DLT_REASON, decision.reason.encode()))
    return kept


def _exception_headers(error: BaseException) -> Iterable[tuple[str, bytes]]:
    yield EXCEPTION_FQCN, _fqcn(type(error)).encode()
    cause = error.__cause__ or error.__context__
    if cause is not None:
        yield EXCEPTION_CAUSE_FQCN, _fqcn(type(cause)).encode()
    message = str(error)
    if message:
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 28] + " ... (truncated by rivulet)"
        yield EXCEPTION_MESSAGE, message.encode("utf-8", "replace")
    trace = "".join(traceback.format_exception(error))
    if len(trace) > _MAX_STACKTRACE:
        # Keep both ends: the outermost frames and the final "Type: message" line.
        half = _MAX_STACKTRACE // 2 - 32
        trace = f"{trace[:half]}\n... (truncated by rivulet) ...\n{trace[-half:]}"
    yield EXCEPTION_STACKTRACE, trace.encode("utf-8", "replace")


def _fqcn(cls: type[BaseException]) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
