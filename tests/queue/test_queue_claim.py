from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import jobs
from mailtide.queue import JobQueue, JobSpec


async def test_claim_order_priority_then_fifo(queue: JobQueue) -> None:
    specs = [JobSpec("t", {"n": n}, priority=p) for n, p in enumerate([0, 5, 0, -10, 5, 1])]
    enqueued = await queue.enqueue_many(specs)
    claimed = await queue.claim("w", limit=10)
    assert [j.payload["n"] for j in claimed] == [1, 4, 5, 0, 2, 3]
    assert {j.id for j in claimed} == {j.id for j in enqueued}
    assert await queue.claim("w", limit=10) == []


async def test_claim_one_at_a_time_follows_the_same_order(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec("t", {"n": n}, priority=n % 3) for n in range(9)])
    order = []
    for _ in range(9):
        [job] = await queue.claim("w")
        order.append(job.payload["n"])
    assert order == [2, 5, 8, 1, 4, 7, 0, 3, 6]


async def test_claim_marks_running(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t"))
    before = time.time()
    [claimed] = await queue.claim("worker-7")
    assert claimed.id == job.id
    assert (claimed.state, claimed.attempts, claimed.worker_id) == ("running", 1, "worker-7")
    assert claimed.started_at >= before and claimed.heartbeat_at == claimed.started_at
    assert await queue.get(job.id) == claimed


async def test_not_before_schedules(queue: JobQueue) -> None:
    later, _ = await queue.enqueue(JobSpec("t", {"when": "later"}, priority=100, not_before=time.time() + 3600))
    due, _ = await queue.enqueue(JobSpec("t", {"when": "due"}, not_before=time.time() - 1))
    assert [j.id for j in await queue.claim("w", limit=5)] == [due.id]
    assert await queue.claim("w", limit=5) == []
    assert not await queue.is_idle()  # a scheduled job is still work
    assert (await queue.get(later.id)).state == "queued"


async def test_types_filter(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec("a"), JobSpec("b"), JobSpec("c")])
    claimed = await queue.claim("w", limit=5, types=["a", "c"])
    assert sorted(j.type for j in claimed) == ["a", "c"]


async def test_min_priority_claims_only_urgent_jobs_in_order(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec("t", {"n": n}, priority=p) for n, p in enumerate([-10, 5, 1, 10, 4, 5, 8])])
    claimed = await queue.claim("w", limit=10, min_priority=5)
    assert [(j.payload["n"], j.priority) for j in claimed] == [(3, 10), (6, 8), (1, 5), (5, 5)]
    assert await queue.claim("w", limit=10, min_priority=5) == []
    rest = await queue.claim("w", limit=10)
    assert [j.payload["n"] for j in rest] == [4, 2, 0]  # the others stayed queued, untouched


async def test_min_priority_with_types_limit_and_lanes(queue: JobQueue) -> None:
    await queue.enqueue_many([
        JobSpec("a", {"n": 0}, priority=1),
        JobSpec("a", {"n": 1}, priority=9, lane="L"),
        JobSpec("a", {"n": 2}, priority=9, lane="L"),
        JobSpec("b", {"n": 3}, priority=9),
        JobSpec("a", {"n": 4}, priority=7),
        JobSpec("a", {"n": 5}, priority=6),
    ])
    first = await queue.claim("w", limit=2, types=["a"], min_priority=6)
    assert [j.payload["n"] for j in first] == [1, 4]  # lane L gives one job; type b is not asked for
    assert [j.payload["n"] for j in await queue.claim("w", limit=5, types=["a"], min_priority=6)] == [5]
    assert await queue.claim("w", limit=5, types=["a"], min_priority=6) == []  # lane L is busy


async def test_one_job_per_lane_in_a_batch_and_busy_lanes_skipped(queue: JobQueue) -> None:
    await queue.enqueue_many([
        JobSpec("t", {"n": 0}, lane="A", priority=3),
        JobSpec("t", {"n": 1}, lane="A", priority=3),
        JobSpec("t", {"n": 2}, lane="B"),
        JobSpec("t", {"n": 3}),
        JobSpec("t", {"n": 4}),
        JobSpec("t", {"n": 5}, lane="B"),
    ])
    first = await queue.claim("w", limit=10)
    assert [j.payload["n"] for j in first] == [0, 2, 3, 4]
    # Lanes A and B are busy now: nothing more to hand out.
    assert await queue.claim("w", limit=10) == []
    lane_a = next(j for j in first if j.lane == "A")
    assert await queue.complete(lane_a)
    assert [j.payload["n"] for j in await queue.claim("w", limit=10)] == [1]


async def test_many_jobs_of_one_lane_do_not_starve_others(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec("t", {"n": n}, lane="hot", priority=1) for n in range(50)])
    await queue.enqueue_many([JobSpec("t", {"n": 100 + n}) for n in range(3)])
    claimed = await queue.claim("w", limit=4)
    assert [j.payload["n"] for j in claimed][:1] == [0]
    # The window may not reach past the hot lane in one round, but the next round does.
    claimed += await queue.claim("w", limit=4)
    assert sorted(j.payload["n"] for j in claimed) == [0, 100, 101, 102]


async def test_database_rejects_a_second_running_job_in_a_lane(queue: JobQueue, engine: AsyncEngine) -> None:
    await queue.enqueue_many([JobSpec("t", lane="sync:1"), JobSpec("t", lane="sync:1")])
    [running] = await queue.claim("w", limit=2)
    other = next(j for j in await queue.list_jobs(state="queued"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.update(jobs).where(jobs.c.id == other.id).values(state="running"))
    assert (await queue.get(running.id)).state == "running"
    assert (await queue.get(other.id)).state == "queued"
