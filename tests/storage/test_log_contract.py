"""The PartitionLog contract, run against every implementation.

Each test takes ``make``: a factory building a fresh log of the parametrized
kind from a :class:`LogConfig`. Segment-sensitive tests use small segments so
both logs hold several.
"""

from __future__ import annotations

import dataclasses

import pytest

from rivulet.protocol.batch import Compression, iter_batches, read_header, verify_crc
from rivulet.protocol.records import Record, encode_batch, iter_decoded
from rivulet.storage import (
    CleanupPolicy,
    OffsetOutOfRangeError,
    PartitionLog,
    TimestampType,
)
from rivulet.storage.memory import MemoryLog
from rivulet.storage.segmented import SegmentedLog

from .storage_helpers import Make, Seen, batch, read_records, result_bytes, values

DAY = 24 * 3600 * 1000


def segment_count(log: PartitionLog) -> int:
    assert isinstance(log, MemoryLog | SegmentedLog)
    return log.segment_count


def test_both_implement_the_protocol(make: Make) -> None:
    assert isinstance(make(), PartitionLog)


def test_an_empty_log(make: Make) -> None:
    log = make()
    assert (log.start_offset, log.end_offset, log.size_bytes) == (0, 0, 0)
    assert log.read(0, 1000).chunks == ()
    assert log.max_timestamp() is None
    assert log.offset_for_timestamp(0) is None
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 1000)


def test_append_assigns_consecutive_offsets_and_patches_the_buffer(make: Make) -> None:
    log = make()
    first = log.append(batch([b"a", b"b", b"c"]), now_ms=1)
    assert (first.base_offset, first.last_offset, first.log_append_time_ms) == (0, 2, -1)
    assert first.log_start_offset == 0
    two = batch([b"d"]) + batch([b"e", b"f"])
    second = log.append(two, now_ms=2)
    assert (second.base_offset, second.last_offset) == (3, 5)
    assert [h.base_offset for _, h in iter_batches(two)] == [3, 4]
    assert log.end_offset == 6
    assert log.size_bytes > 0
    assert values(log) == [b"a", b"b", b"c", b"d", b"e", b"f"]


def test_read_returns_the_stored_bytes_whole_batches_only(make: Make) -> None:
    log = make()
    sent = [batch([b"x" * 10] * n) for n in (1, 2, 3)]
    for data in sent:
        log.append(data, now_ms=0)
    assert result_bytes(log.read(0, 1 << 20)) == b"".join(sent)
    # Offset 4 is the middle of the third batch: that batch comes back whole.
    assert result_bytes(log.read(4, 1 << 20)) == sent[2]
    assert result_bytes(log.read(1, 1 << 20)) == sent[1] + sent[2]


def test_read_at_end_is_empty_and_outside_the_range_raises(make: Make) -> None:
    log = make()
    log.append(batch([b"a", b"b"]), now_ms=0)
    assert log.read(2, 1000).size == 0
    with pytest.raises(OffsetOutOfRangeError) as raised:
        log.read(3, 1000)
    assert (raised.value.start_offset, raised.value.end_offset) == (0, 2)
    log.delete_records_before(1)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 1000)


def test_max_bytes_and_the_first_batch_rule(make: Make) -> None:
    log = make()
    sizes = []
    for _ in range(4):
        data = batch([b"v" * 100])
        sizes.append(len(data))
        log.append(data, now_ms=0)
    assert log.read(0, sizes[0] * 2 + 10).size == sizes[0] * 2
    # A limit below one batch: the first batch anyway (Kafka's fetch rule) ...
    assert log.read(0, 10).size == sizes[0]
    assert log.read(0, 0).size == sizes[0]
    # ... unless the caller already has data for the response.
    assert log.read(0, 10, min_one=False).size == 0


def test_reads_span_segments(make: Make) -> None:
    log = make(segment_bytes=300)
    for i in range(10):
        log.append(batch([b"%d" % i * 50]), now_ms=0)
    assert segment_count(log) > 3
    assert [v[:1] for v in values(log) if v] == [b"%d" % i for i in range(10)]
    whole = log.read(0, 1 << 20)
    assert len(list(iter_batches(result_bytes(whole)))) == 10


def test_log_append_time_is_stamped(make: Make) -> None:
    log = make(timestamp_type=TimestampType.LOG_APPEND_TIME)
    result = log.append(batch([b"a", b"b"], timestamp=5), now_ms=1234)
    assert result.log_append_time_ms == 1234
    data = result_bytes(log.read(0, 1000))
    header = read_header(data)
    assert header.log_append_time
    assert header.max_timestamp == 1234
    verify_crc(data, 0, header)
    assert [s.timestamp for s in read_records(log)] == [1234, 1234]
    assert log.offset_for_timestamp(1000) == (0, 1234)
    assert log.max_timestamp() == (0, 1234)


def test_offset_for_timestamp_finds_the_first_record_at_or_after(make: Make) -> None:
    log = make()
    log.append(batch([b"a", b"b", b"c"], timestamps=[10, 30, 20]), now_ms=0)
    log.append(batch([b"d", b"e"], timestamps=[40, 50]), now_ms=0)
    assert log.offset_for_timestamp(0) == (0, 10)
    assert log.offset_for_timestamp(10) == (0, 10)
    # Record timestamps, not batch ones: 15 is first reached by offset 1 (t=30).
    assert log.offset_for_timestamp(15) == (1, 30)
    assert log.offset_for_timestamp(31) == (3, 40)
    assert log.offset_for_timestamp(50) == (4, 50)
    assert log.offset_for_timestamp(51) is None
    log.delete_records_before(2)
    assert log.offset_for_timestamp(15) == (2, 20)


def test_offset_for_timestamp_across_segments(make: Make) -> None:
    log = make(segment_bytes=400, index_interval_bytes=100)
    for i in range(30):
        log.append(batch([b"x" * 40], timestamp=1000 + i * 10), now_ms=0)
    assert segment_count(log) > 3
    for i in range(30):
        assert log.offset_for_timestamp(1000 + i * 10 - 5) == (i, 1000 + i * 10)
    assert log.max_timestamp() == (29, 1290)


def test_max_timestamp_is_the_record_with_the_largest_timestamp(make: Make) -> None:
    log = make()
    log.append(batch([b"a", b"b"], timestamps=[5, 90]), now_ms=0)
    log.append(batch([b"c", b"d", b"e"], timestamps=[7, 95, 95]), now_ms=0)
    log.append(batch([b"f"], timestamps=[8]), now_ms=0)
    assert log.max_timestamp() == (3, 95)


def test_delete_records_before_moves_the_start(make: Make) -> None:
    log = make(segment_bytes=200)
    for i in range(10):
        log.append(batch([b"%d" % i * 40]), now_ms=0)
    before = log.size_bytes
    assert log.delete_records_before(6) == 6
    assert log.start_offset == 6
    assert log.size_bytes < before  # whole segments below the start are gone
    assert [s.offset for s in read_records(log)] == [6, 7, 8, 9]
    assert log.delete_records_before(3) == 6  # never moves back
    assert log.append(batch([b"z"]), now_ms=0).log_start_offset == 6
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(12)
    assert log.delete_records_before(11) == 11
    assert log.read(11, 100).size == 0
    assert log.max_timestamp() is None


def test_delete_records_in_the_middle_of_a_batch(make: Make) -> None:
    log = make()
    log.append(batch([b"a", b"b", b"c", b"d"]), now_ms=0)
    log.delete_records_before(2)
    # The batch holding offset 2 is returned whole; consumers skip the records below.
    assert read_header(result_bytes(log.read(2, 1000))).base_offset == 0
    assert values(log) == [b"c", b"d"]


def test_truncate_to_drops_records_and_offsets_are_reused(make: Make) -> None:
    log = make(segment_bytes=200)
    for i in range(8):
        log.append(batch([b"%d" % i * 40]), now_ms=0)
    log.truncate_to(5)
    assert log.end_offset == 5
    assert [s.offset for s in read_records(log)] == [0, 1, 2, 3, 4]
    assert log.append(batch([b"new"]), now_ms=0).base_offset == 5
    assert values(log)[-1] == b"new"
    log.truncate_to(100)  # past the end: nothing to do
    assert log.end_offset == 6
    with pytest.raises(OffsetOutOfRangeError):
        log.read(7, 10)


def test_truncate_inside_a_batch_drops_the_whole_batch(make: Make) -> None:
    log = make()
    log.append(batch([b"a", b"b"]), now_ms=0)
    log.append(batch([b"c", b"d", b"e"]), now_ms=0)
    log.truncate_to(3)
    assert log.end_offset == 2
    assert values(log) == [b"a", b"b"]
    log.truncate_to(0)
    assert (log.start_offset, log.end_offset, log.size_bytes) == (0, 0, 0)
    log.delete_records_before(0)
    with pytest.raises(OffsetOutOfRangeError):
        make().truncate_to(-1)


def test_segments_roll_by_size(make: Make) -> None:
    log = make(segment_bytes=1000)
    big = batch([b"x" * 1500])
    log.append(big, now_ms=0)  # larger than a segment: still accepted, alone
    assert segment_count(log) == 1
    log.append(batch([b"y"]), now_ms=0)
    assert segment_count(log) == 2
    for _ in range(20):
        log.append(batch([b"z" * 100]), now_ms=0)
    assert segment_count(log) == 2 + (20 * len(batch([b"z" * 100]))) // 1000


def test_segments_roll_by_age(make: Make) -> None:
    log = make(segment_ms=1000)
    log.append(batch([b"a"]), now_ms=10_000)
    log.append(batch([b"b"]), now_ms=11_000)
    assert segment_count(log) == 1
    log.append(batch([b"c"]), now_ms=11_001)
    assert segment_count(log) == 2
    log.append(batch([b"d"]), now_ms=11_500)
    assert segment_count(log) == 2
    assert values(log) == [b"a", b"b", b"c", b"d"]


def test_retention_by_time_deletes_old_segments(make: Make) -> None:
    log = make(segment_bytes=200, retention_ms=1000)
    for i in range(10):
        log.append(batch([b"v" * 60], timestamp=i * 100), now_ms=i * 100)
    total = segment_count(log)
    assert total > 3
    assert log.enforce_retention(now_ms=900) == 0
    deleted = log.enforce_retention(now_ms=1450)
    assert deleted > 0
    assert segment_count(log) == total - deleted
    remaining = read_records(log)
    # Only segments whose newest record is older than 1450 - 1000 went.
    assert all(s.timestamp > 1450 - 1000 - 300 for s in remaining)
    assert remaining[0].offset == log.start_offset
    assert remaining[-1].offset == 9


def test_retention_rolls_and_empties_a_log_that_has_fully_expired(make: Make) -> None:
    log = make(retention_ms=1000)
    log.append(batch([b"a", b"b"], timestamp=0), now_ms=0)
    assert log.enforce_retention(now_ms=5000) == 1
    assert (log.start_offset, log.end_offset, log.size_bytes) == (2, 2, 0)
    assert log.append(batch([b"c"], timestamp=5000), now_ms=5000).base_offset == 2
    assert log.enforce_retention(now_ms=5000) == 0
    assert values(log) == [b"c"]


def test_retention_by_size_keeps_at_least_retention_bytes(make: Make) -> None:
    one = len(batch([b"v" * 60]))
    log = make(segment_bytes=one * 2, retention_bytes=one * 5)
    for _ in range(12):
        log.append(batch([b"v" * 60]), now_ms=0)
    assert segment_count(log) == 6
    assert log.enforce_retention(now_ms=0) == 3
    assert log.size_bytes == one * 6
    assert log.start_offset == 6
    assert log.enforce_retention(now_ms=0) == 0


def test_retention_does_nothing_for_compact_only_or_unlimited(make: Make) -> None:
    log = make(segment_bytes=100, retention_ms=-1, retention_bytes=-1)
    for _ in range(5):
        log.append(batch([b"v" * 60]), now_ms=0)
    assert log.enforce_retention(now_ms=10 * DAY) == 0
    log.reconfigure(
        dataclasses.replace(log.config, retention_ms=1, cleanup_policy=CleanupPolicy.COMPACT)
    )
    assert log.enforce_retention(now_ms=10 * DAY) == 0
    log.reconfigure(
        dataclasses.replace(log.config, cleanup_policy=CleanupPolicy.parse("compact,delete"))
    )
    assert log.enforce_retention(now_ms=10 * DAY) == 5


def _keyed(log: PartitionLog, pairs: list[tuple[bytes, bytes | None]], *, ts: int = 0) -> None:
    for key, value in pairs:
        log.append(batch([value], keys=[key], timestamp=ts), now_ms=ts)


def test_compaction_keeps_the_latest_value_per_key(make: Make) -> None:
    log = make(segment_bytes=50, cleanup_policy=CleanupPolicy.COMPACT)  # a segment per batch
    _keyed(log, [(b"k%d" % (i % 3), b"v%d" % i) for i in range(12)])
    before = read_records(log)
    assert segment_count(log) == 12
    size = log.size_bytes
    freed = log.compact(now_ms=0)
    assert freed == size - log.size_bytes > 0
    # Offset 11 (k2) is in the active segment, which is never compacted, so the
    # older k2 at offset 8 stays too; offsets and timestamps never change.
    assert read_records(log) == [before[i] for i in (8, 9, 10, 11)]
    assert log.end_offset == 12
    assert log.start_offset == 0
    assert log.compact(now_ms=0) == 0  # nothing more to do
    log.append(batch([b"new"], keys=[b"k0"]), now_ms=0)
    log.compact(now_ms=0)  # now 8 goes; 9 stays while k0's newer value is active
    assert [(s.offset, s.value) for s in read_records(log)] == [
        (9, b"v9"),
        (10, b"v10"),
        (11, b"v11"),
        (12, b"new"),
    ]


def test_compaction_never_touches_the_active_segment(make: Make) -> None:
    log = make(cleanup_policy=CleanupPolicy.COMPACT)
    _keyed(log, [(b"k", b"1"), (b"k", b"2")])
    assert log.compact(now_ms=0) == 0
    assert values(log) == [b"1", b"2"]


def test_compaction_is_off_for_the_delete_policy(make: Make) -> None:
    log = make(segment_bytes=100)
    _keyed(log, [(b"k", b"1"), (b"k", b"2"), (b"k", b"3")])
    assert log.compact(now_ms=0) == 0
    assert values(log) == [b"1", b"2", b"3"]


def test_tombstones_go_only_after_delete_retention(make: Make) -> None:
    log = make(segment_bytes=100, cleanup_policy=CleanupPolicy.COMPACT, delete_retention_ms=1000)
    _keyed(log, [(b"a", b"1"), (b"b", b"2"), (b"a", None)], ts=100)
    _keyed(log, [(b"c", b"3")], ts=100)  # keeps the tombstone out of the active segment
    log.compact(now_ms=500)
    assert [(s.key, s.value) for s in read_records(log)] == [
        (b"b", b"2"),
        (b"a", None),
        (b"c", b"3"),
    ]
    log.compact(now_ms=1100)
    assert [(s.key, s.value) for s in read_records(log)] == [(b"b", b"2"), (b"c", b"3")]


def test_compaction_respects_min_compaction_lag(make: Make) -> None:
    log = make(segment_bytes=100, cleanup_policy=CleanupPolicy.COMPACT, min_compaction_lag_ms=1000)
    _keyed(log, [(b"k", b"1"), (b"k", b"2"), (b"x", b"3")], ts=100)
    assert log.compact(now_ms=500) == 0
    assert log.compact(now_ms=1100) > 0
    assert values(log) == [b"2", b"3"]


@pytest.mark.parametrize("codec", list(Compression)[1:], ids=lambda c: c.name.lower())
def test_compaction_reads_keys_of_compressed_batches(make: Make, codec: Compression) -> None:
    log = make(segment_bytes=50, cleanup_policy=CleanupPolicy.COMPACT)  # a segment per batch
    log.append(
        batch([b"1", b"2", b"3", b"4"], keys=[b"a", b"b", b"a", b"c"], compression=codec),
        now_ms=0,
    )
    log.append(batch([b"5"], keys=[b"c"], compression=codec), now_ms=0)
    log.append(batch([b"6" * 300], keys=[b"z"]), now_ms=0)
    assert segment_count(log) == 3
    log.compact(now_ms=0)
    assert [(s.offset, s.key, s.value) for s in read_records(log)] == [
        (1, b"b", b"2"),
        (2, b"a", b"3"),
        (4, b"c", b"5"),
        (5, b"z", b"6" * 300),
    ]
    first = next(iter_decoded(result_bytes(log.read(0, 1 << 20))))
    assert first.header.compression is codec
    assert (first.header.base_offset, first.header.last_offset_delta) == (0, 3)


def test_reconfigure_governs_the_next_roll(make: Make) -> None:
    log = make()
    log.append(batch([b"v" * 100]), now_ms=0)
    log.reconfigure(dataclasses.replace(log.config, segment_bytes=100))
    assert log.config.segment_bytes == 100
    log.append(batch([b"v" * 100]), now_ms=0)
    assert segment_count(log) == 2


def test_flush_keeps_everything_readable(make: Make) -> None:
    log = make()
    log.append(batch([b"a"]), now_ms=0)
    log.flush()
    assert read_records(log) == [Seen(0, 0, None, b"a")]


def test_compaction_keeps_a_producers_last_batch_empty(make: Make) -> None:
    log = make(segment_bytes=50, cleanup_policy=CleanupPolicy.COMPACT)  # a segment per batch

    def produced(producer_id: int, sequence: int, value: bytes, codec: Compression) -> bytearray:
        record = Record(key=b"k", value=value)
        data = encode_batch(
            [record],
            producer_id=producer_id,
            producer_epoch=3,
            base_sequence=sequence,
            compression=codec,
        )
        return bytearray(data)

    log.append(produced(7, 0, b"a", Compression.NONE), now_ms=0)
    log.append(produced(7, 1, b"b", Compression.GZIP), now_ms=0)
    log.append(produced(8, 0, b"c", Compression.NONE), now_ms=0)
    log.append(batch([b"filler"], keys=[b"f"]), now_ms=0)
    log.compact(now_ms=0)
    headers = [h for _, h in iter_batches(result_bytes(log.read(0, 1 << 20)))]
    # Producer 7's first batch is gone; its last one stays, empty, so its
    # sequence number can be recovered from the log.
    assert [(h.base_offset, h.producer_id, h.records_count) for h in headers] == [
        (1, 7, 0),
        (2, 8, 1),
        (3, -1, 1),
    ]
    assert (headers[0].base_sequence, headers[0].producer_epoch) == (1, 3)
    assert headers[0].compression is Compression.GZIP
    assert values(log) == [b"c", b"filler"]
