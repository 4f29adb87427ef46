"""Random sequences of log operations checked against a plain model.

The model is a list of batches, each a base offset and its record values, plus
the start and end offsets. The segmented log is also closed and reopened, and
"crashed" (its directory copied while open, after a flush, and the copy opened),
at random points: neither may lose or change anything that was appended.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rivulet.protocol.batch import Compression, iter_batches
from rivulet.storage import LogConfig, OffsetOutOfRangeError, PartitionLog
from rivulet.storage.memory import MemoryLog
from rivulet.storage.segmented import SegmentedLog, open_log

from .storage_helpers import batch, read_records, result_bytes

CONFIG = LogConfig(segment_bytes=600, index_interval_bytes=150)

record_values = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@dataclasses.dataclass
class ModelBatch:
    base_offset: int
    values: list[bytes]

    @property
    def last_offset(self) -> int:
        return self.base_offset + len(self.values) - 1


class LogMachine(RuleBasedStateMachine):
    """Drives one log and the model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[ModelBatch] = []
        self.start = 0
        self.end = 0
        self.now = 0
        self.log = self.open()

    def open(self) -> PartitionLog:
        return MemoryLog(CONFIG)

    def teardown(self) -> None:
        self.log.close()

    @rule(values=record_values, codec=st.sampled_from([Compression.NONE, Compression.LZ4]))
    def append(self, values: list[bytes], codec: Compression) -> None:
        self.now += 10
        result = self.log.append(
            batch(values, timestamp=self.now, compression=codec), now_ms=self.now
        )
        assert result.base_offset == self.end
        assert result.last_offset == self.end + len(values) - 1
        self.batches.append(ModelBatch(self.end, values))
        self.end += len(values)

    @rule(data=st.data())
    def read_somewhere(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end))
        limit = data.draw(st.integers(0, 800))
        result = self.log.read(offset, limit)
        bases = [h.base_offset for _, h in iter_batches(result_bytes(result))]
        expected = [b.base_offset for b in self.batches if b.last_offset >= offset]
        assert bases == expected[: len(bases)]
        if offset < self.end:
            assert bases, "the first batch is always returned"

    @rule(data=st.data())
    def read_out_of_range(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([self.end + 1, self.start - 1]))
        if offset < 0:
            return
        try:
            self.log.read(offset, 100)
        except OffsetOutOfRangeError:
            return
        raise AssertionError(f"reading {offset} outside [{self.start}, {self.end}] succeeded")

    @precondition(lambda self: self.end > self.start)
    @rule(data=st.data())
    def delete_records(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end))
        assert self.log.delete_records_before(offset) == offset
        self.start = offset

    @precondition(lambda self: self.end > self.start)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.start, self.end))
        self.log.truncate_to(offset)
        holding = [b for b in self.batches if b.last_offset >= offset]
        cut = min(offset, holding[0].base_offset) if holding else offset
        self.batches = [b for b in self.batches if b.base_offset < cut]
        self.end = max(cut, self.start)

    @invariant()
    def offsets_match(self) -> None:
        assert (self.log.start_offset, self.log.end_offset) == (self.start, self.end)

    @invariant()
    def records_match(self) -> None:
        expected = [
            (b.base_offset + i, v)
            for b in self.batches
            for i, v in enumerate(b.values)
            if b.base_offset + i >= self.start
        ]
        assert [(s.offset, s.value) for s in read_records(self.log)] == expected


class SegmentedLogMachine(LogMachine):
    def open(self) -> PartitionLog:
        self.directory = Path(tempfile.mkdtemp(prefix="rivulet-model-"))
        return open_log(self.directory / "log", CONFIG)

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.directory)

    @rule()
    def reopen(self) -> None:
        self.log.close()
        self.log = open_log(self.directory / "log", CONFIG)

    @rule()
    def crash_and_recover(self) -> None:
        assert isinstance(self.log, SegmentedLog)
        self.log.flush()
        copy = self.directory / f"crash-{self.now}"
        shutil.copytree(self.log.directory, copy)
        self.log.close()
        shutil.rmtree(self.directory / "log")
        copy.rename(self.directory / "log")
        self.log = open_log(self.directory / "log", CONFIG)


TestMemoryLogAgainstModel = LogMachine.TestCase
TestMemoryLogAgainstModel.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
TestSegmentedLogAgainstModel = SegmentedLogMachine.TestCase
TestSegmentedLogAgainstModel.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None
)
