"""The database layer: one test body for SQLite and PostgreSQL, plus each one's specifics."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rivulet.framework._db import (
    Database,
    DatabaseError,
    PostgresDatabase,
    SqliteDatabase,
    open_database,
)
from rivulet.framework._errors import ConfigurationError
from rivulet.framework._sql import count_placeholders, qmark_to_pyformat


async def test_statements_with_placeholders_literals_and_bytes(database: Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE stock (sku TEXT PRIMARY KEY, qty INTEGER, blob BYTEA)")
        await tx.executemany(
            "INSERT INTO stock (sku, qty, blob) VALUES (?, ?, ?)",
            [("a", 1, b"\x00\xff"), ("b%", 2, b"")],
        )
        changed = await tx.execute("UPDATE stock SET qty = qty + ? WHERE sku LIKE 'a%'", (10,))
        assert changed == 1
    async with database.transaction() as tx:
        rows = await tx.fetchall(
            "SELECT sku, qty, blob, '?' FROM stock WHERE qty > ? ORDER BY sku", (0,)
        )
        assert [(sku, qty, bytes(blob), mark) for sku, qty, blob, mark in rows] == [
            ("a", 11, b"\x00\xff", "?"),
            ("b%", 2, b"", "?"),
        ]
        assert await tx.fetchone("SELECT qty FROM stock WHERE sku = ?", ("missing",)) is None


async def test_an_exception_rolls_the_transaction_back(database: Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE t (n INTEGER)")

    async def failing_handler() -> None:
        async with database.transaction() as tx:
            await tx.execute("INSERT INTO t (n) VALUES (?)", (1,))
            raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError, match="handler failed"):
        await failing_handler()
    async with database.transaction() as tx:
        assert await tx.fetchone("SELECT COUNT(*) FROM t") == (0,)


async def test_concurrent_transactions_do_not_lose_updates(database: Database) -> None:
    async with database.transaction() as tx:
        await tx.execute("CREATE TABLE counter (n INTEGER)")
        await tx.execute("INSERT INTO counter (n) VALUES (0)")

    async def increment() -> None:
        async with database.transaction() as tx:
            # FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers.
            lock = " FOR UPDATE" if tx.dialect == "postgresql" else ""
            row = await tx.fetchone(f"SELECT n FROM counter{lock}")
            assert row is not None
            await asyncio.sleep(0)  # let the others interleave
            await tx.execute("UPDATE counter SET n = ?", (row[0] + 1,))

    await asyncio.gather(*(increment() for _ in range(10)))
    async with database.transaction() as tx:
        assert await tx.fetchone("SELECT n FROM counter") == (10,)


async def test_sqlite_waits_for_another_process_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    db = SqliteDatabase(path)
    await db.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with db.transaction() as tx:
                await tx.execute("CREATE TABLE t (n INTEGER)")

        task = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):  # the loop keeps running while the task waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert not task.done()
        other.execute("ROLLBACK")
        await task
        assert ticks == 20
    finally:
        other.close()
        await db.close()


async def test_sqlite_lock_timeout_names_the_cause(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    db = SqliteDatabase(path, lock_timeout_s=0.05)
    await db.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseError, match="another service"):
            async with db.transaction():
                pass
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.close()


async def test_sqlite_full_sync_commits_in_a_thread(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'full.db'}?synchronous=full")
    assert isinstance(db, SqliteDatabase)
    assert db.synchronous == "FULL"
    await db.open()
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (n INTEGER)")
            await tx.execute("INSERT INTO t VALUES (1)")
        async with db.transaction() as tx:
            assert await tx.fetchone("SELECT n FROM t") == (1,)
    finally:
        await db.close()


async def test_using_a_closed_database_says_what_to_do(tmp_path: Path) -> None:
    db = SqliteDatabase(tmp_path / "x.db")
    with pytest.raises(DatabaseError, match="open"):
        async with db.transaction():
            pass


async def test_unreachable_postgres_is_a_database_error() -> None:
    db = PostgresDatabase("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")
    with pytest.raises(DatabaseError, match="cannot connect"):
        await db.open()


def test_database_urls() -> None:
    assert isinstance(open_database("postgresql://h/db"), PostgresDatabase)
    assert isinstance(open_database("postgres://h/db"), PostgresDatabase)
    relative = open_database("sqlite:///data/x.db")
    assert isinstance(relative, SqliteDatabase)
    assert relative.path == "data/x.db"
    absolute = open_database("sqlite:////var/lib/x.db")
    assert isinstance(absolute, SqliteDatabase)
    assert absolute.path == "/var/lib/x.db"
    memory = open_database("sqlite://")
    assert isinstance(memory, SqliteDatabase)
    assert memory.path == ":memory:"
    with pytest.raises(ConfigurationError, match="unsupported database URL"):
        open_database("mysql://h/db")
    with pytest.raises(ConfigurationError, match="synchronous"):
        open_database("sqlite:///x.db?synchronous=sometimes")


def unescape(pyformat: str) -> str:
    out, i = [], 0
    while i < len(pyformat):
        pair = pyformat[i : i + 2]
        if pair == "%s":
            out.append("?")
            i += 2
        elif pair == "%%":
            out.append("%")
            i += 2
        else:
            assert pyformat[i] != "%", "a lone % reached psycopg"
            out.append(pyformat[i])
            i += 1
    return "".join(out)


fragments = st.sampled_from(
    [
        *("SELECT", " ", "?", "%", "a", ",", "x$y"),
        *("'it''s ? %'", '"col?"', "-- c ? %\n", "/* ? % */", "$$ ? % $$", "$t$?$t$"),
    ]
)


@given(st.lists(fragments, max_size=20))
def test_placeholder_rewriting_round_trips(parts: list[str]) -> None:
    sql = " ".join(parts)  # PostgreSQL reads a$$ as one identifier: keep tokens apart
    rewritten = qmark_to_pyformat(sql)
    assert unescape(rewritten) == sql
    bare = sum(1 for p in parts if p == "?")
    assert count_placeholders(sql) == bare
    assert rewritten.count("%s") - sql.count("%s") >= bare


async def test_rewritten_placeholders_reach_postgres_correctly(postgres_url: str) -> None:
    db = open_database(postgres_url)
    await db.open()
    try:
        async with db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT ?::int + 1, 'a?b', '100%', $$x?%$$ -- trailing ? %\n", (41,)
            )
            assert row == (42, "a?b", "100%", "x?%")
    finally:
        await db.close()


async def test_sqlite_checkpoints_off_the_loop_and_empties_the_log_at_close(
    tmp_path: Path,
) -> None:
    # SQLite's automatic checkpoint (an fsync inside COMMIT) is off: commits made
    # without yielding to the loop all stay in the log. The database's own checkpointer
    # copies the log back, between transactions, once the loop runs it, so the log is
    # then reused instead of growing; it is empty once the database is closed.
    path = tmp_path / "busy.db"
    wal = tmp_path / "busy.db-wal"
    db = SqliteDatabase(path)
    await db.open()

    def frames() -> int:
        return wal.stat().st_size // (4096 + 24)

    async def commit(n: int) -> None:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?, ?)", (n, "x" * 200))

    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, payload TEXT)")
        for n in range(1_200):  # no await that yields: no checkpoint can run
            await commit(n)
        assert frames() >= 1_200, "a COMMIT checkpointed on the loop"
        for _ in range(100):  # now the checkpointer runs
            await asyncio.sleep(0.01)
        for n in range(1_200, 3_000):
            await commit(n)
            if n % 100 == 0:
                await asyncio.sleep(0.001)
        # Without checkpoints the log would hold over 3,000 frames by now.
        assert frames() < 2_000, f"{frames()} frames in the log after 3,000 commits"
    finally:
        await db.close()
    assert wal.stat().st_size == 0 if wal.exists() else True
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (3_000,)
