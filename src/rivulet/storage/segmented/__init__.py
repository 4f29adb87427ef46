"""The durable, segmented partition log (see :mod:`rivulet.storage.segmented.log`).

One concept per module: :mod:`.segment` (a log file and its indexes),
:mod:`.offset_index`, :mod:`.time_index`, :mod:`.recovery`, :mod:`.retention`,
:mod:`.compaction`, :mod:`.checkpoint` and :mod:`.log` (the log itself).
"""

from __future__ import annotations

from rivulet.storage.segmented.log import SegmentedLog, delete_log, open_log

__all__ = ["SegmentedLog", "delete_log", "open_log"]
