from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import jobs
from mailtide.queue import Job, JobQueue, JobSpec


async def test_enqueue_stores_the_spec(queue: JobQueue) -> None:
    spec = JobSpec("ingest.gmail", {"ids": ["a", "b"]}, priority=5, lane="sync:1", account_id=1, max_attempts=3)
    job, created = await queue.enqueue(spec)
    assert created
    stored = await queue.get(job.id)
    assert stored == job
    assert (job.type, job.payload, job.priority, job.lane, job.account_id) == (
        "ingest.gmail", {"ids": ["a", "b"]}, 5, "sync:1", 1)
    assert (job.state, job.attempts, job.max_attempts, job.cancel_requested) == ("queued", 0, 3, False)
    assert job.not_before == pytest.approx(job.created_at)


async def test_idempotency_key_is_unique_among_active_jobs_only(queue: JobQueue) -> None:
    first, created = await queue.enqueue(JobSpec("sync", idempotency_key="sync:1"))
    assert created
    again, created_again = await queue.enqueue(JobSpec("sync", {"other": True}, idempotency_key="sync:1"))
    assert not created_again and again.id == first.id and again.payload == {}

    # Still unique while running.
    [running] = await queue.claim("w")
    assert running.id == first.id
    while_running, created = await queue.enqueue(JobSpec("sync", idempotency_key="sync:1"))
    assert not created and while_running.id == first.id and while_running.state == "running"

    # A finished job never blocks a new one.
    assert await queue.complete(running)
    fresh, created = await queue.enqueue(JobSpec("sync", idempotency_key="sync:1"))
    assert created and fresh.id != first.id


async def test_failed_and_canceled_jobs_do_not_hold_keys(queue: JobQueue) -> None:
    job, _ = await queue.enqueue(JobSpec("t", idempotency_key="k", max_attempts=1))
    [claimed] = await queue.claim("w")
    assert await queue.fail(claimed, "boom", retryable=True)
    assert (await queue.get(job.id)).state == "failed"
    second, created = await queue.enqueue(JobSpec("t", idempotency_key="k"))
    assert created
    await queue.cancel(second.id)
    third, created = await queue.enqueue(JobSpec("t", idempotency_key="k"))
    assert created and len({job.id, second.id, third.id}) == 3


async def test_enqueue_many_with_duplicates_inside_and_against_existing(queue: JobQueue) -> None:
    existing, _ = await queue.enqueue(JobSpec("ingest", {"id": "old"}, idempotency_key="m:old"))
    specs = [
        JobSpec("ingest", {"id": "a"}, idempotency_key="m:a"),
        JobSpec("plain", {"n": 1}),
        JobSpec("ingest", {"id": "a-dup"}, idempotency_key="m:a"),
        JobSpec("ingest", {"id": "old-dup"}, idempotency_key="m:old"),
        JobSpec("plain", {"n": 2}),
        JobSpec("ingest", {"id": "b"}, idempotency_key="m:b"),
    ]
    result = await queue.enqueue_many(specs)
    assert len(result) == len(specs)
    assert result[0].payload == {"id": "a"} and result[2].id == result[0].id  # first spec wins
    assert result[3].id == existing.id and result[3].payload == {"id": "old"}
    assert [result[1].payload, result[4].payload] == [{"n": 1}, {"n": 2}]
    assert result[5].payload == {"id": "b"}
    assert len({j.id for j in result}) == 5
    counts = await queue.counts()
    assert counts == {"queued": {"ingest": 3, "plain": 2}}


async def test_enqueue_many_chunks_large_batches(queue: JobQueue) -> None:
    specs = [JobSpec("ingest", {"n": i}, idempotency_key=f"k{i % 700}") for i in range(1_200)]
    specs += [JobSpec("plain", {"n": i}) for i in range(1_100)]
    result = await queue.enqueue_many(specs)
    assert [j.payload["n"] for j in result[:700]] == list(range(700))
    assert [j.payload["n"] for j in result[700:1200]] == list(range(500))  # duplicates -> first holder
    assert [j.payload["n"] for j in result[1200:]] == list(range(1_100))
    assert (await queue.counts())["queued"] == {"ingest": 700, "plain": 1_100}
    assert await queue.enqueue_many([]) == []


async def test_enqueue_inside_a_caller_transaction(queue: JobQueue, engine: AsyncEngine) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with engine.begin() as conn:
            job, created = await queue.enqueue(JobSpec("t", idempotency_key="tx"), conn=conn)
            assert created
            await queue.enqueue_many([JobSpec("t2")], conn=conn)
            raise Rollback
    assert await queue.get(job.id) is None
    async with engine.begin() as conn:
        await queue.enqueue(JobSpec("t", idempotency_key="tx"), conn=conn)
    assert (await queue.counts()) == {"queued": {"t": 1}}


async def test_enqueue_coalesced(queue: JobQueue) -> None:
    spec = JobSpec("history.sync.gmail", {"account_id": 1}, idempotency_key="history:1", lane="sync:1")
    first = await queue.enqueue_coalesced(spec)
    assert await queue.enqueue_coalesced(spec) == first  # queued: the queued one will see the change

    [running] = await queue.claim("w")
    follow_up = await queue.enqueue_coalesced(spec)
    assert follow_up.id != first.id and follow_up.idempotency_key == "history:1:next"
    assert follow_up.state == "queued" and follow_up.lane == "sync:1"
    assert (await queue.enqueue_coalesced(spec)).id == follow_up.id  # at most one follow-up

    # The follow-up waits for the lane; after the run it is next.
    assert await queue.claim("w") == []
    assert await queue.complete(running)
    [next_run] = await queue.claim("w")
    assert next_run.id == follow_up.id
    with pytest.raises(ValueError):
        await queue.enqueue_coalesced(JobSpec("x"))


async def test_enqueue_wakes_a_waiting_worker(queue: JobQueue) -> None:
    import asyncio

    waiter = asyncio.create_task(queue.wait_for_work(30))
    await asyncio.sleep(0.01)
    await queue.enqueue(JobSpec("t"))
    assert await asyncio.wait_for(waiter, 2) is True
    # Nothing more enqueued: once any echo of that enqueue is consumed (PostgreSQL also hears its
    # own NOTIFY, and announces when its LISTEN starts), waiting times out.
    outcomes = [await queue.wait_for_work(0.2) for _ in range(3)]
    assert outcomes[-1] is False


async def test_payload_round_trips_json(queue: JobQueue, engine: AsyncEngine) -> None:
    payload = {"ids": ["1", "2"], "token": None, "n": 2**40, "nested": {"ok": True}}
    job, _ = await queue.enqueue(JobSpec("t", payload))
    async with engine.connect() as conn:
        stored = (await conn.execute(sa.select(jobs.c.payload).where(jobs.c.id == job.id))).scalar_one()
    assert stored == payload == (await queue.get(job.id)).payload


async def test_enqueue_many_sends_one_insert_per_batch(
    queue: JobQueue, engine: AsyncEngine, statements_sent: Any
) -> None:
    unkeyed = [JobSpec("plain", {"n": n}) for n in range(1_200)]
    keyed = [JobSpec("ingest", {"n": n}, idempotency_key=f"k{n}") for n in range(700)]
    with statements_sent(engine) as sent:
        await queue.enqueue_many(unkeyed + keyed)
    inserts = [s for s in sent if s.lstrip().upper().startswith("INSERT INTO JOBS")]
    assert len(inserts) == 5  # batches of 500: 500 + 500 + 200 unkeyed, 500 + 200 keyed
    with statements_sent(engine) as sent:
        await queue.enqueue(JobSpec("one"))
    assert len([s for s in sent if s.lstrip().upper().startswith("INSERT INTO JOBS")]) == 1


async def test_enqueue_many_returns_the_jobs_as_stored(queue: JobQueue) -> None:
    """Created jobs are built from the specs and their new ids, not read back: they must equal
    what is stored, column for column; jobs that already held a key are read."""
    held, _ = await queue.enqueue(JobSpec("sync", {"n": 0}, idempotency_key="held", lane="sync:1"))
    specs = [
        JobSpec("ingest", {"ids": ["a"], "deep": {"x": [1, None]}}, priority=3, lane="bulk:1", account_id=7,
                max_attempts=4, not_before=2_000_000_000.5, idempotency_key="new"),
        JobSpec("plain"),
        JobSpec("sync", {"n": 1}, idempotency_key="held"),
    ]
    for batch in (specs, specs[1:2] * 3, specs[:1]):  # mixed (one transaction), unkeyed only, keyed only
        for job in await queue.enqueue_many(batch):
            assert await queue.get(job.id) == job
            assert vars(job).keys() == {field.name for field in dataclasses.fields(Job)}
    result = await queue.enqueue_many(specs)
    assert result[2] == held and result[0].not_before == 2_000_000_000.5
