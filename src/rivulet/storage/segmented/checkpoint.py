"""Small files written atomically: the log start offset checkpoint and markers.

``log-start-offset`` holds one decimal integer and a newline: the offset below
which DeleteRecords made data unreadable. It is written to a ``.tmp`` file,
fsynced, renamed over the old one and the directory fsynced, so after a crash it
holds either the old or the new value, never a torn one.
"""

from __future__ import annotations

import contextlib
import logging
import os

__all__ = ["LOG_START_OFFSET", "fsync_directory", "read_offset", "write_offset"]

LOG_START_OFFSET = "log-start-offset"

_log = logging.getLogger(__name__)


def fsync_directory(directory: str) -> None:
    """Make file creations, renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_offset(path: str, offset: int) -> None:
    """Atomically replace the checkpoint at ``path`` with ``offset``."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, f"{offset}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(path) or ".")


def read_offset(path: str) -> int | None:
    """The checkpointed offset, or ``None`` if there is none or it is unreadable."""
    with contextlib.suppress(FileNotFoundError):
        with open(path, encoding="ascii", errors="replace") as file:
            text = file.read()
        if text.endswith("\n") and text[:-1].isdigit():
            return int(text)
        _log.warning("ignoring unreadable checkpoint %s: %r", path, text[:40])
    return None
