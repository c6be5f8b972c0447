"""Helpers for tests that need a real, migrated database (SQLite file or PostgreSQL schema).

PostgreSQL isolation: each database gets a fresh schema (`mt_<random>`) reached through the
URL's libpq ``options=-csearch_path=...``, dropped afterwards, so parallel runs and reruns never
collide. The URL works anywhere a database URL does (engines, subprocesses, MAILTIDE_DATABASE_URL).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.engine import create_engine
from mailtide.db.migrate import migrate

DEFAULT_POSTGRES_TEST_URL = "postgresql://postgres@127.0.0.1:5432/test"


async def postgres_unavailable_reason(base_url: str = DEFAULT_POSTGRES_TEST_URL) -> str | None:
    """None when a PostgreSQL server answers at `base_url`, else why not."""
    engine = create_engine(base_url)
    try:
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure means "no usable server"
        return f"no PostgreSQL server at {base_url}: {type(exc).__name__}: {exc}"
    finally:
        await engine.dispose()
    return None


def with_search_path(base_url: str, schema: str) -> str:
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}options={quote(f'-csearch_path={schema}')}"


@asynccontextmanager
async def postgres_schema_url(base_url: str = DEFAULT_POSTGRES_TEST_URL) -> AsyncIterator[str]:
    """A URL bound to a new empty schema, dropped (with everything in it) on exit."""
    schema = f"mt_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url)
    try:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        yield with_search_path(base_url, schema)
    finally:
        async with admin.begin() as connection:
            await connection.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@asynccontextmanager
async def empty_database_url(backend: str, directory: Path, *, postgres_url: str = DEFAULT_POSTGRES_TEST_URL
                             ) -> AsyncIterator[str]:
    """The URL of a new empty database: a SQLite file in `directory` or a fresh PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'mailtide-{uuid.uuid4().hex[:8]}.db'}"
    elif backend == "postgresql":
        async with postgres_schema_url(postgres_url) as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}")


@asynccontextmanager
async def migrated_engine(backend: str, directory: Path, *, postgres_url: str = DEFAULT_POSTGRES_TEST_URL
                          ) -> AsyncIterator[AsyncEngine]:
    """An engine on a new database with all migrations applied; disposed on exit."""
    async with empty_database_url(backend, directory, postgres_url=postgres_url) as url:
        engine = create_engine(url)
        try:
            await migrate(engine)
            yield engine
        finally:
            await engine.dispose()
