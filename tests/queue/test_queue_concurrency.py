"""Many claimers, one database: every job is handed out exactly once."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db import create_engine, migrate
from mailtide.queue import Job, JobContext, JobQueue, JobSpec, Worker

JOBS = 500


async def _open_queues(database_url: str, count: int) -> list[JobQueue]:
    # One engine each, like separate processes: separate connections, no shared in-process state.
    engines = [create_engine(database_url) for _ in range(count)]
    await asyncio.gather(*(migrate(engine) for engine in engines))
    return [JobQueue(engine) for engine in engines]


async def _close(queues: list[JobQueue]) -> None:
    for queue in queues:
        await queue.close()
        await queue.engine.dispose()


async def test_concurrent_workers_run_each_job_once(database_url: str) -> None:
    queues = await _open_queues(database_url, 4)
    try:
        runs: Counter[int] = Counter()
        lane_active: Counter[str] = Counter()
        overlaps: list[str] = []

        async def handler(job: Job, ctx: JobContext) -> None:
            runs[job.id] += 1
            if job.lane is not None:
                lane_active[job.lane] += 1
                if lane_active[job.lane] > 1:
                    overlaps.append(job.lane)
                await asyncio.sleep(0)
                lane_active[job.lane] -= 1

        # A fifth of the jobs share a few lanes, to mix lane conflicts into the claim race.
        specs = [JobSpec("work", {"n": n}, priority=n % 4, lane=f"L{n % 5}" if n % 5 == 0 else None)
                 for n in range(JOBS)]
        await queues[0].enqueue_many(specs)
        workers = [
            Worker(queue, {"work": handler}, concurrency=4, poll_seconds=0.05, heartbeat_seconds=1,
                   worker_id=f"w{i}")
            for i, queue in enumerate(queues)
        ]
        await asyncio.gather(*(worker.run_until_idle(timeout=120) for worker in workers))

        assert len(runs) == JOBS and set(runs.values()) == {1}
        assert overlaps == []
        assert await queues[0].counts() == {"completed": {"work": JOBS}}
        assert sum(w.stats.completed for w in workers) == JOBS
        assert all(w.stats.completed > 0 for w in workers)  # the work really was shared
    finally:
        await _close(queues)


async def test_concurrent_batch_claims_are_disjoint(database_url: str) -> None:
    queues = await _open_queues(database_url, 6)
    try:
        await queues[0].enqueue_many([JobSpec("t", {"n": n}) for n in range(JOBS)])
        claimed: list[Job] = []

        async def claimer(queue: JobQueue, name: str) -> None:
            while batch := await queue.claim(name, limit=7):
                claimed.extend(batch)

        await asyncio.gather(*(claimer(q, f"c{i}") for i, q in enumerate(queues)))
        ids = [job.id for job in claimed]
        assert len(ids) == JOBS and len(set(ids)) == JOBS
        assert await queues[0].counts() == {"running": {"t": JOBS}}
    finally:
        await _close(queues)


async def test_concurrent_claimers_respect_lanes(database_url: str) -> None:
    queues = await _open_queues(database_url, 6)
    try:
        await queues[0].enqueue_many([JobSpec("t", {"n": n}, lane=f"L{n % 4}") for n in range(40)])
        results = await asyncio.gather(*(q.claim(f"c{i}", limit=3) for i, q in enumerate(queues)))
        lanes = [job.lane for batch in results for job in batch]
        assert len(lanes) == len(set(lanes)) <= 4
        assert len(await queues[0].list_jobs(state="running")) == len(lanes)
    finally:
        await _close(queues)


async def test_concurrent_idempotent_enqueues_create_one_job(engine: AsyncEngine, database_url: str) -> None:
    queues = await _open_queues(database_url, 5)
    try:
        results = await asyncio.gather(*(
            q.enqueue(JobSpec("sync", idempotency_key=f"history:{n % 3}")) for n in range(30) for q in queues[:1]
        ), *(q.enqueue_many([JobSpec("sync", idempotency_key=f"history:{k}") for k in range(3)]) for q in queues))
        singles = [job for job, _ in results[:30]]
        batches = [job for batch in results[30:] for job in batch]
        assert len({job.id for job in singles + batches}) == 3
        assert await queues[0].counts() == {"queued": {"sync": 3}}
    finally:
        await _close(queues)
