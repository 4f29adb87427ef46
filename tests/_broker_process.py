"""``rivulet broker`` as a child process, for tests that kill it or must not share pytest's
interpreter with it."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

_LISTENING = re.compile(rb"listening on [^ ]+:(\d+)")


@contextmanager
def broker_process(
    data_dir: Path,
    log: Path,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Run ``rivulet broker`` on a free port, its output in ``log``; yield it and its address.

    The test fails, showing the log, if the broker exits or has not said where it
    listens within 30 s. The broker is killed when the block ends (if it is still running).
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "rivulet.cli.main", "broker",
                "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *options,
            ],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        started = time.monotonic()
        while (port := _LISTENING.search(log.read_bytes())) is None:
            if process.poll() is not None:
                pytest.fail(f"the broker exited ({process.returncode}):\n{_text(log)}")
            if time.monotonic() - started > 30:
                pytest.fail(f"the broker did not start in 30 s:\n{_text(log)}")
            time.sleep(0.05)
        yield process, f"127.0.0.1:{int(port.group(1))}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _text(log: Path) -> str:
    return log.read_text(errors="replace")
