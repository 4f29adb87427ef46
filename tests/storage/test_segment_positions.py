"""Segment.position_of: the remembered tail batches answer exactly as the index and headers do."""

from __future__ import annotations

import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from rivulet.storage.segmented import recovery
from rivulet.storage.segmented.appending import place_batches
from rivulet.storage.segmented.segment import Segment

from .storage_helpers import batch


def scanned_position(segment: Segment, offset: int) -> int:
    """The reference answer: walk every header from the start of the file."""
    for position, header in segment.headers(0):
        if header.last_offset >= offset:
            return position
    return segment.size_bytes


def append(segment: Segment, records: int, next_offset: int) -> int:
    buf = batch([b"v%d" % i for i in range(records)])
    placed = place_batches(buf, next_offset, log_append_time_ms=None)
    segment.append(buf, placed)
    return placed[-1].last_offset + 1


def check_every_offset(segment: Segment, base: int, end: int) -> None:
    for offset in range(base - 1, end + 3):
        assert segment.position_of(offset) == scanned_position(segment, offset), offset


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5), min_size=0, max_size=150),
    base=st.integers(0, 1_000),
    cut_at=st.integers(0, 150),
)
def test_position_of_matches_a_full_scan(sizes: list[int], base: int, cut_at: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        # A small index interval puts index entries among the remembered batches too.
        segment = Segment(directory, base, index_interval_bytes=200)
        try:
            end = base
            for records in sizes:
                end = append(segment, records, end)
            check_every_offset(segment, base, end)

            # Truncation (as recovery does) forgets the positions past the cut.
            positions = [p for p, _ in segment.headers(0)]
            if positions:
                cut = positions[min(cut_at, len(positions) - 1)]
                segment.truncate(cut)
                recovery.rescan(segment, verify_crc=False)
                end = segment.next_offset
                check_every_offset(segment, base, end)
                end = append(segment, 3, end)
                check_every_offset(segment, base, end)
        finally:
            segment.close()


def test_offsets_in_a_gap_go_to_the_next_batch() -> None:
    # Compaction leaves gaps between batches: an offset in one belongs to the next batch.
    with tempfile.TemporaryDirectory() as directory:
        segment = Segment(directory, 0, index_interval_bytes=4096)
        try:
            append(segment, 2, 0)  # offsets 0-1
            second = segment.size_bytes
            append(segment, 2, 10)  # offsets 10-11 (2-9 compacted away)
            assert segment.position_of(5) == second
            assert segment.position_of(10) == second
            assert segment.position_of(12) == segment.size_bytes
            assert segment.position_of(1) == 0
        finally:
            segment.close()


def test_a_long_segment_answers_behind_the_remembered_batches_too() -> None:
    # Far more batches than are remembered: offsets just before them use the index.
    with tempfile.TemporaryDirectory() as directory:
        segment = Segment(directory, 7, index_interval_bytes=300)
        try:
            end = 7
            for i in range(300):
                end = append(segment, 1 + i % 3, end)
            check_every_offset(segment, 7, end)
        finally:
            segment.close()
