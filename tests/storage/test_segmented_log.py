"""What only the on-disk log does: files, indexes, recovery, persistence."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rivulet.protocol.batch import Compression, iter_batches
from rivulet.storage import (
    CleanupPolicy,
    CorruptLogError,
    FileRegion,
    LogConfig,
    OffsetOutOfRangeError,
)
from rivulet.storage.segmented import SegmentedLog, delete_log, open_log
from rivulet.storage.segmented.recovery import CLEAN_SHUTDOWN

from .storage_helpers import batch, read_records, result_bytes, values


def files(path: Path) -> list[str]:
    return sorted(os.listdir(path))


def crash_copy(log: SegmentedLog, tmp_path: Path) -> Path:
    """The directory as a crash would leave it: what was written, no clean close."""
    copy = tmp_path / "crashed"
    shutil.copytree(log.directory, copy)
    return copy


def fill(log: SegmentedLog, count: int, *, size: int = 50, ts: int = 0) -> None:
    for i in range(count):
        log.append(batch([b"%06d" % i + b"x" * size], timestamp=ts + i), now_ms=ts + i)


def test_directory_layout(tmp_path: Path) -> None:
    one = len(batch([b"000000" + b"x" * 50]))
    log = open_log(tmp_path / "p", LogConfig(segment_bytes=one * 2))
    fill(log, 5)
    assert log.segment_count == 3
    names = files(tmp_path / "p")
    assert names[:3] == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]
    assert {n.split(".")[1] for n in names} == {"index", "log", "timeindex"}
    bases = sorted(int(n.split(".")[0]) for n in names if n.endswith(".log"))
    assert bases[0] == 0
    assert len(bases) == 3
    log.close()
    assert CLEAN_SHUTDOWN in files(tmp_path / "p")
    delete_log(tmp_path / "p")
    assert not (tmp_path / "p").exists()
    delete_log(tmp_path / "p")  # already gone: fine


def test_reads_are_file_regions_of_the_segment_files(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig(segment_bytes=300))
    fill(log, 10)
    result = log.read(0, 1 << 20)
    assert all(isinstance(c, FileRegion) for c in result.chunks)
    assert len(result.chunks) == log.segment_count  # one region per segment touched
    assert result_bytes(result) == b"".join(
        (tmp_path / "p" / n).read_bytes() for n in files(tmp_path / "p") if n.endswith(".log")
    )
    log.close()


def test_sparse_index_entries_every_interval(tmp_path: Path) -> None:
    one = len(batch([b"000000" + b"x" * 50]))
    log = open_log(tmp_path / "p", LogConfig(index_interval_bytes=one * 4))
    fill(log, 41)
    index = (tmp_path / "p" / "00000000000000000000.index").read_bytes()
    # An entry when at least the interval was written since the last one: every 4th batch.
    assert len(index) == 10 * 8
    assert int.from_bytes(index[0:4], "big") == 4
    assert int.from_bytes(index[4:8], "big") == 4 * one
    # Every offset is still found, whichever index entry precedes it.
    for offset in range(41):
        assert read_records(log, offset)[0].offset == offset
    log.close()


def test_reads_honour_max_bytes_between_index_entries(tmp_path: Path) -> None:
    one = len(batch([b"000000" + b"x" * 50]))
    log = open_log(tmp_path / "p", LogConfig(index_interval_bytes=one * 3))
    fill(log, 30)
    for start in (0, 5, 11):
        for limit in (one - 1, one, one * 2 + 5, one * 7, one * 100):
            result = log.read(start, limit)
            expected = max(min(limit // one, 30 - start), 1) * one
            assert result.size == expected
            assert next(h.base_offset for _, h in iter_batches(result_bytes(result))) == start
    log.close()


def test_data_and_start_offset_survive_reopen(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=300)
    log = open_log(tmp_path / "p", config)
    fill(log, 12)
    log.delete_records_before(7)
    before = read_records(log)
    log.close()
    log.close()  # twice is harmless
    log = open_log(tmp_path / "p", config)
    assert CLEAN_SHUTDOWN not in files(tmp_path / "p")
    assert (log.start_offset, log.end_offset) == (7, 12)
    assert read_records(log) == before
    assert log.append(batch([b"more"]), now_ms=20).base_offset == 12
    assert log.offset_for_timestamp(9) == (9, 9)
    assert log.max_timestamp() == (12, 0) or log.max_timestamp() == (11, 11)
    log.close()


def test_an_empty_log_reopens_empty(tmp_path: Path) -> None:
    open_log(tmp_path / "p", LogConfig()).close()
    log = open_log(tmp_path / "p", LogConfig())
    assert (log.start_offset, log.end_offset, log.size_bytes) == (0, 0, 0)
    log.close()


def test_a_crash_keeps_every_whole_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig(segment_bytes=400))
    fill(log, 20)
    log.flush()
    copy = crash_copy(log, tmp_path)
    log.close()
    recovered = open_log(copy, LogConfig(segment_bytes=400))
    assert recovered.end_offset == 20
    assert read_records(recovered) == read_records(open_log(tmp_path / "p", LogConfig()))
    recovered.close()


def _active_log_file(path: Path) -> Path:
    return path / [n for n in files(path) if n.endswith(".log")][-1]


def test_recovery_cuts_a_torn_tail(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig())
    fill(log, 5)
    copy = crash_copy(log, tmp_path)
    log.close()
    segment = _active_log_file(copy)
    whole = segment.stat().st_size
    with segment.open("r+b") as file:
        file.truncate(whole - 10)  # the last batch lost its end
    recovered = open_log(copy, LogConfig())
    assert recovered.end_offset == 4
    assert values(recovered)[-1].startswith(b"000003")  # type: ignore[union-attr]
    assert segment.stat().st_size == whole * 4 // 5
    assert recovered.append(batch([b"after"]), now_ms=0).base_offset == 4
    recovered.close()


def test_recovery_cuts_a_batch_whose_crc_fails(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig())
    fill(log, 5)
    copy = crash_copy(log, tmp_path)
    log.close()
    segment = _active_log_file(copy)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last batch's value
    segment.write_bytes(bytes(data))
    recovered = open_log(copy, LogConfig())
    assert recovered.end_offset == 4
    assert len(read_records(recovered)) == 4
    recovered.close()


def test_recovery_cuts_garbage_after_the_last_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig())
    fill(log, 3)
    copy = crash_copy(log, tmp_path)
    log.close()
    segment = _active_log_file(copy)
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\x00" * 100)  # preallocated zeros, as some filesystems leave
    recovered = open_log(copy, LogConfig())
    assert recovered.end_offset == 3
    assert segment.stat().st_size == size
    recovered.close()


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate"])
@pytest.mark.parametrize("which", ["rolled", "active"])
def test_damaged_indexes_are_rebuilt(tmp_path: Path, damage: str, which: str) -> None:
    config = LogConfig(segment_bytes=2000, index_interval_bytes=100)
    log = open_log(tmp_path / "p", config)
    fill(log, 60, ts=1000)
    assert log.segment_count > 2
    expected = read_records(log)
    stamps = [log.offset_for_timestamp(1000 + i) for i in range(0, 60, 7)]
    log.close()
    bases = [n.split(".")[0] for n in files(tmp_path / "p") if n.endswith(".log")]
    base = bases[0] if which == "rolled" else bases[-1]
    intact = {k: (tmp_path / "p" / f"{base}.{k}").read_bytes() for k in ("index", "timeindex")}
    assert all(intact.values())
    for kind in ("index", "timeindex"):
        path = tmp_path / "p" / f"{base}.{kind}"
        if damage == "delete":
            path.unlink()
        elif damage == "garbage":
            path.write_bytes(os.urandom(path.stat().st_size or 24))
        else:
            path.write_bytes(path.read_bytes()[:-5])
    log = open_log(tmp_path / "p", config)
    assert read_records(log) == expected
    assert [log.offset_for_timestamp(1000 + i) for i in range(0, 60, 7)] == stamps
    assert log.max_timestamp() == (59, 1059)
    for offset in range(0, 60, 5):
        assert read_records(log, offset)[0].offset == offset
    log.close()
    # The indexes were rebuilt as they were and written back.
    assert {k: (tmp_path / "p" / f"{base}.{k}").read_bytes() for k in intact} == intact


def test_roll_age_survives_reopen(tmp_path: Path) -> None:
    config = LogConfig(segment_ms=1000)
    log = open_log(tmp_path / "p", config)
    log.append(batch([b"a"], timestamp=10_000), now_ms=10_000)
    log.close()
    log = open_log(tmp_path / "p", config)
    # The segment's first batch is from 10 000: at 11 001 it is too old, reopen or not.
    log.append(batch([b"b"], timestamp=11_001), now_ms=11_001)
    assert log.segment_count == 2
    log.close()


def test_retention_removes_segment_files(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig(segment_bytes=300, retention_ms=100))
    fill(log, 12, ts=0)
    count = log.segment_count
    region = log.read(0, 100).chunks[0]
    assert log.enforce_retention(now_ms=1000) == count
    assert log.segment_count == 1
    assert len([n for n in files(tmp_path / "p") if n.endswith(".log")]) == 1
    # A region handed out before the deletion stays readable until the next pass.
    assert isinstance(region, FileRegion)
    assert len(os.pread(region.fd, region.length, region.position)) == region.length
    log.close()
    log = open_log(tmp_path / "p", LogConfig())
    assert (log.start_offset, log.end_offset) == (12, 12)
    log.close()


def test_delete_records_persists_even_without_deleting_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig())
    fill(log, 5)
    log.delete_records_before(3)
    assert (tmp_path / "p" / "log-start-offset").read_text() == "3\n"
    copy = crash_copy(log, tmp_path)
    log.close()
    recovered = open_log(copy, LogConfig())
    assert recovered.start_offset == 3
    with pytest.raises(OffsetOutOfRangeError):
        recovered.read(2, 100)
    recovered.close()


def test_compaction_survives_reopen_and_cleans_up_interrupted_work(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=50, cleanup_policy=CleanupPolicy.COMPACT)
    log = open_log(tmp_path / "p", config)
    for i in range(10):
        log.append(
            batch([b"v%d" % i], keys=[b"k%d" % (i % 2)], compression=Compression.LZ4), now_ms=0
        )
    log.compact(now_ms=0)
    after = read_records(log)
    assert [s.offset for s in after] == [7, 8, 9]
    log.close()
    # An interrupted compaction left a half-written copy: it must be ignored.
    (tmp_path / "p" / "00000000000000000007.log.cleaned").write_bytes(b"junk")
    (tmp_path / "p" / "00000000000000000007.index.cleaned").write_bytes(b"junk")
    log = open_log(tmp_path / "p", config)
    assert read_records(log) == after
    assert not [n for n in files(tmp_path / "p") if n.endswith(".cleaned")]
    log.close()


def test_a_committed_compaction_finishes_its_index_renames(tmp_path: Path) -> None:
    config = LogConfig(index_interval_bytes=10)
    log = open_log(tmp_path / "p", config)
    fill(log, 5)
    log.close()
    p = tmp_path / "p"
    # As if the crash came after the log's rename but before the indexes': the
    # ``.cleaned`` indexes are the ones matching the log.
    for kind in ("index", "timeindex"):
        name = f"00000000000000000000.{kind}"
        (p / name).rename(p / f"{name}.cleaned")
        (p / name).write_bytes(os.urandom(40))
    log = open_log(p, config)
    assert [s.offset for s in read_records(log)] == [0, 1, 2, 3, 4]
    assert not [n for n in files(p) if n.endswith(".cleaned")]
    log.close()


def test_stray_files_are_tidied(tmp_path: Path) -> None:
    p = tmp_path / "p"
    open_log(p, LogConfig()).close()
    (p / "00000000000000000500.index").write_bytes(b"")  # its log was deleted
    (p / "log-start-offset.tmp").write_bytes(b"12")
    log = open_log(p, LogConfig())
    assert files(p) == [
        "00000000000000000000.index",
        "00000000000000000000.log",
        "00000000000000000000.timeindex",
    ]
    log.close()


def test_an_unreadable_checkpoint_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "p"
    log = open_log(p, LogConfig())
    fill(log, 3)
    log.close()
    (p / "log-start-offset").write_bytes(b"\xff\xfe")
    log = open_log(p, LogConfig())
    assert log.start_offset == 0
    log.close()


def test_appending_to_a_full_index_rolls(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig(index_interval_bytes=1, segment_index_bytes=8 * 3))
    fill(log, 10)
    assert log.segment_count > 1
    assert [s.offset for s in read_records(log)] == list(range(10))
    log.close()


def test_compaction_refuses_batches_that_do_not_decode(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=50, cleanup_policy=CleanupPolicy.COMPACT)
    log = open_log(tmp_path / "p", config)
    for i in range(3):
        log.append(batch([b"v%d" % i], keys=[b"k"]), now_ms=0)
    log.close()
    first = tmp_path / "p" / "00000000000000000000.log"
    data = bytearray(first.read_bytes())
    data[60] = 9  # records count 9: the records section ends early
    first.write_bytes(bytes(data))
    log = open_log(tmp_path / "p", config)
    with pytest.raises(CorruptLogError, match="offset 0 does not decode"):
        log.compact(now_ms=0)
    assert not [n for n in files(tmp_path / "p") if n.endswith(".cleaned")]
    assert [s.value for s in read_records(log, 1)] == [b"v1", b"v2"]
    log.close()


def test_segments_below_a_checkpointed_start_are_deleted_on_open(tmp_path: Path) -> None:
    log = open_log(tmp_path / "p", LogConfig(segment_bytes=200))
    fill(log, 6)
    count = log.segment_count
    log.close()
    # As if a crash came between the checkpoint write and the segment deletion.
    (tmp_path / "p" / "log-start-offset").write_text("4\n")
    log = open_log(tmp_path / "p", LogConfig())
    assert log.start_offset == 4
    assert log.segment_count < count
    assert [s.offset for s in read_records(log)] == [4, 5]
    log.close()
