"""Server processes the benchmark starts, and the ports they listen on.

Every server runs in its own session (process group) so that a Ctrl-C in the
terminal does not reach it: the benchmark decides the order in which servers
stop (Kafka before ZooKeeper), and stops the whole group, never anything it did
not start.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["BenchError", "Server", "free_port", "run_server", "wait_until"]


class BenchError(Exception):
    """The benchmark cannot go on; the message says what to do about it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    what: str, check: Callable[[], bool], timeout_s: float, interval_s: float = 0.1
) -> None:
    """Call ``check`` until it returns true; raise :class:`BenchError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


class Server:
    """A running server process with its output going to a log file."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the log's tail if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise BenchError(
                f"{self.name} exited with status {code}; its log ends with:\n{self.tail()}"
            )

    def cpu_seconds(self) -> float:
        """CPU time (user and system, all threads) the server has used so far (Linux)."""
        # The fields after the command name, which is in parentheses and may hold spaces.
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def port_open(self, port: int) -> bool:
        """Whether the server accepts TCP connections on 127.0.0.1:``port`` (raises if it died)."""
        self.check_alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it has not exited in time."""
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


@contextlib.contextmanager
def run_server(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Server]:
    """Start ``argv`` in a new session and stop it (and its group) when the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    server = Server(name, proc, log)
    try:
        yield server
    finally:
        server.stop()
