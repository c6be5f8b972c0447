"""Queue fixtures. `backend`, `engine`, `database_url` and `postgres_url` come from tests/conftest.py
(a migrated SQLite file or a fresh PostgreSQL schema per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db import create_engine, migrate
from mailtide.db.schema import jobs
from mailtide.queue import JobQueue

SetJobColumns = Callable[..., Awaitable[None]]


@pytest.fixture
async def queue(engine: AsyncEngine) -> AsyncIterator[JobQueue]:
    """The queue with the wake-up of its backend (PostgreSQL: LISTEN/NOTIFY)."""
    job_queue = JobQueue(engine)
    yield job_queue
    await job_queue.close()


@pytest.fixture
def set_job_columns(engine: AsyncEngine) -> SetJobColumns:
    """Write job columns directly, to simulate time passing or a worker going silent."""

    async def write(job_id: int, **values: Any) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(**values))

    return write


@pytest.fixture
async def url_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on `database_url`, for tests that open more engines (or processes) on
    the same database. (`engine` is a database of its own.)"""
    migrated = create_engine(database_url)
    await migrate(migrated)
    yield migrated
    await migrated.dispose()


StatementsSent = Callable[[AsyncEngine], AbstractContextManager[list[str]]]


@pytest.fixture
def statements_sent() -> StatementsSent:
    """`with statements_sent(engine) as sent:` collects the SQL the engine sends in the block."""

    @contextmanager
    def collect(engine: AsyncEngine) -> Iterator[list[str]]:
        sent: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            sent.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            yield sent
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)

    return collect
