from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from mailtide.db import sqlite as sqlite_setup
from mailtide.db.engine import (
    Database,
    UnsupportedDatabaseURL,
    _postgres_connect_args,
    create_engine,
    to_async_url,
)
from mailtide.db.migrate import migrate


def test_urls_map_to_async_drivers() -> None:
    assert to_async_url("sqlite:///data/m.db").drivername == "sqlite+aiosqlite"
    assert to_async_url("sqlite:////abs/m.db").database == "/abs/m.db"
    assert to_async_url("postgresql://u@h:5432/db").drivername == "postgresql+asyncpg"
    pg = to_async_url("postgres://u:secret@h/db")
    assert (pg.drivername, pg.username, pg.host, pg.database) == ("postgresql+asyncpg", "u", "h", "db")
    with pytest.raises(UnsupportedDatabaseURL):
        to_async_url("mysql://u@h/db")


def test_libpq_options_become_asyncpg_arguments() -> None:
    url = to_async_url("postgresql://u@h/db?options=-csearch_path%3Dtenant_a&sslmode=require")
    clean, connect_args = _postgres_connect_args(url)
    assert dict(clean.query) == {}
    assert connect_args == {"ssl": "require", "server_settings": {"search_path": "tenant_a"}}


async def test_sqlite_pragmas_and_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "m.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
        assert path.exists()
        # busy_timeout 0: lock waits happen on the event loop (see mailtide.db.sqlite).
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 0, "synchronous": 1}
    finally:
        await engine.dispose()


async def test_database_wrapper(tmp_path: Path) -> None:
    database = Database.from_url(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        assert database.is_sqlite and not database.is_postgresql
        assert database.dialect_name == "sqlite"
    finally:
        await database.dispose()


async def test_sqlite_read_then_write_transactions_never_hit_database_locked(tmp_path: Path) -> None:
    """With a deferred BEGIN, a reader that later writes fails with SQLITE_BUSY as soon as another
    connection wrote in between (busy_timeout does not help). BEGIN IMMEDIATE makes them queue."""
    url = f"sqlite:///{tmp_path / 'contention.db'}"
    engines = [create_engine(url) for _ in range(3)]
    try:
        async with engines[0].begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
            await conn.exec_driver_sql("INSERT INTO counter VALUES (0)")

        async def increment(engine: sa.ext.asyncio.AsyncEngine) -> None:
            async with engine.begin() as conn:
                value = (await conn.exec_driver_sql("SELECT n FROM counter")).scalar_one()
                await asyncio.sleep(0.001)  # let the other connections interleave
                await conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": value + 1})

        await asyncio.gather(*(increment(engines[i % 3]) for i in range(60)))
        async with engines[0].connect() as conn:
            # Serialised read-modify-write: no lost update either.
            assert (await conn.exec_driver_sql("SELECT n FROM counter")).scalar_one() == 60
    finally:
        for engine in engines:
            await engine.dispose()


async def test_postgres_search_path_from_url(postgres_url: str) -> None:
    from mailtide.db.testing import postgres_schema_url

    async with postgres_schema_url(postgres_url) as url:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                schema = (await conn.exec_driver_sql("SELECT current_schema()")).scalar_one()
            assert schema.startswith("mt_")
        finally:
            await engine.dispose()


async def test_transactions_wait_for_a_lock_held_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "held.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        # Another process (here: a plain sqlite3 connection) holds the write lock for a while.
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, other.execute, "COMMIT")
        started = time.monotonic()
        async with engine.begin() as conn:
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert time.monotonic() - started >= 0.25
        other.close()
    finally:
        await engine.dispose()


async def test_lock_wait_gives_up_after_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_setup, "LOCK_TIMEOUT_SECONDS", 0.2)
    path = tmp_path / "stuck.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER)")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            async with engine.begin() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        other.execute("ROLLBACK")
        other.close()
        async with engine.begin() as conn:  # the engine is fine afterwards
            await conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    finally:
        await engine.dispose()


async def test_many_processes_starting_on_a_new_file_never_stall(tmp_path: Path) -> None:
    """Regression: with SQLite's own busy handler, concurrent starters froze the event loop for
    the whole busy timeout (a GC-finalised cursor blocked on a connection mutex held by the
    busy handler, while holding the GIL)."""
    for round_number in range(5):
        url = f"sqlite:///{tmp_path / f'start-{round_number}.db'}"
        engines = [create_engine(url) for _ in range(6)]
        try:
            async with asyncio.timeout(20):
                await asyncio.gather(*(migrate(engine) for engine in engines))
        finally:
            for engine in engines:
                await engine.dispose()


async def test_garbage_collection_during_a_lock_wait_does_not_freeze_the_loop(tmp_path: Path) -> None:
    """A failed statement leaves a driver cursor in a reference cycle. If the collector finalises
    it while its connection waits for a lock inside SQLite (busy handler, connection mutex held),
    the event-loop thread blocks holding the GIL, and the lock holder can never finish."""
    url = f"sqlite:///{tmp_path / 'gc.db'}"
    waiter_engine, holder_engine = create_engine(url), create_engine(url)
    gc.disable()
    try:
        async with waiter_engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        waiter = await waiter_engine.connect()
        with pytest.raises(sa.exc.IntegrityError):
            async with waiter.begin():
                await waiter.exec_driver_sql("INSERT INTO t VALUES (1)")  # leaves a cursor for gc

        holder = await holder_engine.connect()
        await holder.begin()
        await holder.exec_driver_sql("INSERT INTO t VALUES (2)")

        async def release_soon() -> None:
            await asyncio.sleep(0.3)
            await holder.commit()

        async def wait_for_lock() -> None:
            async with waiter.begin():
                await waiter.exec_driver_sql("INSERT INTO t VALUES (3)")

        started = time.monotonic()
        releaser = asyncio.create_task(release_soon())
        writer = asyncio.create_task(wait_for_lock())
        await asyncio.sleep(0.1)  # the waiter is now waiting for the lock
        gc.collect()
        await asyncio.gather(releaser, writer)
        assert time.monotonic() - started < 5
        await waiter.close()
        await holder.close()
    finally:
        gc.enable()
        await waiter_engine.dispose()
        await holder_engine.dispose()


async def test_in_memory_database_for_sequential_use() -> None:
    engine = create_engine("sqlite:///:memory:")
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO credentials (client_id, refresh_token, created_at) VALUES ('c', 'r', 0)"
            )
        async with engine.connect() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM credentials")).scalar_one() == 1
    finally:
        await engine.dispose()
