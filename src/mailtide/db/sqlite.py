"""How mailtide drives SQLite through aiosqlite: WAL, BEGIN IMMEDIATE, and waiting for locks.

Three choices, each for a failure seen in practice:

1. Every transaction starts with BEGIN IMMEDIATE. A plain (deferred) BEGIN starts as a reader
   and upgrades on its first write; if another connection wrote in between, the upgrade fails at
   once with "database is locked" (SQLITE_BUSY) whatever the busy timeout. Taking the write lock
   up front makes transactions queue instead, at the price of serialising them, reads included
   (cheap here: transactions are short, and WAL spares the commit from waiting on readers).
   The driver's own transaction handling is switched off (isolation_level=None), as
   SQLAlchemy's pysqlite/aiosqlite docs describe, and the "begin" event emits BEGIN itself.

2. Lock waits happen on the event loop, not inside SQLite: busy_timeout is 0 and the "begin"
   event retries BEGIN IMMEDIATE with short asyncio sleeps, up to LOCK_TIMEOUT_SECONDS.
   SQLite's own busy handler sleeps inside sqlite3_step while holding the connection's mutex.
   If the garbage collector then finalises a stray cursor of that connection (the aiosqlite
   adapter leaves one in a reference cycle after every failed statement), the event-loop thread
   blocks on that mutex while holding the GIL: the whole process stops, including the
   transaction everyone waits for, until the busy timeout expires. With no busy waiting inside
   SQLite, no thread holds a connection mutex for longer than one statement.

3. WAL is switched on when a connection opens (a property of the file: normally only the first
   connection ever does it); the switch, too, waits for locks on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

import aiosqlite
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

LOCK_TIMEOUT_SECONDS = 30.0
FIRST_PAUSE_SECONDS = 0.001
LONGEST_PAUSE_SECONDS = 0.025
WAL_OR_IN_MEMORY = ("wal", "memory")  # an in-memory database has no file to put in WAL mode


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


async def _retry_while_locked(operation: Any, what: str) -> Any:
    """Run `operation()` until it does not fail with SQLITE_BUSY, pausing on the event loop."""
    deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return await operation()
        except sqlite3.OperationalError as exc:
            if not _is_lock_error(exc) or time.monotonic() >= deadline:
                if _is_lock_error(exc):
                    logger.warning("db.sqlite_lock_timeout what=%s waited=%.1fs", what, LOCK_TIMEOUT_SECONDS)
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


async def _execute(connection: aiosqlite.Connection, sql: str) -> list[Any]:
    async with connection.execute(sql) as cursor:
        return list(await cursor.fetchall())


async def _prepare_connection(connection: aiosqlite.Connection) -> None:
    await _execute(connection, "PRAGMA busy_timeout = 0")

    async def switch_to_wal() -> None:
        [(mode,)] = await _execute(connection, "PRAGMA journal_mode")
        if str(mode).lower() not in WAL_OR_IN_MEMORY:
            [(mode,)] = await _execute(connection, "PRAGMA journal_mode = WAL")
            if str(mode).lower() not in WAL_OR_IN_MEMORY:
                raise sqlite3.OperationalError(f"database is locked (journal mode still {mode})")

    await _retry_while_locked(switch_to_wal, "wal_setup")
    await _execute(connection, "PRAGMA synchronous = NORMAL")
    await _execute(connection, "PRAGMA foreign_keys = ON")


async def _begin_immediate(connection: aiosqlite.Connection) -> None:
    async def begin() -> None:
        cursor = await connection.execute("BEGIN IMMEDIATE")
        await cursor.close()

    await _retry_while_locked(begin, "begin_immediate")


def install(engine: AsyncEngine) -> None:
    """Attach the connection set-up and transaction start described above to an aiosqlite engine."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN from the driver
        dbapi_connection.run_async(_prepare_connection)

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        try:
            connection.connection.dbapi_connection.run_async(_begin_immediate)
        except sqlite3.Error as exc:
            # Errors raised in an event skip SQLAlchemy's wrapping; callers expect sa.exc types.
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, exc) from exc
