from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db import create_engine, current_revision, head_revision, is_up_to_date, migrate, upgrade_database
from mailtide.db.schema import jobs, metadata
from mailtide.db.testing import empty_database_url


def _diff(connection: sa.Connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


async def test_migrated_schema_equals_metadata(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        tables = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
    assert set(metadata.tables) <= tables
    assert await current_revision(engine) == head_revision()
    assert await is_up_to_date(engine)


async def test_partial_unique_indexes_exist_on_the_backend(engine: AsyncEngine) -> None:
    now = time.time()
    row = {"type": "t", "payload": {}, "not_before": now, "created_at": now, "idempotency_key": "k", "lane": "L"}
    async with engine.begin() as conn:
        # Finished jobs do not hold a key or a lane.
        await conn.execute(sa.insert(jobs), [{**row, "state": "completed"}, {**row, "state": "failed"}])
        await conn.execute(sa.insert(jobs), [{**row, "state": "running", "idempotency_key": "k"}])
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(jobs), [{**row, "state": "queued", "lane": None}])
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.insert(jobs), [{**row, "state": "running", "idempotency_key": "other"}])


async def test_migrating_twice_is_a_no_op(engine: AsyncEngine) -> None:
    now = time.time()
    async with engine.begin() as conn:
        await conn.execute(sa.insert(jobs).values(type="keep", payload={}, not_before=now, created_at=now))
    await migrate(engine)
    await migrate(engine)
    assert await current_revision(engine) == head_revision()
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one() == 1


async def test_fresh_database_is_not_up_to_date(backend: str, postgres_base_url: str, tmp_path: Path) -> None:
    async with empty_database_url(backend, tmp_path, postgres_url=postgres_base_url) as url:
        engine = create_engine(url)
        try:
            assert await current_revision(engine) is None
            assert not await is_up_to_date(engine)
        finally:
            await engine.dispose()


async def test_concurrent_starters_migrate_once(backend: str, postgres_base_url: str, tmp_path: Path) -> None:
    async with empty_database_url(backend, tmp_path, postgres_url=postgres_base_url) as url:
        engines = [create_engine(url) for _ in range(3)]
        try:
            await asyncio.gather(*(migrate(engine) for engine in engines))
            assert await current_revision(engines[0]) == head_revision()
            async with engines[0].connect() as conn:
                assert await conn.run_sync(_diff) == []
                versions = (await conn.exec_driver_sql("SELECT count(*) FROM alembic_version")).scalar_one()
            assert versions == 1
        finally:
            for engine in engines:
                await engine.dispose()


def test_upgrade_database_from_sync_code(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'cli.db'}"
    upgrade_database(url)
    upgrade_database(url)

    async def check() -> str | None:
        engine = create_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(check()) == head_revision()
