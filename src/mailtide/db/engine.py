"""Async engines for SQLite (aiosqlite) and PostgreSQL (asyncpg) from one plain database URL.

Accepted URLs:
- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (parent folders are created);
  ``sqlite:///:memory:`` shares one connection, so use it one transaction at a time (tools, tests)
- ``postgresql://user@host:5432/db`` or ``postgres://...``; libpq-style
  ``?options=-csearch_path%3Dmyschema`` and ``?sslmode=require`` are translated for asyncpg.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from mailtide.db import sqlite

logger = logging.getLogger(__name__)


class InvalidDatabaseURL(ValueError):
    """The database URL cannot be opened as written; the message says why."""


class UnsupportedDatabaseURL(InvalidDatabaseURL):
    """The URL names a backend mailtide does not support."""


def is_sqlite_url(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def to_async_url(database_url: str) -> URL:
    """Translate a plain database URL into the SQLAlchemy async driver URL."""
    raw = database_url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")
    try:
        url = make_url(raw)
    except (exc.ArgumentError, ValueError) as error:  # unparsable, or a port that is not a number
        raise InvalidDatabaseURL(f"not a database URL ({error})") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.host or url.port or url.username or url.password:
            # sqlite://name.db reads "name.db" as a host; SQLAlchemy would only fail at connect time.
            raise InvalidDatabaseURL(
                "a SQLite URL has three slashes before the path: sqlite:///relative.db or sqlite:////abs/path.db"
            )
        return url.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    raise UnsupportedDatabaseURL(f"unsupported database URL {url.render_as_string(hide_password=True)!r}")


def checked_async_url(database_url: str) -> URL:
    """`to_async_url`, plus what can be checked before connecting; raises InvalidDatabaseURL.

    A directory given as the SQLite file is refused here: opening it fails inside aiosqlite's
    thread, which then prints a traceback of its own next to the real error.
    """
    url = to_async_url(database_url)
    path = _sqlite_path(url) if is_sqlite_url(url) else None
    if path is not None and Path(path).expanduser().is_dir():
        raise InvalidDatabaseURL(f"{path} is a directory, not a SQLite database file")
    return url


def _sqlite_path(url: URL) -> str | None:
    """The file path of a SQLite URL, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return database


def _postgres_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """Move libpq-only query options into asyncpg connect arguments."""
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    server_settings: dict[str, str] = {}
    options = query.pop("options", None)
    if options is not None:
        # libpq `options` carries "-c key=value" pairs; asyncpg wants them as server_settings.
        text = options if isinstance(options, str) else " ".join(options)
        tokens = shlex.split(text)
        for index, token in enumerate(tokens):
            setting = None
            if token == "-c" and index + 1 < len(tokens):
                setting = tokens[index + 1]
            elif token.startswith("-c") and len(token) > 2:
                setting = token[2:]
            if setting and "=" in setting:
                key, value = setting.split("=", 1)
                server_settings[key.strip()] = value.strip()
    sslmode = query.pop("sslmode", None)
    if sslmode is not None:
        connect_args["ssl"] = sslmode
    if server_settings:
        connect_args["server_settings"] = server_settings
    return url.set(query=query), connect_args


def create_engine(database_url: str, *, echo: bool = False) -> AsyncEngine:
    """Create an AsyncEngine for a ``sqlite:///`` or ``postgresql://`` URL."""
    url = checked_async_url(database_url)
    if is_sqlite_url(url):
        path = _sqlite_path(url)
        if path is None:
            # One shared connection, or each connection would get its own empty database.
            engine = create_async_engine(url, echo=echo, poolclass=StaticPool)
        else:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # Transactions are serialised by BEGIN IMMEDIATE anyway (see db/sqlite.py); a handful
            # of connections is plenty, and fewer waiters poll for the lock.
            engine = create_async_engine(
                url,
                echo=echo,
                poolclass=AsyncAdaptedQueuePool,
                pool_size=5,
                max_overflow=10,
                pool_timeout=60,
            )
        sqlite.install(engine)
    else:
        url, connect_args = _postgres_connect_args(url)
        # No pool_pre_ping: on asyncpg it costs three round trips (BEGIN, ';', ROLLBACK) at every
        # checkout. Dropped connections are caught without a round trip instead (see
        # _discard_closed_connections), and a statement that still fails with a disconnect error
        # makes SQLAlchemy invalidate the whole pool, so the next checkout connects afresh.
        engine = create_async_engine(
            url,
            echo=echo,
            connect_args=connect_args,
            pool_size=10,
            max_overflow=10,
        )
        event.listen(engine.sync_engine, "checkout", _discard_closed_connections)
    logger.debug("db.engine_created url=%s", url.render_as_string(hide_password=True))
    return engine


def _discard_closed_connections(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout (PostgreSQL): hand out no connection asyncpg already knows is closed.

    When the server ends a session (restart, pg_terminate_backend, idle timeout), asyncpg sees
    the socket close while the connection sits in the pool and marks it closed: a local check,
    no round trip. DisconnectionError makes the pool replace it with a new connection.
    A connection that died unnoticed still fails its first statement; SQLAlchemy then
    invalidates the pool and the caller's retry (a job's next attempt) gets a fresh one.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("connection closed by the server while in the pool")


@dataclass(frozen=True)
class Database:
    """An engine plus what callers ask about it most."""

    engine: AsyncEngine

    @classmethod
    def from_url(cls, database_url: str) -> Database:
        return cls(create_engine(database_url))

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect_name == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        return self.dialect_name == "postgresql"

    async def dispose(self) -> None:
        await self.engine.dispose()
