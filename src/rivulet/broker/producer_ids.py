"""Producer ids for InitProducerId: handed out once, never again, across restarts.

A producer id must never be reused: a partition remembers producers by id
(:mod:`rivulet.storage.producer_state`), so a new producer given an old id would
inherit the old one's sequence numbers and have its first batches refused.
Kafka reserves ids in blocks of 1000 through its controller and hands them out
from memory; so does this broker, with ``<data_dir>/producer-id-block`` as the
record of what has been reserved. The file holds one decimal integer, the first
id not yet reserved, and is replaced atomically (temporary file, fsync, rename)
before any id of a new block is given out. After a restart, allocation starts
at that number: the unused rest of the last block is skipped, never repeated.

With no data directory (in-memory brokers) ids start at 0 in every process.

>>> ids = ProducerIdAllocator(None)
>>> ids.allocate(), ids.allocate()
(0, 1)
"""

from __future__ import annotations

import os
from pathlib import Path

from rivulet.storage.segmented.checkpoint import read_offset, write_offset

__all__ = ["BLOCK_FILE", "BLOCK_SIZE", "ProducerIdAllocator"]

BLOCK_SIZE = 1000
"""Ids reserved per write of the block file (Kafka's ``ProducerIdsBlock`` size)."""

BLOCK_FILE = "producer-id-block"


class ProducerIdAllocator:
    """Allocates producer ids, persisting a reservation before each block is used.

    The file is read on the first allocation, so creating one costs nothing.
    """

    def __init__(self, data_dir: Path | None, *, block_size: int = BLOCK_SIZE) -> None:
        self._path = os.fspath(data_dir / BLOCK_FILE) if data_dir is not None else None
        self._block_size = block_size
        self._next: int | None = None
        self._block_end = 0

    def _load(self) -> int:
        """The next id to hand out; on first use, the reservation left by earlier runs."""
        if self._next is None:
            reserved = 0
            if self._path is not None:
                found = read_offset(self._path)
                if found is None and os.path.exists(self._path):
                    raise OSError(
                        f"{self._path} is unreadable, so producer ids could be handed out "
                        "twice: write into it one number larger than any producer id in use"
                    )
                reserved = found or 0
            self._next = self._block_end = reserved
        return self._next

    def allocate(self) -> int:
        """A producer id never handed out before.

        Raises ``OSError`` when the reservation cannot be read or written;
        nothing is handed out then.
        """
        producer_id = self._load()
        if producer_id >= self._block_end:
            block_end = producer_id + self._block_size
            if self._path is not None:
                write_offset(self._path, block_end)
            self._block_end = block_end
        self._next = producer_id + 1
        return producer_id

    def issued(self, producer_id: int) -> bool:
        """Whether ``producer_id`` is one this broker may have handed out (in any run)."""
        return 0 <= producer_id < self._load()
