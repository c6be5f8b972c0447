"""Recovery after the server ends every session of an engine (restart, pg_terminate_backend).

The pool does not ping at checkout (db/engine.py): a connection asyncpg has seen close is replaced
at checkout, and one that died unseen fails its first statement, which makes SQLAlchemy drop the
whole pool. Either way the queue keeps working and a worker keeps running jobs.

Only the sessions of the engine under test are terminated (found by an application_name of their
own): the test database is shared with other test runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db import create_engine
from mailtide.db.engine import _discard_closed_connections
from mailtide.queue import Job, JobContext, JobQueue, JobSpec, LocalWakeUp, Worker

SEEN, UNSEEN = "seen", "unseen"  # whether asyncpg noticed the closed socket before the next checkout


def require_postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("terminating server sessions is a PostgreSQL scenario")


def tagged_url(database_url: str, application_name: str) -> str:
    """The URL with an application_name, which makes this engine's sessions easy to find."""
    url = make_url(database_url)
    options = f"{url.query.get('options', '')} -capplication_name={application_name}".strip()
    return url.update_query_dict({"options": options}).render_as_string(hide_password=False)


async def terminate_sessions(admin: AsyncEngine, application_name: str) -> int:
    """End every server session of that application, from another connection; waits until they are gone."""
    async with admin.connect() as conn:
        ended = await conn.execute(
            sa.text("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name},
        )
        return sum(1 for (terminated,) in ended if terminated)


@pytest.fixture
async def tagged(url_engine: AsyncEngine, database_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """A second engine on the migrated database, with an application_name of its own."""
    name = f"mt_reconnect_{uuid.uuid4().hex[:8]}"
    engine = create_engine(tagged_url(database_url, name))
    yield engine, name
    await engine.dispose()


def forget_closed_connection_check(engine: AsyncEngine) -> None:
    """Make every dead connection go unseen until a statement fails on it (as after a network failure)."""
    event.remove(engine.sync_engine, "checkout", _discard_closed_connections)


@pytest.mark.parametrize("death", [SEEN, UNSEEN])
async def test_queue_operations_recover_after_the_server_ends_every_session(
    backend: str, tagged: tuple[AsyncEngine, str], url_engine: AsyncEngine, death: str
) -> None:
    require_postgresql(backend)
    engine, name = tagged
    queue = JobQueue(engine, wakeup=LocalWakeUp())
    await asyncio.gather(*(queue.enqueue(JobSpec("t")) for _ in range(4)))  # several pooled connections
    if death == UNSEEN:
        forget_closed_connection_check(engine)
    assert await terminate_sessions(url_engine, name) >= 2

    try:
        first, _ = await queue.enqueue(JobSpec("t", {"n": 1}))
    except DBAPIError as exc:
        # Only a connection that died unseen may fail, and only this once: it invalidates the pool.
        assert death == UNSEEN and exc.connection_invalidated
    else:
        assert (await queue.get(first.id)) == first
    second, created = await queue.enqueue(JobSpec("t", {"n": 2}))
    assert created and (await queue.get(second.id)) == second
    many = await queue.enqueue_many([JobSpec("t", {"n": n}) for n in range(3, 6)])
    claimed = await queue.claim("w", limit=20)
    assert {j.id for j in many} | {second.id} <= {j.id for j in claimed}
    assert await queue.complete_many(claimed) == {j.id for j in claimed}


@pytest.mark.parametrize("death", [SEEN, UNSEEN])
async def test_worker_keeps_running_jobs_after_the_server_ends_its_sessions(
    backend: str, tagged: tuple[AsyncEngine, str], url_engine: AsyncEngine, death: str
) -> None:
    require_postgresql(backend)
    engine, name = tagged
    queue = JobQueue(engine)  # LISTEN/NOTIFY: its listening session is terminated too
    producer = JobQueue(url_engine, wakeup=LocalWakeUp())  # "another process", untouched
    done: asyncio.Queue[int] = asyncio.Queue()

    async def note(job: Job, ctx: JobContext) -> None:
        await ctx.step("ran")
        done.put_nowait(job.id)

    async def all_completed(expected: int) -> None:
        deadline = time.monotonic() + 30
        while (await producer.counts()).get("completed", {}).get("note", 0) < expected:
            assert time.monotonic() < deadline, await producer.counts()
            await asyncio.sleep(0.05)

    worker = Worker(queue, {"note": note}, concurrency=4, poll_seconds=0.1)
    runner = asyncio.create_task(worker.run())
    try:
        await producer.enqueue_many([JobSpec("note") for _ in range(4)])
        await all_completed(4)
        if death == UNSEEN:
            forget_closed_connection_check(engine)
        assert await terminate_sessions(url_engine, name) >= 2

        # A claim that meets a dead connection is logged and tried again at the next poll.
        await producer.enqueue_many([JobSpec("note") for _ in range(6)])
        await all_completed(10)
        assert not runner.done()
        assert worker.stats.completed == 10
    finally:
        await worker.stop(5)
        await queue.close()
    assert runner.done() and runner.exception() is None
