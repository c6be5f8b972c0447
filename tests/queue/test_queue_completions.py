"""Completions: written in groups, each guarded on its own attempt, and late ones refused."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.queue import Handler, Job, JobContext, JobQueue, JobSpec, Worker
from mailtide.queue.completions import CompletionBatcher


async def test_complete_many_guards_each_job_on_its_attempt(queue: JobQueue, set_job_columns: Any) -> None:
    await queue.enqueue_many([JobSpec("t", {"n": n}) for n in range(3)])
    first, second, stale = await queue.claim("w", limit=3)
    await set_job_columns(stale.id, heartbeat_at=time.time() - 600)
    assert await queue.rescue_stale(60) == 1
    await set_job_columns(stale.id, not_before=time.time() - 1)
    [again] = await queue.claim("w2")
    assert again.id == stale.id and again.attempts == 2

    assert await queue.complete_many([first, second, stale]) == {first.id, second.id}
    assert (await queue.get(stale.id)).state == "running"  # the new attempt is untouched
    assert await queue.complete_many([again]) == {stale.id}
    assert await queue.complete_many([first]) == set()  # only once
    assert await queue.complete_many([]) == set()


async def test_batcher_tells_each_caller_its_own_outcome(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec("t", {"n": n}) for n in range(20)])
    claimed = await queue.claim("w", limit=20)
    batcher = CompletionBatcher(queue, max_batch=7)
    outcomes = await asyncio.gather(*(batcher.complete(job) for job in claimed), batcher.complete(claimed[0]))
    assert outcomes[:20] == [True] * 20
    assert outcomes[20] is False  # the same attempt again: refused
    assert await queue.counts() == {"completed": {"t": 20}}


async def test_worker_groups_completions_into_few_statements(
    queue: JobQueue, engine: AsyncEngine, statements_sent: Any
) -> None:
    async def noop(job: Job, ctx: JobContext) -> None:
        return None

    await queue.enqueue_many([JobSpec("noop") for _ in range(200)])
    worker = Worker(queue, {"noop": noop}, concurrency=8, poll_seconds=0.05, heartbeat_seconds=1)
    with statements_sent(engine) as sent:
        await worker.run_until_idle(timeout=60)
    completions = [s for s in sent if "(jobs.id, jobs.attempts) IN" in s]
    assert worker.stats.completed == 200
    assert 0 < len(completions) <= 100, len(completions)  # typically ~200 / 8


async def test_late_completion_of_a_rescued_attempt_is_refused(queue: JobQueue) -> None:
    release = {1: asyncio.Event(), 2: asyncio.Event()}
    first_started = asyncio.Event()
    started: list[tuple[str, int]] = []

    def handler_for(worker_name: str) -> Handler:
        async def slow(job: Job, ctx: JobContext) -> None:
            started.append((worker_name, job.attempts))
            first_started.set()
            await release[job.attempts].wait()

        return slow

    job, _ = await queue.enqueue(JobSpec("slow", max_attempts=5))
    # A worker that goes silent: it never heartbeats (and never rescues) while its job runs.
    silent = Worker(queue, {"slow": handler_for("silent")}, concurrency=1, poll_seconds=0.05,
                    heartbeat_seconds=3600, stale_after_seconds=3600, worker_id="silent")
    rescuer = Worker(queue, {"slow": handler_for("rescuer")}, concurrency=1, poll_seconds=0.05,
                     heartbeat_seconds=0.1, stale_after_seconds=0.5, worker_id="rescuer")
    runners = [asyncio.create_task(silent.run())]
    try:
        await asyncio.wait_for(first_started.wait(), 10)
        assert started == [("silent", 1)]
        runners.append(asyncio.create_task(rescuer.run()))
        deadline = time.monotonic() + 30
        while len(started) < 2:  # rescued after 0.5 s of silence, retried after its backoff
            assert time.monotonic() < deadline, started
            await asyncio.sleep(0.05)
        assert started == [("silent", 1), ("rescuer", 2)]

        release[1].set()  # the silent worker's attempt finishes late
        while silent.stats.refused == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        current = await queue.get(job.id)
        assert (current.state, current.attempts, current.worker_id) == ("running", 2, "rescuer")

        release[2].set()
        while rescuer.stats.completed == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await asyncio.gather(silent.stop(1), rescuer.stop(1))
    done = await queue.get(job.id)
    assert (done.state, done.attempts) == ("completed", 2)
    assert (silent.stats.completed, silent.stats.refused, rescuer.stats.completed) == (0, 1, 1)
    assert all(runner.done() for runner in runners)
