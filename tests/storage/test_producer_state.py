"""Idempotent producers in the log: the sequence and epoch rules, snapshots, recovery.

The rules are tested on :class:`ProducerStateManager` directly and through both
logs (the contract the broker relies on); snapshots and recovery on the
segmented log, including after a simulated crash.
"""

from __future__ import annotations

import shutil
from collections import deque
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.protocol.batch import iter_batches
from rivulet.protocol.records import Record, encode_batch
from rivulet.storage import CorruptLogError, LogConfig, PartitionLog, TimestampType
from rivulet.storage.producer_state import (
    BATCHES_RETAINED,
    DEFAULT_EXPIRATION_CHECK_INTERVAL_MS,
    DEFAULT_EXPIRATION_MS,
    BatchMetadata,
    InvalidProducerEpochError,
    InvalidSequenceError,
    OutOfOrderSequenceError,
    ProducerEntry,
    ProducerStateManager,
    in_sequence,
)
from rivulet.storage.segmented import SegmentedLog, open_log
from rivulet.storage.segmented.appending import place_batches
from rivulet.storage.segmented.producer_snapshots import ProducerSnapshots, decode, encode

from .storage_helpers import Make, read_records, values

NOW = 1_700_000_000_000
WRAP = 1 << 31
PID = 1000


def produced(
    seq: int,
    count: int = 1,
    *,
    pid: int = PID,
    epoch: int = 0,
    ts: int = NOW,
    value: bytes | None = None,
) -> bytearray:
    """A batch of ``count`` records as an idempotent producer sends it."""
    records = [
        Record(value=value or b"%d-%d-%d" % (pid, epoch, seq + i), offset_delta=i)
        for i in range(count)
    ]
    return bytearray(
        encode_batch(
            records, base_timestamp=ts, producer_id=pid, producer_epoch=epoch, base_sequence=seq
        )
    )


def plain(value: bytes) -> bytearray:
    """A batch without a producer id (the same size as ``produced`` for 8-byte values)."""
    return bytearray(encode_batch([Record(value=value)], base_timestamp=NOW))


# -- the rules, on the state manager ----------------------------------------------


class Partition:
    """A state manager and the offsets a log would give, without a log."""

    def __init__(self, state: ProducerStateManager | None = None) -> None:
        self.state = state if state is not None else ProducerStateManager()
        self.end = 0

    def append(self, data: bytearray, now_ms: int = NOW) -> int:
        """The base offset the append got (an earlier one for a duplicate)."""
        pending = self.state.check(data, now_ms=now_ms)
        if pending.duplicate is not None:
            return pending.duplicate.first_offset
        placed = place_batches(data, self.end, log_append_time_ms=None)
        self.state.record(pending, placed)
        self.end = placed[-1].last_offset + 1
        return placed[0].base_offset


def test_in_sequence_wraps_at_two_to_the_31() -> None:
    assert in_sequence(4, 5)
    assert in_sequence(WRAP - 1, 0)
    assert not in_sequence(4, 6)
    assert not in_sequence(4, 4)
    assert in_sequence(-1, 0)


def test_consecutive_batches_are_appended() -> None:
    p = Partition()
    assert p.append(produced(0, 3)) == 0
    assert p.append(produced(3, 2)) == 3
    entry = p.state.get(PID)
    assert entry is not None
    assert (entry.epoch, entry.last_seq) == (0, 4)
    assert [(b.first_seq, b.last_seq, b.first_offset, b.last_offset) for b in entry.batches] == [
        (0, 2, 0, 2),
        (3, 4, 3, 4),
    ]


def test_a_retry_of_any_of_the_last_five_batches_gets_its_original_offset() -> None:
    p = Partition()
    for seq in range(7):
        p.append(produced(seq))
    end = p.end
    for seq in range(2, 7):
        assert p.append(produced(seq)) == seq
    assert p.end == end
    # Older than the five remembered: no longer recognisable, and out of order.
    with pytest.raises(OutOfOrderSequenceError):
        p.append(produced(1))


def test_a_retry_must_match_the_whole_sequence_range() -> None:
    p = Partition()
    p.append(produced(0, 3))
    with pytest.raises(OutOfOrderSequenceError):
        p.append(produced(0, 2))  # same first sequence, different last: not the same batch


def test_a_gap_is_out_of_order() -> None:
    p = Partition()
    p.append(produced(0, 2))
    with pytest.raises(OutOfOrderSequenceError, match="expected 2"):
        p.append(produced(3))
    assert p.append(produced(2)) == 2


def test_an_unknown_producer_may_start_at_any_sequence() -> None:
    p = Partition()
    assert p.append(produced(41)) == 0
    assert p.append(produced(42)) == 1
    with pytest.raises(OutOfOrderSequenceError):
        p.append(produced(41 + 5))


def test_an_older_epoch_is_fenced() -> None:
    p = Partition()
    p.append(produced(0, epoch=3))
    with pytest.raises(InvalidProducerEpochError, match="older than its current epoch 3"):
        p.append(produced(1, epoch=2))


def test_a_new_epoch_starts_at_sequence_zero_and_forgets_the_old_batches() -> None:
    p = Partition()
    p.append(produced(0, epoch=0))
    p.append(produced(1, epoch=0))
    with pytest.raises(OutOfOrderSequenceError, match="must start at sequence 0"):
        p.append(produced(2, epoch=1))
    assert p.append(produced(0, epoch=1)) == 2
    entry = p.state.get(PID)
    assert entry is not None
    assert (entry.epoch, len(entry.batches)) == (1, 1)
    # The old epoch's retry is now fenced, not deduplicated.
    with pytest.raises(InvalidProducerEpochError):
        p.append(produced(1, epoch=0))


def test_sequences_wrap_around() -> None:
    p = Partition()
    p.append(produced(WRAP - 3, 2))  # WRAP-3 .. WRAP-2
    p.append(produced(WRAP - 1, 3))  # WRAP-1, 0, 1
    entry = p.state.get(PID)
    assert entry is not None
    assert entry.last_seq == 1
    assert p.append(produced(2)) == 5
    assert p.append(produced(WRAP - 1, 3)) == 2  # the wrapping batch's retry


def test_a_producer_id_without_a_sequence_is_refused() -> None:
    p = Partition()
    with pytest.raises(InvalidSequenceError):
        p.append(produced(-1))


def test_batches_without_a_producer_id_and_control_batches_are_not_tracked() -> None:
    p = Partition()
    p.append(plain(b"x"))
    p.append(plain(b"x"))
    control = bytearray(
        encode_batch(
            [Record(key=b"\0\0\0\0", value=b"\0\0\0\0\0\0")],
            producer_id=PID,
            producer_epoch=0,
            base_sequence=-1,
            control=True,
        )
    )
    p.append(control)
    assert len(p.state) == 0
    assert p.end == 3


def test_batches_of_one_append_must_follow_each_other() -> None:
    p = Partition()
    p.append(produced(0))
    with pytest.raises(OutOfOrderSequenceError):
        p.append(produced(1) + produced(3))
    assert p.end == 1  # nothing of the refused append was taken
    assert p.append(produced(1) + produced(2, 2) + plain(b"x")) == 1
    entry = p.state.get(PID)
    assert entry is not None
    assert [b.first_offset for b in entry.batches] == [0, 1, 2]
    # An idempotent batch behind a plain one is seen too.
    assert p.append(plain(b"y") + produced(4)) == 5
    assert entry.last_seq == 4
    with pytest.raises(OutOfOrderSequenceError):
        p.append(plain(b"z") + produced(9))


def test_producers_are_independent() -> None:
    p = Partition()
    p.append(produced(0, pid=1))
    p.append(produced(7, pid=2))
    p.append(produced(1, pid=1))
    assert p.append(produced(7, pid=2)) == 1
    with pytest.raises(OutOfOrderSequenceError):
        p.append(produced(0, pid=2))


def test_producers_expire_a_day_after_their_last_batch() -> None:
    p = Partition()
    p.append(produced(0, pid=1, ts=NOW), now_ms=NOW)
    p.append(produced(0, pid=2, ts=NOW + 3_600_000), now_ms=NOW + 3_600_000)
    later = NOW + DEFAULT_EXPIRATION_MS
    # Producer 1 is exactly a day old: forgotten, so even sequence 5 is accepted.
    p.append(produced(5, pid=1, ts=later), now_ms=later)
    entry = p.state.get(1)
    assert entry is not None
    assert entry.last_seq == 5
    assert p.state.get(2) is not None


def test_expiry_is_checked_at_most_every_ten_minutes() -> None:
    state = ProducerStateManager()
    p = Partition(state)
    p.append(produced(0, pid=1, ts=NOW), now_ms=NOW)
    almost = NOW + DEFAULT_EXPIRATION_MS - 1
    p.append(produced(0, pid=2, ts=almost), now_ms=almost)  # the check runs: 1 stays
    p.append(produced(1, pid=2, ts=almost + 1), now_ms=almost + 1)
    assert state.get(1) is not None  # expired by now, but not checked again yet
    due = almost + DEFAULT_EXPIRATION_CHECK_INTERVAL_MS
    p.append(produced(2, pid=2, ts=due), now_ms=due)
    assert state.get(1) is None
    assert state.expire(now_ms=due + DEFAULT_EXPIRATION_MS) == 1
    assert len(state) == 0


def test_replay_rebuilds_what_appends_built() -> None:
    p = Partition()
    data = bytearray()
    for data_batch in (produced(0, 2), plain(b"x"), produced(2), produced(0, pid=7, epoch=2)):
        p.append(data_batch)
        data += data_batch
    rebuilt = ProducerStateManager()
    for _, header in iter_batches(data):
        rebuilt.replay(header)
    assert sorted(map(_entry_tuple, rebuilt), key=str) == sorted(
        map(_entry_tuple, p.state), key=str
    )


def _entry_tuple(entry: ProducerEntry) -> tuple[int, int, tuple[BatchMetadata, ...]]:
    return entry.producer_id, entry.epoch, tuple(entry.batches)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_retries_in_any_order_never_duplicate_and_keep_order(data: st.DataObject) -> None:
    """A client with up to five batches in flight, retrying any of them at random.

    Every send either appends the next batch or repeats an in-flight one; a
    repeat must be answered with the original offset and never stored again.
    """
    p = Partition()
    sizes = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=25), label="sizes")
    start = data.draw(st.sampled_from([0, 17, WRAP - 6]), label="first sequence")
    stored: list[tuple[int, int]] = []  # (first sequence, base offset) in log order
    offsets: dict[int, int] = {}
    seq = start
    for i, size in enumerate(sizes):
        offsets[i] = p.append(produced(seq, size))
        stored.append((seq, offsets[i]))
        retries = data.draw(st.lists(st.integers(max(0, i - 4), i), max_size=3), label="retries")
        for j in retries:
            first = (start + sum(sizes[:j])) % WRAP
            assert p.append(produced(first, sizes[j])) == offsets[j]
        seq = (seq + size) % WRAP
    assert p.end == sum(sizes)
    assert [offset for _, offset in stored] == sorted(offsets.values())


# -- through both logs -------------------------------------------------------------


def test_a_resent_batch_is_stored_once(make: Make) -> None:
    log = make()
    log.append(plain(b"before"), now_ms=NOW)
    first = log.append(produced(0, 2), now_ms=NOW)
    again = log.append(produced(0, 2), now_ms=NOW + 5)
    assert (first.base_offset, first.last_offset) == (1, 2)
    assert (again.base_offset, again.last_offset) == (1, 2)
    assert again.log_append_time_ms == -1
    assert log.end_offset == 3
    assert values(log) == [b"before", b"1000-0-0", b"1000-0-1"]


def test_a_resent_batch_gets_its_original_append_time(make: Make) -> None:
    log = make(timestamp_type=TimestampType.LOG_APPEND_TIME)
    first = log.append(produced(0), now_ms=NOW)
    again = log.append(produced(0), now_ms=NOW + 5)
    assert first.log_append_time_ms == again.log_append_time_ms == NOW


def test_refused_batches_leave_the_log_unchanged(make: Make) -> None:
    log = make()
    log.append(produced(0, epoch=1), now_ms=NOW)
    with pytest.raises(OutOfOrderSequenceError):
        log.append(produced(2, epoch=1), now_ms=NOW)
    with pytest.raises(InvalidProducerEpochError):
        log.append(produced(1, epoch=0), now_ms=NOW)
    assert log.end_offset == 1
    assert log.append(produced(1, epoch=1), now_ms=NOW).base_offset == 1


def test_truncation_forgets_the_truncated_batches(make: Make) -> None:
    log = make(segment_bytes=200)
    for seq in range(6):
        log.append(produced(seq), now_ms=NOW)
    log.truncate_to(3)
    # Sequence 3 was cut off, so it is the next one expected (not a duplicate).
    assert log.append(produced(3), now_ms=NOW).base_offset == 3
    assert log.append(produced(2), now_ms=NOW).base_offset == 2  # still remembered
    with pytest.raises(OutOfOrderSequenceError):
        log.append(produced(5), now_ms=NOW)


def test_producer_state_outlives_deleted_records(make: Make) -> None:
    log = make(segment_bytes=200)
    for seq in range(4):
        log.append(produced(seq), now_ms=NOW)
    log.delete_records_before(4)
    assert log.append(produced(3), now_ms=NOW).base_offset == 3
    with pytest.raises(OutOfOrderSequenceError):
        log.append(produced(9), now_ms=NOW)


# -- snapshots and recovery --------------------------------------------------------

ONE = len(produced(0))
SMALL = LogConfig(segment_bytes=ONE * 3)  # three batches per segment


def snapshot_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*.snapshot"))


def crash_copy(log: SegmentedLog, tmp_path: Path) -> Path:
    """The directory as a crash would leave it: what was written, no clean close."""
    copy = tmp_path / "crashed"
    shutil.copytree(log.directory, copy)
    return copy


def fill(log: PartitionLog, seqs: range, *, pid: int = PID) -> None:
    for seq in seqs:
        log.append(produced(seq, pid=pid), now_ms=NOW)


def test_state_survives_a_clean_reopen_without_a_rescan(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", SMALL)
    fill(log, range(8))
    log.close()
    assert snapshot_files(tmp_path / "p")[-1] == f"{8:020d}.snapshot"
    reopened = open_log(tmp_path / "p", SMALL)
    assert reopened.append(produced(7), now_ms=NOW).base_offset == 7
    assert reopened.append(produced(8), now_ms=NOW).base_offset == 8
    reopened.close()


def test_state_survives_a_crash(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", SMALL)
    fill(log, range(8))
    fill(log, range(3), pid=PID + 1)
    copy = crash_copy(log, tmp_path)
    log.close()
    # Rolls left snapshots; the last segments' batches are replayed after the newest.
    assert snapshot_files(copy)
    recovered = open_log(copy, SMALL)
    for seq in range(3, 8):
        assert recovered.append(produced(seq), now_ms=NOW).base_offset == seq
    assert recovered.append(produced(2, pid=PID + 1), now_ms=NOW).base_offset == 10
    with pytest.raises(OutOfOrderSequenceError):
        recovered.append(produced(9), now_ms=NOW)
    assert recovered.end_offset == 11
    recovered.close()


def test_snapshots_exist_only_while_producers_are_known(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    for i in range(7):
        log.append(plain(b"plain-%02d" % i), now_ms=NOW)
    log.close()
    assert snapshot_files(p) == []
    log = open_log(p, SMALL)
    fill(log, range(7))
    assert len(snapshot_files(p)) == 2  # the newest two of the rolls
    later = NOW + DEFAULT_EXPIRATION_MS
    log.append(plain(b"late"), now_ms=later)  # the producer expires
    log.close()
    assert snapshot_files(p) == []
    log = open_log(p, SMALL)
    assert log.append(produced(40), now_ms=later).base_offset == 15  # unknown again
    log.close()


def test_without_snapshots_the_active_segment_is_replayed(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    for i in range(6):
        log.append(plain(b"plain-%02d" % i), now_ms=NOW)
    fill(log, range(2))  # in the active segment, which began with no producer known
    copy = crash_copy(log, tmp_path)
    log.close()
    assert snapshot_files(copy) == []
    recovered = open_log(copy, SMALL)
    assert recovered.append(produced(1), now_ms=NOW).base_offset == 7
    recovered.close()


def test_an_unreadable_snapshot_falls_back_to_a_full_replay(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    fill(log, range(7))
    log.close()
    for name in snapshot_files(p):
        (p / name).write_bytes(b"\x00\x01garbage")
    log = open_log(p, SMALL)
    assert log.append(produced(6), now_ms=NOW).base_offset == 6
    assert log.append(produced(7), now_ms=NOW).base_offset == 7
    log.close()


def test_a_snapshot_past_the_end_is_dropped(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    fill(log, range(4))
    log.close()
    (p / f"{4:020d}.snapshot").rename(p / f"{99:020d}.snapshot")
    log = open_log(p, SMALL)
    assert f"{99:020d}.snapshot" not in snapshot_files(p)
    assert log.append(produced(3), now_ms=NOW).base_offset == 3
    log.close()


def test_truncation_rewrites_the_snapshots(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    fill(log, range(9))
    log.truncate_to(4)
    assert all(int(name[:20]) <= 4 for name in snapshot_files(p))
    copy = crash_copy(log, tmp_path)
    log.close()
    recovered = open_log(copy, SMALL)
    assert recovered.append(produced(4), now_ms=NOW).base_offset == 4
    assert read_records(recovered)[-1].value == b"1000-0-4"
    recovered.close()


def test_a_failed_snapshot_write_is_not_fatal(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, SMALL)
    fill(log, range(2))
    (p / f"{3:020d}.snapshot.tmp").mkdir()  # the write to it fails
    fill(log, range(2, 5))  # rolls at 3
    assert f"{3:020d}.snapshot" not in snapshot_files(p)
    (p / f"{3:020d}.snapshot.tmp").rmdir()
    log.close()
    log = open_log(p, SMALL)
    assert log.append(produced(5), now_ms=NOW).base_offset == 5
    log.close()


entries_strategy = st.lists(
    st.builds(
        ProducerEntry,
        st.integers(0, 2**63 - 1),
        st.integers(-1, 2**15 - 1),
        st.lists(
            st.builds(
                BatchMetadata,
                st.integers(0, WRAP - 1),
                st.integers(0, WRAP - 1),
                st.integers(0, 2**62),
                st.integers(0, 2**62),
                st.integers(-1, 2**62),
            ),
            min_size=1,
            max_size=BATCHES_RETAINED,
        ).map(lambda batches: deque(batches, BATCHES_RETAINED)),
    ),
    max_size=8,
    unique_by=lambda entry: entry.producer_id,
)


@given(entries_strategy)
def test_snapshot_encoding_round_trips(entries: list[ProducerEntry]) -> None:
    assert decode(encode(entries)) == entries


@given(entries_strategy, st.data())
def test_damaged_snapshots_are_detected(entries: list[ProducerEntry], data: st.DataObject) -> None:
    encoded = bytearray(encode(entries))
    cut = data.draw(st.integers(0, len(encoded) - 1), label="cut")
    with pytest.raises(CorruptLogError):
        decode(bytes(encoded[:cut]))
    position = data.draw(st.integers(0, len(encoded) - 1), label="flipped byte")
    encoded[position] ^= 0x40
    with pytest.raises(CorruptLogError):
        decode(bytes(encoded))


def test_snapshot_files_keep_the_newest_two(tmp_path: Path) -> None:
    snapshots = ProducerSnapshots(str(tmp_path))
    state = ProducerStateManager()
    Partition(state).append(produced(0))
    for offset in (10, 20, 30, 20):
        snapshots.save(offset, state)
    assert snapshots.offsets == [20, 30]
    assert snapshot_files(tmp_path) == [f"{20:020d}.snapshot", f"{30:020d}.snapshot"]
    assert ProducerSnapshots(str(tmp_path)).offsets == [20, 30]
    snapshots.save(40, ProducerStateManager())
    assert snapshot_files(tmp_path) == []
