from __future__ import annotations

import asyncio
import random
import time

import pytest

from mailtide.queue import Fatal, Job, JobContext, JobQueue, JobSpec, Retryable, Worker


def fast_worker(queue: JobQueue, handlers: dict, **kwargs) -> Worker:
    kwargs.setdefault("poll_seconds", 0.05)
    kwargs.setdefault("heartbeat_seconds", 0.2)
    return Worker(queue, handlers, **kwargs)


async def test_outcomes_are_recorded(queue: JobQueue) -> None:
    async def ok(job: Job, ctx: JobContext) -> None:
        await ctx.step("working", {"n": job.payload["n"]})

    async def transient(job: Job, ctx: JobContext) -> None:
        raise Retryable("quota", delay=3600)

    async def hopeless(job: Job, ctx: JobContext) -> None:
        raise Fatal("account gone")

    await queue.enqueue_many([
        JobSpec("ok", {"n": 1}), JobSpec("transient"), JobSpec("hopeless"), JobSpec("nobody.handles.this"),
    ])
    worker = fast_worker(queue, {"ok": ok, "transient": transient, "hopeless": hopeless})
    await worker.run_until_idle(timeout=20)

    by_type = {j.type: j for j in await queue.list_jobs()}
    assert by_type["ok"].state == "completed"
    assert [(s.name, s.detail) for s in await queue.steps(by_type["ok"].id)] == [("working", {"n": 1})]
    assert by_type["transient"].state == "queued" and by_type["transient"].not_before > time.time() + 3000
    assert by_type["transient"].last_error == "Retryable: quota"
    assert by_type["hopeless"].state == "failed" and by_type["hopeless"].last_error == "Fatal: account gone"
    unknown = by_type["nobody.handles.this"]
    assert unknown.state == "failed" and "no handler" in unknown.last_error
    assert (worker.stats.completed, worker.stats.retried, worker.stats.failed) == (1, 1, 2)


async def test_random_exceptions_never_kill_the_worker(queue: JobQueue) -> None:
    rng = random.Random(3)
    errors = [ValueError, KeyError, ZeroDivisionError, RuntimeError, AttributeError]
    runs: dict[int, int] = {}

    async def flaky(job: Job, ctx: JobContext) -> None:
        runs[job.id] = runs.get(job.id, 0) + 1
        if job.payload["bad"]:
            raise rng.choice(errors)(f"bug in job {job.id}")

    await queue.enqueue_many([JobSpec("flaky", {"bad": n % 3 == 0}, max_attempts=1) for n in range(30)])
    worker = fast_worker(queue, {"flaky": flaky}, concurrency=4)
    await worker.run_until_idle(timeout=30)
    counts = await queue.counts()
    assert counts == {"completed": {"flaky": 20}, "failed": {"flaky": 10}}
    failed = await queue.list_jobs(state="failed")
    assert all("Traceback" in j.last_error and f"bug in job {j.id}" in j.last_error for j in failed)
    assert worker.stats.completed == 20 and worker.stats.failed == 10


async def test_unexpected_exception_is_retried_with_backoff(queue: JobQueue) -> None:
    async def broken(job: Job, ctx: JobContext) -> None:
        raise OSError("disk hiccup")

    job, _ = await queue.enqueue(JobSpec("broken", max_attempts=5))
    worker = fast_worker(queue, {"broken": broken})
    await worker.run_until_idle(timeout=20)
    stored = await queue.get(job.id)
    assert stored.state == "queued" and stored.attempts == 1 and stored.not_before > time.time()
    assert "OSError: disk hiccup" in stored.last_error
    assert worker.stats.retried == 1


async def test_lanes_never_overlap_under_concurrency(queue: JobQueue) -> None:
    active: dict[str, int] = {}
    overlaps: list[str] = []
    done: list[int] = []
    max_parallel = 0

    async def record(job: Job, ctx: JobContext) -> None:
        nonlocal max_parallel
        lane = job.lane or ""
        active[lane] = active.get(lane, 0) + 1
        if active[lane] > 1:
            overlaps.append(lane)
        max_parallel = max(max_parallel, sum(active.values()))
        await asyncio.sleep(0.01)
        active[lane] -= 1
        done.append(job.id)

    specs = [JobSpec("rec", {"n": n}, lane=f"sync:{n % 3}") for n in range(36)]
    await queue.enqueue_many(specs)
    worker = fast_worker(queue, {"rec": record}, concurrency=8)
    await worker.run_until_idle(timeout=60)
    assert overlaps == []
    assert len(done) == 36 and len(set(done)) == 36
    assert max_parallel == 3  # the lanes ran side by side, each one job at a time


async def test_graceful_shutdown_releases_unfinished_jobs(queue: JobQueue) -> None:
    started = asyncio.Event()
    quick_done: list[int] = []

    async def slow(job: Job, ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    async def quick(job: Job, ctx: JobContext) -> None:
        await asyncio.sleep(0.05)
        quick_done.append(job.id)

    slow_job, _ = await queue.enqueue(JobSpec("slow", lane="L", priority=1))
    quick_job, _ = await queue.enqueue(JobSpec("quick"))
    worker = fast_worker(queue, {"slow": slow, "quick": quick}, concurrency=2)
    runner = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await worker.stop(grace_seconds=0.5)
    assert runner.done()
    released = await queue.get(slow_job.id)
    assert (released.state, released.attempts, released.worker_id) == ("queued", 0, None)
    assert (await queue.get(quick_job.id)).state == "completed" and quick_done == [quick_job.id]
    assert await queue.list_jobs(state="running") == []
    assert worker.stats.released == 1


async def test_stop_is_prompt_when_idle_and_worker_can_restart(queue: JobQueue) -> None:
    async def ok(job: Job, ctx: JobContext) -> None:
        return None

    worker = fast_worker(queue, {"ok": ok}, poll_seconds=30)
    runner = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await worker.stop(grace_seconds=5)
    assert time.monotonic() - started < 2 and runner.done()
    await queue.enqueue(JobSpec("ok"))
    await worker.run_until_idle(timeout=10)
    assert worker.stats.completed == 1


async def test_enqueue_wakes_an_idle_worker_before_the_poll_interval(queue: JobQueue) -> None:
    finished = asyncio.Event()

    async def ok(job: Job, ctx: JobContext) -> None:
        finished.set()

    worker = fast_worker(queue, {"ok": ok}, poll_seconds=30)
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(0.2)  # the worker found nothing and sleeps on its 30 s poll
        await queue.enqueue(JobSpec("ok"))
        await asyncio.wait_for(finished.wait(), 5)
    finally:
        await worker.stop(1)
    assert runner.done()


async def test_heartbeats_keep_a_long_job_alive(queue: JobQueue) -> None:
    async def long(job: Job, ctx: JobContext) -> None:
        await asyncio.sleep(1.0)

    job, _ = await queue.enqueue(JobSpec("long"))
    # Stale after 0.3 s without a heartbeat; heartbeats every 0.1 s keep it from being rescued.
    worker = fast_worker(queue, {"long": long}, heartbeat_seconds=0.1, stale_after_seconds=0.3)
    await worker.run_until_idle(timeout=20)
    stored = await queue.get(job.id)
    assert stored.state == "completed" and stored.attempts == 1
    assert worker.stats.refused == 0


async def test_worker_rescues_jobs_of_a_dead_worker(queue: JobQueue) -> None:
    async def ok(job: Job, ctx: JobContext) -> None:
        return None

    job, _ = await queue.enqueue(JobSpec("ok"))
    [orphan] = await queue.claim("crashed-worker")  # claimed, then the process died
    worker = fast_worker(queue, {"ok": ok}, heartbeat_seconds=0.05, stale_after_seconds=0.2)
    runner = asyncio.create_task(worker.run())
    try:
        for _ in range(200):
            if (await queue.get(job.id)).state == "queued":
                break
            await asyncio.sleep(0.02)
        rescued = await queue.get(job.id)
        assert rescued.state == "queued" and "crashed-worker" in rescued.last_error
    finally:
        await worker.stop(1)
    assert runner.done()
    assert not await queue.complete(orphan)


async def test_handler_honours_cancel_request(queue: JobQueue) -> None:
    started = asyncio.Event()

    async def polite(job: Job, ctx: JobContext) -> None:
        started.set()
        for _ in range(500):
            if await ctx.cancel_requested():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("cancel never seen")

    job, _ = await queue.enqueue(JobSpec("polite"))
    worker = fast_worker(queue, {"polite": polite})
    runner = asyncio.create_task(worker.run_until_idle(timeout=20))
    await asyncio.wait_for(started.wait(), 10)
    await queue.cancel(job.id)
    await runner
    assert (await queue.get(job.id)).state == "canceled"
    assert worker.stats.canceled == 1


async def test_run_until_idle_times_out(queue: JobQueue) -> None:
    async def stuck(job: Job, ctx: JobContext) -> None:
        await asyncio.sleep(60)

    job, _ = await queue.enqueue(JobSpec("stuck"))
    worker = fast_worker(queue, {"stuck": stuck})
    with pytest.raises(TimeoutError):
        await worker.run_until_idle(timeout=0.5)
    assert (await queue.get(job.id)).state == "queued"  # released on the way out


async def test_custom_context_factory(queue: JobQueue) -> None:
    seen: list[tuple[int, str]] = []

    class TaggedContext:
        def __init__(self, job: Job, q: JobQueue) -> None:
            self.job = job
            self.tag = "tagged"

        async def step(self, name: str, detail: dict | None = None) -> None:
            seen.append((self.job.id, name))

        async def cancel_requested(self) -> bool:
            return False

    async def handler(job: Job, ctx: JobContext) -> None:
        await ctx.step(getattr(ctx, "tag", "plain"))

    job, _ = await queue.enqueue(JobSpec("h"))
    await fast_worker(queue, {"h": handler}, context_factory=TaggedContext).run_until_idle(timeout=10)
    assert seen == [(job.id, "tagged")]
