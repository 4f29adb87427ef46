"""A small async database layer: SQLite by default, PostgreSQL by URL.

Both speak the same surface (:class:`SqlTransaction`: ``execute``, ``fetchone``,
``fetchall``, ``executemany`` with ``?`` placeholders), so the idempotency records, the
outbox and a service's own tables work on either.

URLs::

    sqlite:///relative/path.db          (SQLAlchemy's convention: three slashes)
    sqlite:////absolute/path.db
    sqlite:///path.db?synchronous=full  (fsync every commit; default NORMAL)
    sqlite://                           (in memory, for tests)
    postgresql://user@host:5432/db?options=-csearch_path%3Dmy_schema

**SQLite and the event loop** (measured in docs/decisions/0005-framework-database.md):
a point query takes ~2 us and a whole BEGIN/INSERT/COMMIT ~15 us in WAL mode with
``synchronous=NORMAL``, while handing one statement to a worker thread costs ~80-100 us.
So statements run on the event loop; only a commit that fsyncs
(``synchronous=FULL``/``EXTRA``) goes to a worker thread. Transactions are serialized in
process (SQLite has one writer) and take the write lock up front (``BEGIN IMMEDIATE``);
when another process holds it, the wait is an ``asyncio.sleep`` loop rather than
SQLite's blocking busy handler.

``synchronous=NORMAL`` in WAL mode survives a process crash (the case at-least-once
delivery is built for) and may lose the last commits on power loss, like the embedded
broker's default of relying on the page cache.

**Checkpoints off the loop.** SQLite copies the write-ahead log back into the database
(a checkpoint, which fsyncs) from inside a ``COMMIT`` once the log passes 1,000 pages;
that stalled the event loop for the length of an fsync every few hundred transactions.
Here automatic checkpoints are off, and a second connection checkpoints in a worker
thread, between two transactions, after every ``_CHECKPOINT_EVERY`` commits and at
close; transactions wait for it without blocking the loop, and the log then starts
over instead of growing.

PostgreSQL uses psycopg 3's async connections from a small pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from rivulet.framework._errors import ConfigurationError, FrameworkError
from rivulet.framework._sql import qmark_to_pyformat

__all__ = [
    "Database",
    "DatabaseError",
    "Dialect",
    "Params",
    "PostgresDatabase",
    "Row",
    "SqlTransaction",
    "SqliteDatabase",
    "open_database",
]

Dialect = Literal["sqlite", "postgresql"]
Row = tuple[Any, ...]
Params = Sequence[Any]

#: Commits between two checkpoints of a SQLite database (see the module docstring).
_CHECKPOINT_EVERY = 500


class DatabaseError(FrameworkError):
    """The database could not be reached or locked in time."""


class SqlTransaction(ABC):
    """An open database transaction; statements use ``?`` placeholders on every database."""

    dialect: Dialect

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed (-1 when unknown)."""

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        """Run one statement for each parameter row."""

    @abstractmethod
    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of a query, or ``None``."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of a query."""


class Database(ABC):
    """A database the framework keeps its tables in (and lends to handlers)."""

    dialect: Dialect

    @abstractmethod
    async def open(self) -> None:
        """Connect (idempotent)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; open transactions must have ended."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[SqlTransaction]:
        """A transaction committed when the block exits normally, rolled back otherwise."""


# --------------------------------------------------------------------------- SQLite


class _SqliteTransaction(SqlTransaction):
    dialect: Dialect = "sqlite"

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = self._conn.execute(sql, params).fetchall()
        return rows


class SqliteDatabase(Database):
    """SQLite through the standard library, one file per service (WAL mode)."""

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        lock_timeout_s: float = 10.0,
    ) -> None:
        synchronous = synchronous.upper()
        if synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigurationError(
                f"SQLite synchronous={synchronous!r}: use off, normal, full or extra"
            )
        self.path = str(path)
        self.synchronous = synchronous
        self.lock_timeout_s = lock_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        # Commits that fsync go to a thread; cheaper ones stay on the loop.
        self._commit_in_thread = synchronous in {"FULL", "EXTRA"}
        # The checkpointing connection (used only in worker threads), and its progress.
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpointing: asyncio.Future[None] | None = None
        self._commits = 0

    async def open(self) -> None:
        if self._conn is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # No busy handler: waiting for another process's lock must not block the loop.
        conn.execute("PRAGMA busy_timeout=0")
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False
            )
            self._checkpointer.execute("PRAGMA busy_timeout=1000")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn

    async def close(self) -> None:
        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        if self._conn is not None:
            async with self._lock:
                if self._checkpointer is not None:
                    await asyncio.to_thread(_checkpoint, self._checkpointer, "TRUNCATE")
                    self._checkpointer.close()
                    self._checkpointer = None
                self._conn.close()
                self._conn = None

    def _committed(self) -> None:
        self._commits += 1
        if self._commits < _CHECKPOINT_EVERY or self._checkpointer is None:
            return
        if self._checkpointing is not None and not self._checkpointing.done():
            return  # the previous one is still copying; the next commit asks again
        self._commits = 0
        self._checkpointing = asyncio.ensure_future(self._checkpoint_between_transactions())

    async def _checkpoint_between_transactions(self) -> None:
        # Between transactions (the lock), so the checkpoint copies the whole log and the
        # next commit starts it over instead of growing it. Transactions wait for it
        # asynchronously; the loop runs on.
        async with self._lock:
            if self._checkpointer is not None:
                await _uncancellable(asyncio.to_thread(_checkpoint, self._checkpointer, "RESTART"))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._lock:
            conn = self._connection()
            await self._begin(conn)
            try:
                yield _SqliteTransaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                if self._commit_in_thread:
                    await _uncancellable(asyncio.to_thread(conn.execute, "COMMIT"))
                else:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._committed()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise DatabaseError("the database is not open: call open() (the app does at start)")
        return self._conn

    async def _begin(self, conn: sqlite3.Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lock_timeout_s
        delay = 0.001
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if loop.time() >= deadline:
                    raise DatabaseError(
                        f"SQLite database {self.path} stayed locked by another process for "
                        f"{self.lock_timeout_s:g} s; is another service using the same file?"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            else:
                return


def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
    """Copy the write-ahead log into the database (in a worker thread)."""
    # Busy: the log stays, and the next checkpoint copies it.
    with contextlib.suppress(sqlite3.OperationalError):
        conn.execute(f"PRAGMA wal_checkpoint({mode})")


async def _uncancellable(work: Awaitable[Any]) -> None:
    # A commit running in a thread cannot be stopped; leaving before it ends would let
    # the next transaction start on the connection while it is still committing.
    future = asyncio.ensure_future(work)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
    future.result()
    if cancelled:
        raise asyncio.CancelledError


# ----------------------------------------------------------------------- PostgreSQL


class _PostgresTransaction(SqlTransaction):
    dialect: Dialect = "postgresql"

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._conn.execute(qmark_to_pyformat(sql), params)
        rowcount: int = cursor.rowcount
        return rowcount

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(qmark_to_pyformat(sql), list(rows))

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        cursor = await self._conn.execute(qmark_to_pyformat(sql), params)
        row: Row | None = await cursor.fetchone()
        return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = await self._conn.execute(qmark_to_pyformat(sql), params)
        rows: list[Row] = await cursor.fetchall()
        return rows


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3 (async), with a small connection pool."""

    dialect: Dialect = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 4) -> None:
        if max_connections < 1:
            raise ConfigurationError("PostgreSQL max_connections must be at least 1")
        self.url = url
        self.max_connections = max_connections
        self._idle: list[Any] = []
        self._count = 0
        self._available = asyncio.Condition()
        self._closed = False

    async def open(self) -> None:
        self._closed = False
        async with self._available:
            if self._count == 0:
                self._idle.append(await self._connect())
                self._count = 1

    async def close(self) -> None:
        async with self._available:
            self._closed = True
            for conn in self._idle:
                await conn.close()
            self._count -= len(self._idle)
            self._idle.clear()

    async def _connect(self) -> Any:
        import psycopg  # noqa: PLC0415 - only services configured for PostgreSQL need it

        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to PostgreSQL: {exc}".strip()) from exc

    async def _acquire(self) -> Any:
        async with self._available:
            while True:
                if self._closed:
                    raise DatabaseError("the database is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.max_connections:
                    self._count += 1
                    break
                await self._available.wait()
        try:
            return await self._connect()
        except BaseException:
            async with self._available:
                self._count -= 1
                self._available.notify()
            raise

    async def _release(self, conn: Any) -> None:
        async with self._available:
            if conn.closed or conn.broken or self._closed:
                self._count -= 1
                if not conn.closed:
                    await conn.close()
            else:
                self._idle.append(conn)
            self._available.notify()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        conn = await self._acquire()
        try:
            async with conn.transaction():
                yield _PostgresTransaction(conn)
        finally:
            await self._release(conn)


def open_database(url: str) -> Database:
    """The database for a URL (not yet connected: call :meth:`Database.open`).

    >>> open_database("sqlite:///data/inventory.db").path
    'data/inventory.db'
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in {"postgresql", "postgres"}:
        return PostgresDatabase(url)
    if scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        query = parse_qs(parts.query)
        synchronous = query.get("synchronous", ["NORMAL"])[-1]
        return SqliteDatabase(path or ":memory:", synchronous=synchronous)
    raise ConfigurationError(
        f"unsupported database URL {url!r}: use sqlite:///path.db or postgresql://host/db"
    )
