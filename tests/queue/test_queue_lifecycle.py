from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable

import pytest

from mailtide.queue import JobQueue, JobSpec

SetJobColumns = Callable[..., Awaitable[None]]


async def test_complete(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t"))
    [claimed] = await queue.claim("w")
    assert await queue.complete(claimed, "3 messages")
    done = await queue.get(job.id)
    assert done.state == "completed" and done.finished_at is not None and done.worker_id is None
    assert [(s.name, s.detail) for s in await queue.steps(job.id)] == [("result", {"note": "3 messages"})]
    assert not await queue.complete(claimed)  # only once
    assert await queue.is_idle()


async def test_retryable_failure_backs_off_then_fails_after_max_attempts(
    queue: JobQueue, set_job_columns: SetJobColumns
) -> None:
    job, _ = await queue.enqueue(JobSpec("t", max_attempts=3))
    previous_not_before = job.not_before
    for attempt in (1, 2):
        [claimed] = await queue.claim("w")
        assert claimed.attempts == attempt
        before = time.time()
        assert await queue.fail(claimed, f"transient {attempt}", retryable=True)
        requeued = await queue.get(job.id)
        nominal = 2.0 * 2 ** (attempt - 1)
        assert requeued.state == "queued" and requeued.last_error == f"transient {attempt}"
        assert before + nominal * 0.75 - 0.01 <= requeued.not_before <= time.time() + nominal * 1.25
        assert requeued.not_before > previous_not_before
        previous_not_before = requeued.not_before
        assert await queue.claim("w") == []  # not due yet
        await set_job_columns(job.id, not_before=time.time() - 1)  # let time pass
    [last] = await queue.claim("w")
    assert last.attempts == 3
    assert await queue.fail(last, "transient 3", retryable=True)
    failed = await queue.get(job.id)
    assert failed.state == "failed" and failed.finished_at is not None and failed.attempts == 3


async def test_explicit_delay_overrides_backoff(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t"))
    [claimed] = await queue.claim("w")
    before = time.time()
    assert await queue.fail(claimed, "429", retryable=True, delay=120)
    assert (await queue.get(job.id)).not_before == pytest.approx(before + 120, abs=2)


async def test_fatal_failure_is_final(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t", max_attempts=10))
    [claimed] = await queue.claim("w")
    assert await queue.fail(claimed, "no such account", retryable=False)
    failed = await queue.get(job.id)
    assert (failed.state, failed.attempts, failed.last_error) == ("failed", 1, "no such account")
    assert await queue.claim("w") == []


async def test_stale_heartbeat_is_rescued_and_the_late_finish_refused(
    queue: JobQueue, set_job_columns: SetJobColumns
) -> None:
    stale, _ = await queue.enqueue(JobSpec("t", {"n": 1}))
    alive, _ = await queue.enqueue(JobSpec("t", {"n": 2}))
    claimed = await queue.claim("w", limit=2)
    old = next(j for j in claimed if j.id == stale.id)
    await set_job_columns(stale.id, heartbeat_at=time.time() - 120)
    assert await queue.heartbeat(claimed) == 2  # the silent worker's own heartbeat comes too late...
    await set_job_columns(stale.id, heartbeat_at=time.time() - 120)

    assert await queue.rescue_stale(older_than_seconds=30) == 1
    rescued = await queue.get(stale.id)
    assert rescued.state == "queued" and rescued.attempts == 1 and rescued.not_before > time.time()
    assert "heartbeat lost" in rescued.last_error
    assert (await queue.get(alive.id)).state == "running"

    # The old attempt wakes up and tries to finish: refused, whatever it says.
    assert not await queue.complete(old)
    assert not await queue.fail(old, "late", retryable=False)
    assert await queue.heartbeat([old]) == 0
    # A new attempt runs; the old one still cannot touch it.
    await set_job_columns(stale.id, not_before=time.time() - 1)
    [again] = await queue.claim("w2")
    assert again.id == stale.id and again.attempts == 2
    assert not await queue.complete(old)
    assert await queue.complete(again)


async def test_rescue_fails_a_job_out_of_attempts(queue: JobQueue, set_job_columns: SetJobColumns) -> None:
    job, _ = await queue.enqueue(JobSpec("t", max_attempts=1))
    await queue.claim("w")
    await set_job_columns(job.id, heartbeat_at=time.time() - 600)
    assert await queue.rescue_stale(60) == 1
    assert (await queue.get(job.id)).state == "failed"
    assert await queue.rescue_stale(60) == 0


async def test_cancel_queued_and_running(queue: JobQueue) -> None:
    queued, _ = await queue.enqueue(JobSpec("t", {"n": 1}, priority=-1))
    running, _ = await queue.enqueue(JobSpec("t", {"n": 2}))
    [claimed] = await queue.claim("w")
    assert claimed.id == running.id

    canceled = await queue.cancel(queued.id)
    assert canceled.state == "canceled" and canceled.finished_at is not None
    assert await queue.claim("w") == []

    assert not await queue.is_cancel_requested(claimed)
    flagged = await queue.cancel(running.id)
    assert flagged.state == "running" and flagged.cancel_requested
    assert await queue.is_cancel_requested(claimed)
    # A retryable failure of a job asked to cancel ends it canceled, not queued again.
    assert await queue.fail(claimed, "stopped early", retryable=True)
    assert (await queue.get(running.id)).state == "canceled"
    assert await queue.cancel(10**9) is None


async def test_retry_requeues_failed_and_canceled_jobs(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t", idempotency_key="k", max_attempts=1))
    [claimed] = await queue.claim("w")
    await queue.fail(claimed, "nope", retryable=False)
    retried = await queue.retry(job.id)
    assert retried.state == "queued" and retried.attempts == 1 and retried.max_attempts == 11
    assert retried.not_before <= time.time()
    assert await queue.retry(job.id) is None  # queued: nothing to retry
    [again] = await queue.claim("w")
    assert again.attempts == 2
    assert not await queue.complete(claimed)  # the old attempt stays refused
    assert await queue.complete(again)
    assert await queue.retry(job.id) is None  # completed

    # Another active job holding the key wins; the canceled one stays canceled.
    other, _ = await queue.enqueue(JobSpec("t", idempotency_key="k2"))
    await queue.cancel(other.id)
    holder, _ = await queue.enqueue(JobSpec("t", idempotency_key="k2"))
    assert (await queue.retry(other.id)).id == holder.id
    assert (await queue.get(other.id)).state == "canceled"


async def test_steps_are_recorded_per_attempt(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t"))
    [claimed] = await queue.claim("w")
    await queue.add_step(claimed, "listed", {"page": 1, "ids": 500})
    await queue.add_step(claimed, "done")
    steps = await queue.steps(job.id)
    assert [(s.name, s.detail, s.attempt) for s in steps] == [("listed", {"page": 1, "ids": 500}, 1), ("done", None, 1)]


async def test_release_gives_the_attempt_back(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t", lane="L"))
    [claimed] = await queue.claim("w")
    assert await queue.release([claimed]) == 1
    released = await queue.get(job.id)
    assert (released.state, released.attempts, released.worker_id) == ("queued", 0, None)
    [again] = await queue.claim("w")  # lane free again, due now
    assert again.attempts == 1


async def test_list_counts_idle_and_prune(queue: JobQueue, set_job_columns: SetJobColumns) -> None:
    a, _ = await queue.enqueue(JobSpec("a", account_id=1))
    b, _ = await queue.enqueue(JobSpec("b", account_id=2))
    c, _ = await queue.enqueue(JobSpec("a", account_id=1, not_before=time.time() + 600))
    assert [j.id for j in await queue.list_jobs()] == [c.id, b.id, a.id]
    assert [j.id for j in await queue.list_jobs(type="a", account_id=1, limit=1)] == [c.id]
    [first] = await queue.claim("w")
    assert await queue.complete(first)
    [second] = await queue.claim("w")
    await queue.add_step(second, "x")
    await queue.fail(second, "bad", retryable=False)
    assert await queue.counts() == {"completed": {"a": 1}, "failed": {"b": 1}, "queued": {"a": 1}}
    assert [j.id for j in await queue.list_jobs(state="failed")] == [b.id]

    assert await queue.is_idle(account_id=2)
    assert not await queue.is_idle(account_id=1)  # c is scheduled for later
    assert await queue.is_idle(account_id=1, include_scheduled=False)

    assert await queue.prune(completed_older_than=60, failed_older_than=60) == 0
    await set_job_columns(a.id, finished_at=time.time() - 120)
    await set_job_columns(b.id, finished_at=time.time() - 120)
    assert await queue.prune(completed_older_than=60, failed_older_than=3600) == 1
    assert await queue.get(a.id) is None and await queue.get(b.id) is not None
    assert await queue.prune(completed_older_than=60, failed_older_than=60) == 1
    assert await queue.get(b.id) is None and await queue.steps(b.id) == []
    assert await queue.get(c.id) is not None


async def test_a_job_committed_while_is_idle_waits_for_the_lock_is_due_not_scheduled(
    queue: JobQueue, backend: str
) -> None:
    """Regression: is_idle read the clock before SQLite granted its transaction, so a job that
    became due while it waited for the write lock looked 'scheduled for later', and a worker's
    run_until_idle stopped with that job still queued."""
    if backend != "sqlite":
        pytest.skip("the write lock being waited for is SQLite's")
    path = queue.engine.url.database
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute(
            "INSERT INTO jobs (type, payload, priority, state, attempts, max_attempts, not_before, created_at,"
            " cancel_requested) VALUES ('t', '{}', 0, 'queued', 0, 5, ?, ?, 0)",
            (time.time() + 0.3, time.time()),
        )
        check = asyncio.create_task(queue.is_idle(include_scheduled=False))
        await asyncio.sleep(0.6)  # is_idle waits for the lock; meanwhile the job falls due
        holder.execute("COMMIT")
        assert not await check
    finally:
        holder.close()
