"""Fixtures for the framework's tests: one database fixture for SQLite and PostgreSQL."""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

import psycopg
import pytest

from rivulet.framework._db import Database, open_database

#: The PostgreSQL server of the project's machines (trust authentication).
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose connections work in a fresh schema, dropped afterwards."""
    schema = f"rivulet_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{POSTGRES_URL}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL of a database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'service.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test body runs against SQLite and PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open database of each kind."""
    db = open_database(database_url)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


def run_cli(module: ModuleType, argv: list[str]) -> int:
    """Run one ``rivulet`` subcommand module as ``rivulet NAME argv...`` would.

    Called directly rather than through ``rivulet.cli.main``, whose registry other
    subcommands being written at the same time may leave unloadable for a while.
    """
    parser = argparse.ArgumentParser(prog=f"rivulet {module.NAME}")
    module.add_arguments(parser)
    status: int = module.run(parser.parse_args(argv))
    return status


#: ``python -c`` code running one subcommand module: ``argv[1]`` names it.
CLI_SCRIPT = (
    "import argparse, importlib, sys\n"
    "m = importlib.import_module(sys.argv[1])\n"
    "p = argparse.ArgumentParser()\n"
    "m.add_arguments(p)\n"
    "sys.exit(m.run(p.parse_args(sys.argv[2:])))\n"
)
