"""Wake-ups: LISTEN/NOTIFY across connections on PostgreSQL, re-LISTEN after a dropped
connection, and the polling fallback on both backends.

"Another process" is another engine here: its own connections and its own in-process wake-up, so
only the database can carry the news (the multi-process tests use real processes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db import create_engine
from mailtide.queue import Job, JobContext, JobQueue, JobSpec, LocalWakeUp, Worker, wakeup_for
from mailtide.queue.pg_listen import PostgresWakeUp

SLEEPY_POLL = 30.0  # workers would only find work by polling after this long


@pytest.fixture
async def two_engines(url_engine: AsyncEngine, database_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    second = create_engine(database_url)
    yield url_engine, second
    await second.dispose()


def started_worker(queue: JobQueue, started: asyncio.Queue[tuple[int, float]], **options: float) -> Worker:
    async def note(job: Job, ctx: JobContext) -> None:
        started.put_nowait((job.id, time.monotonic()))

    return Worker(queue, {"note": note}, heartbeat_seconds=0.5, **options)


def require_postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite wakes in process and polls")


async def test_wakeup_for_picks_the_backends_mechanism(backend: str, url_engine: AsyncEngine) -> None:
    wakeup = wakeup_for(url_engine)
    expected = PostgresWakeUp if backend == "postgresql" else LocalWakeUp
    assert type(wakeup) is expected
    assert type(JobQueue(url_engine).wakeup) is expected
    await wakeup.close()


async def test_notify_from_another_engine_starts_a_job_long_before_the_poll(
    backend: str, two_engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    require_postgresql(backend)
    worker_engine, producer_engine = two_engines
    queue = JobQueue(worker_engine)
    producer = JobQueue(producer_engine, wakeup=LocalWakeUp())  # only NOTIFY can reach the worker
    started: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    worker = started_worker(queue, started, poll_seconds=SLEEPY_POLL)
    runner = asyncio.create_task(worker.run())
    try:
        assert isinstance(queue.wakeup, PostgresWakeUp)
        await queue.wakeup.wait_until_listening(10)
        await asyncio.sleep(0.3)  # the worker has claimed nothing and sleeps on its 30 s poll
        latencies = []
        for _ in range(3):
            enqueued_at = time.monotonic()
            job, _ = await producer.enqueue(JobSpec("note"))
            job_id, started_at = await asyncio.wait_for(started.get(), 10)
            assert job_id == job.id
            latencies.append(started_at - enqueued_at)
            await asyncio.sleep(0.2)
        assert max(latencies) < 5, latencies  # far below the poll interval; typically a few ms
    finally:
        await worker.stop(1)
        await queue.close()
    assert runner.done()


async def test_notify_is_sent_at_commit_not_before(backend: str, two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    require_postgresql(backend)
    listener_engine, producer_engine = two_engines
    listener = PostgresWakeUp(listener_engine)
    producer = JobQueue(producer_engine, wakeup=LocalWakeUp())
    try:
        await listener.wait_until_listening(10)
        while await listener.wait(0.2):
            pass  # consume the wake-up every new LISTEN gives
        async with producer_engine.begin() as conn:
            await producer.enqueue(JobSpec("note"), conn=conn)
            assert not await listener.wait(0.5)  # not yet committed: nobody is told
        assert await listener.wait(5)
    finally:
        await listener.close()


async def test_listen_is_reissued_after_the_connection_is_terminated(
    backend: str, two_engines: tuple[AsyncEngine, AsyncEngine]
) -> None:
    require_postgresql(backend)
    worker_engine, producer_engine = two_engines
    queue = JobQueue(worker_engine)
    producer = JobQueue(producer_engine, wakeup=LocalWakeUp())
    started: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    worker = started_worker(queue, started, poll_seconds=SLEEPY_POLL)
    runner = asyncio.create_task(worker.run())
    wakeup = queue.wakeup
    assert isinstance(wakeup, PostgresWakeUp)
    try:
        await wakeup.wait_until_listening(10)
        first_pid = wakeup.backend_pid
        async with producer_engine.connect() as conn:
            terminated = await conn.scalar(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
        assert terminated

        deadline = time.monotonic() + 15
        while wakeup.sessions < 2 or wakeup.backend_pid is None:
            assert time.monotonic() < deadline, "LISTEN was not re-issued"
            await asyncio.sleep(0.05)
        assert wakeup.backend_pid != first_pid
        await asyncio.sleep(0.5)  # the worker has handled the reconnect wake-up and sleeps again

        job, _ = await producer.enqueue(JobSpec("note"))
        job_id, _ = await asyncio.wait_for(started.get(), 10)  # << the 30 s poll: a NOTIFY did it
        assert job_id == job.id
    finally:
        await worker.stop(1)
        await queue.close()
    assert runner.done()


async def test_polling_finds_work_no_wakeup_announced(two_engines: tuple[AsyncEngine, AsyncEngine]) -> None:
    # Both backends: a worker that hears nothing (local wake-up only) still finds jobs enqueued
    # elsewhere, at its next poll.
    worker_engine, producer_engine = two_engines
    queue = JobQueue(worker_engine, wakeup=LocalWakeUp())
    producer = JobQueue(producer_engine, wakeup=LocalWakeUp())
    started: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    worker = started_worker(queue, started, poll_seconds=0.2)
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.3)
        job, _ = await producer.enqueue(JobSpec("note"))
        job_id, _ = await asyncio.wait_for(started.get(), 10)
        assert job_id == job.id
    finally:
        await worker.stop(1)
    assert runner.done()


async def test_closed_wakeup_releases_its_connection(backend: str, url_engine: AsyncEngine) -> None:
    require_postgresql(backend)
    wakeup = PostgresWakeUp(url_engine)
    await wakeup.wait_until_listening(10)
    pid = wakeup.backend_pid
    await wakeup.close()
    async with url_engine.connect() as conn:
        still_there = await conn.scalar(
            sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
    assert still_there == 0
    with pytest.raises(RuntimeError):
        wakeup.start()
