"""Producer state snapshots: so reopening a log does not rescan it for idempotence.

The producer state of a partition (:mod:`rivulet.storage.producer_state`) can
always be rebuilt by replaying batch headers from the start of the log, but that
reads one header per batch of every segment. Like Kafka, the log saves the state
in ``<20-digit offset>.snapshot`` files, each holding the state as of that offset
(every batch below it applied); opening loads the newest readable one and
replays only the batches after it.

When snapshots are written, and what the files promise:

* When a segment rolls, at the new segment's base offset, before the new
  segment is created; and at a clean close, at the end offset.
* Only while some producer is known: when none is, every snapshot is deleted
  instead, so logs never written by an idempotent producer hold no such files.
  Hence the rule for reopening: with no snapshot file at all, the state was
  empty when the active segment began, and replaying that segment is enough.
  When files exist but none is readable, the whole log is replayed.
* The newest two are kept; a snapshot above the log's end offset (left by a
  truncation or a cut tail) is deleted on load.

A file is written to ``<name>.tmp``, fsynced, renamed into place and the
directory fsynced, so after a crash it is whole or absent. Its format (big
endian)::

    offset  size  field
    0       2     format version (1)
    2       4     CRC32C of every byte after this field
    6       4     producer count
    10      ...   producers, each:
                    8   producer id
                    2   epoch
                    1   batch count (1-5), oldest first, each 32 bytes:
                          4  first sequence
                          4  last sequence
                          8  first offset
                          8  last offset
                          8  max timestamp
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable

import crc32c

from rivulet.protocol.batch import BatchHeader
from rivulet.storage.errors import CorruptLogError
from rivulet.storage.producer_state import BatchMetadata, ProducerEntry, ProducerStateManager
from rivulet.storage.segmented.checkpoint import fsync_directory

__all__ = ["SNAPSHOTS_KEPT", "ProducerSnapshots", "decode", "encode"]

SNAPSHOTS_KEPT = 2

_log = logging.getLogger(__name__)
_SUFFIX = ".snapshot"
_NAME = re.compile(r"^(\d{20})\.snapshot$")
_VERSION = 1
_PREFIX = struct.Struct(">hI")
_COUNT = struct.Struct(">i")
_PRODUCER = struct.Struct(">qhB")
_BATCH = struct.Struct(">iiqqq")


def encode(entries: Iterable[ProducerEntry]) -> bytes:
    """The snapshot file's bytes for ``entries`` (producers without batches are left out)."""
    body = bytearray(_COUNT.size)
    count = 0
    for entry in entries:
        if not entry.batches:
            continue
        count += 1
        body += _PRODUCER.pack(entry.producer_id, entry.epoch, len(entry.batches))
        for b in entry.batches:
            body += _BATCH.pack(b.first_seq, b.last_seq, b.first_offset, b.last_offset, b.timestamp)
    _COUNT.pack_into(body, 0, count)
    return _PREFIX.pack(_VERSION, crc32c.crc32c(body)) + bytes(body)


def decode(data: bytes) -> list[ProducerEntry]:
    """Read a snapshot file's bytes. Raises :class:`CorruptLogError` if they are damaged."""
    if len(data) < _PREFIX.size + _COUNT.size:
        raise CorruptLogError(f"producer snapshot of {len(data)} bytes is too short")
    version, crc = _PREFIX.unpack_from(data)
    if version != _VERSION:
        raise CorruptLogError(f"producer snapshot has format version {version}, not {_VERSION}")
    body = memoryview(data)[_PREFIX.size :]
    if crc32c.crc32c(body) != crc:
        raise CorruptLogError("producer snapshot fails its CRC32C check")
    try:
        (count,) = _COUNT.unpack_from(body)
        position = _COUNT.size
        entries = []
        for _ in range(count):
            producer_id, epoch, batch_count = _PRODUCER.unpack_from(body, position)
            position += _PRODUCER.size
            entry = ProducerEntry(producer_id, epoch)
            for _ in range(batch_count):
                entry.batches.append(BatchMetadata(*_BATCH.unpack_from(body, position)))
                position += _BATCH.size
            entries.append(entry)
    except struct.error as exc:
        raise CorruptLogError(f"producer snapshot is cut short: {exc}") from exc
    if position != len(body):
        raise CorruptLogError(f"producer snapshot has {len(body) - position} bytes too many")
    return entries


class ProducerSnapshots:
    """The snapshot files of one partition directory."""

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._offsets = sorted(
            int(match.group(1))
            for name in os.listdir(directory)
            if (match := _NAME.match(name)) is not None
        )

    @property
    def offsets(self) -> list[int]:
        """The offsets of the snapshots on disk, oldest first."""
        return list(self._offsets)

    def _path(self, offset: int) -> str:
        return os.path.join(self._directory, f"{offset:020d}{_SUFFIX}")

    def save(self, offset: int, state: ProducerStateManager) -> None:
        """Snapshot ``state`` as of ``offset``, or delete every snapshot if it is empty.

        A failure to write is logged, not raised: snapshots only save time, and
        the previous ones still describe the log correctly.
        """
        if not len(state):
            self._delete(list(self._offsets))
            return
        path = self._path(offset)
        try:
            _write_atomically(path, encode(state))
        except OSError:
            _log.warning("could not write producer snapshot %s", path, exc_info=True)
            return
        if offset not in self._offsets:
            self._offsets.append(offset)
            self._offsets.sort()
        self._delete(self._offsets[:-SNAPSHOTS_KEPT])

    def _delete(self, offsets: list[int]) -> None:
        for offset in offsets:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path(offset))
            self._offsets.remove(offset)

    def delete_above(self, offset: int) -> None:
        """Delete the snapshots of offsets past ``offset`` (the log no longer reaches them)."""
        self._delete([o for o in self._offsets if o > offset])

    def restore(
        self,
        state: ProducerStateManager,
        *,
        end_offset: int,
        active_base_offset: int,
        first_base_offset: int,
        headers_from: Callable[[int], Iterable[BatchHeader]],
    ) -> None:
        """Rebuild ``state``: the newest readable snapshot, then the batches after it.

        ``headers_from(offset)`` yields the headers of the log's batches from
        ``offset`` on. Without any snapshot, the state was empty when the active
        segment (at ``active_base_offset``) began; when snapshots exist but none
        can be read, replay starts at ``first_base_offset``.
        """
        state.clear()
        self.delete_above(end_offset)
        replay_from = active_base_offset
        for offset in reversed(self._offsets):
            path = self._path(offset)
            try:
                with open(path, "rb") as file:
                    entries = decode(file.read())
            except (OSError, CorruptLogError) as exc:
                _log.warning("ignoring producer snapshot %s: %s", path, exc)
                replay_from = first_base_offset
                continue
            state.load(entries)
            replay_from = offset
            break
        for header in headers_from(replay_from):
            state.replay(header)


def _write_atomically(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(path) or ".")
