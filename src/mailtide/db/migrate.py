"""Apply the alembic migrations shipped inside the package, programmatically.

No alembic.ini is needed: the Config is built here with script_location inside the package.
Migrating is safe to call at every start: a current database is left alone, and two processes
starting together serialise on a lock (SQLite: the write lock taken by BEGIN IMMEDIATE;
PostgreSQL: a transaction-scoped advisory lock), so the second one finds the work done.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.db.engine import create_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """An alembic Config pointing at the packaged migrations (optionally bound to a connection)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision shipped with this version of mailtide."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _current_revision_sync(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade_head_sync(connection: sa.Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def _lock_for_migration(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        # Keyed by schema so isolated schemas (tests, several tenants) do not wait on each other.
        await connection.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext('mailtide.migrate:' || coalesce(current_schema(), '')))")
        )
    # SQLite: the engine's BEGIN IMMEDIATE already holds the database's single write lock.


async def migrate(engine_or_url: AsyncEngine | str) -> None:
    """Upgrade the database to the newest revision; a no-op when it is already there."""
    owned = isinstance(engine_or_url, str)
    engine = create_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    head = head_revision()
    try:
        async with engine.begin() as connection:
            await _lock_for_migration(connection)
            # Read under the lock: a concurrent starter may have just finished the same upgrade.
            before = await connection.run_sync(_current_revision_sync)
            if before == head:
                logger.debug("db.migrate_skipped revision=%s", head)
                return
            logger.info("db.migrate_started from=%s to=%s", before, head)
            await connection.run_sync(_upgrade_head_sync)
        logger.info("db.migrate_finished revision=%s", head)
    finally:
        if owned:
            await engine.dispose()


def upgrade_database(database_url: str) -> None:
    """Synchronous entry point (CLI start-up): migrate the database at `database_url`."""
    asyncio.run(migrate(database_url))


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revision_sync)


async def is_up_to_date(engine: AsyncEngine) -> bool:
    """True when the database is at the newest revision (for a readiness check)."""
    return await current_revision(engine) == head_revision()
