"""Recovery: make a partition directory consistent when a log is opened.

What can be wrong after a crash, and what is done about it:

* The active (last) segment's tail may be torn (a write cut short) or hold
  garbage. Unless the previous close was clean, the whole active segment is
  rescanned: each batch must have magic 2, a sane length that fits the file,
  offsets above the previous batch's, and a matching CRC32C. The file is cut at
  the first batch that fails, and its indexes are rebuilt from what remains.
  Rolled segments were fsynced when they rolled, so they are not rescanned.
* An index may be missing, torn or inconsistent with its log (an entry out of
  order or beyond the end of the file). It is rebuilt by walking batch headers,
  without checking CRCs. Rolled segments are checked when first used, so opening
  a log with many segments stays fast.
* Compaction may have stopped half way. It writes a segment's replacement as
  ``<base>.log.cleaned`` with its indexes, then renames the log over the old one
  (the commit point) and then the indexes. A ``.log.cleaned`` that still exists
  was never committed and is deleted with its indexes; ``.cleaned`` indexes
  without it belong to a committed log and are renamed into place.
* Temporary files of an interrupted checkpoint write (``*.tmp``) are deleted.

A clean close leaves a ``clean-shutdown`` marker; opening removes it, so a crash
at any later point forces the active segment's rescan on the next open.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from rivulet.protocol.batch import HEADER_SIZE, LOG_OVERHEAD, MAGIC, BatchHeader, read_header
from rivulet.protocol.batch import verify_crc as check_crc
from rivulet.protocol.errors import InvalidBatchError
from rivulet.storage.segmented.appending import BatchInfo
from rivulet.storage.segmented.retention import MAX_RELATIVE_OFFSET

if TYPE_CHECKING:
    from rivulet.storage.segmented.segment import Segment

__all__ = ["CLEAN_SHUTDOWN", "rescan", "tidy_directory", "trusted_tail"]

CLEAN_SHUTDOWN = "clean-shutdown"

_log = logging.getLogger(__name__)
_SEGMENT_FILE = re.compile(r"^(\d{20})\.(log|index|timeindex)(\.cleaned)?$")


def tidy_directory(directory: str) -> list[int]:
    """Finish or undo interrupted work; return the base offsets of the segments, sorted."""
    names = set(os.listdir(directory))
    for name in sorted(names):
        if name.endswith(".tmp"):
            os.unlink(os.path.join(directory, name))
    bases: set[int] = set()
    for name in sorted(names):
        match = _SEGMENT_FILE.match(name)
        if match is None or not match.group(3):
            continue
        base, kind = match.group(1), match.group(2)
        path = os.path.join(directory, name)
        if f"{base}.log.cleaned" in names:
            _log.warning("discarding %s: its compaction was interrupted", path)
            os.unlink(path)
        elif kind != "log":
            os.replace(path, path.removesuffix(".cleaned"))
    names = set(os.listdir(directory))
    for name in names:
        match = _SEGMENT_FILE.match(name)
        if match is None:
            continue
        base, kind = match.group(1), match.group(2)
        if kind == "log":
            bases.add(int(base))
        elif f"{base}.log" not in names:
            # An index whose log is gone (deleted by retention before a crash).
            os.unlink(os.path.join(directory, name))
    return sorted(bases)


def _valid_batch(
    segment: Segment, position: int, file_size: int, expected_offset: int, verify_crc: bool
) -> BatchHeader | str:
    """The header of the batch at ``position`` if it passes every check, else why not."""
    data = os.pread(segment.fd, HEADER_SIZE, position)
    if len(data) < HEADER_SIZE:
        return f"{file_size - position} bytes left, fewer than a batch header"
    header = read_header(data)
    if header.magic != MAGIC:
        return f"magic {header.magic}"
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD or position + header.size > file_size:
        return f"batch length {header.batch_length} does not fit the file"
    if header.base_offset < expected_offset or header.last_offset_delta < 0:
        return f"offsets {header.base_offset}..{header.last_offset} go backwards"
    if header.last_offset - segment.base_offset > MAX_RELATIVE_OFFSET:
        return f"offset {header.last_offset} is too far from the segment's base offset"
    if verify_crc:
        try:
            check_crc(os.pread(segment.fd, header.size, position), 0, header)
        except InvalidBatchError as exc:
            return str(exc)
    return header


def rescan(segment: Segment, *, verify_crc: bool) -> int:
    """Rebuild a segment's indexes and statistics from its log file.

    The file is cut at the first batch that fails a check; returns how many
    bytes were cut.
    """
    segment.reset_stats()
    segment.indexes_checked = True
    file_size = os.fstat(segment.fd).st_size
    position = 0
    expected = segment.base_offset
    while position < file_size:
        found = _valid_batch(segment, position, file_size, expected, verify_crc)
        if isinstance(found, str):
            _log.warning(
                "%s: cutting %d bytes at position %d: %s",
                segment.path(".log"),
                file_size - position,
                position,
                found,
            )
            break
        info = BatchInfo(0, found.size, found.base_offset, found.last_offset, found.max_timestamp)
        segment.track(position, info)
        position += found.size
        expected = found.next_offset
    if position < file_size:
        segment.truncate(position)
    segment.size_bytes = position
    if segment.max_timestamp >= 0:
        # As when a segment rolls: the last entry holds the largest timestamp.
        segment.time_index.add(segment.max_timestamp, segment.offset_of_max)
    segment.offset_index.write()
    segment.time_index.write()
    return file_size - position


def trusted_tail(segment: Segment) -> bool:
    """After a clean close: whether the indexes fit the log, reading only the tail.

    Walks headers from the last indexed batch to the end of the file to learn
    the segment's next offset; statistics come from the time index's last entry.
    """
    size = os.fstat(segment.fd).st_size
    segment.size_bytes = size
    if segment.indexes_missing or segment.offset_index.torn or segment.time_index.torn:
        return False
    if not segment.offset_index.is_consistent(size):
        return False
    start = segment.offset_index.last_position()
    position = start
    expected = segment.base_offset
    tail_max = -1
    while position < size:
        found = _valid_batch(segment, position, size, expected, verify_crc=False)
        if isinstance(found, str):
            return False
        position += found.size
        expected = found.next_offset
        tail_max = max(tail_max, found.max_timestamp)
    last = segment.time_index.last()
    # A clean close wrote the segment's largest timestamp as the last entry.
    if size > 0 and (last is None or last[1] >= expected or last[0] < tail_max):
        return False
    if not segment.time_index.is_consistent(expected):
        return False
    segment.next_offset = expected
    if last is not None:
        segment.max_timestamp, segment.offset_of_max = last
    if size > 0:
        segment.first_timestamp = segment.header_at(0).max_timestamp
    segment.set_bytes_since_index(size - start)
    return True
