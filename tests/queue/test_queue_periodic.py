"""Periodic jobs: cadences, one run per (schedule, slot) whatever the number of schedulers, the
scheduler inside workers and `mailtide serve`, retention pruning, and the sync engine's schedules."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.config import Settings
from mailtide.db import create_engine
from mailtide.db.schema import STATUS_NEEDS_REAUTH, STATUS_NORMAL, job_steps, jobs, schedule_slots
from mailtide.queue import (
    PRUNE,
    DailyAt,
    Every,
    Job,
    JobContext,
    JobQueue,
    JobSpec,
    QueueJobContext,
    RetentionPolicy,
    Schedule,
    Scheduler,
    Worker,
    prune_handler,
    prune_schedule,
)
from mailtide.queue.periodic import SchedulerService, background_service

DAY = 86_400.0


def utc(*parts: int) -> float:
    return dt.datetime(*parts, tzinfo=dt.UTC).timestamp()


async def slot_rows(engine: AsyncEngine) -> list[tuple[str, int, int | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(schedule_slots.c.name, schedule_slots.c.slot, schedule_slots.c.job_id)
            .order_by(schedule_slots.c.name, schedule_slots.c.slot)
        )
        return [tuple(row) for row in rows]


def test_every_cuts_time_into_aligned_slots() -> None:
    five_minutes = Every.minutes(5)
    assert five_minutes == Every(300)
    assert five_minutes.slot_at(utc(2026, 5, 4, 10, 4, 59)) == five_minutes.slot_at(utc(2026, 5, 4, 10, 0))
    assert five_minutes.slot_at(utc(2026, 5, 4, 10, 5)) == five_minutes.slot_at(utc(2026, 5, 4, 10, 0)) + 1
    slot = five_minutes.slot_at(utc(2026, 5, 4, 10, 7))
    assert five_minutes.slot_start(slot) == utc(2026, 5, 4, 10, 5)
    with pytest.raises(ValueError):
        Every(0)


def test_daily_at_starts_each_slot_at_its_time() -> None:
    at_0330 = DailyAt(3, 30)
    before, at, after = utc(2026, 5, 4, 3, 29, 59), utc(2026, 5, 4, 3, 30), utc(2026, 5, 4, 23, 59)
    assert at_0330.slot_at(before) == at_0330.slot_at(at) - 1  # still yesterday's run
    assert at_0330.slot_at(at) == at_0330.slot_at(after) == dt.date(2026, 5, 4).toordinal()
    assert at_0330.slot_start(at_0330.slot_at(after)) == at
    assert at_0330.slot_at(utc(2026, 5, 5, 3, 30)) == at_0330.slot_at(at) + 1
    with pytest.raises(ValueError):
        DailyAt(24)


async def test_tick_enqueues_each_slot_once(queue: JobQueue, engine: AsyncEngine) -> None:
    schedule = Schedule("report", Every(60), JobSpec("report", {"kind": "daily"}, priority=3))
    now = utc(2026, 5, 4, 12, 0, 30)
    [job] = await Scheduler(queue, [schedule]).tick(now)
    slot = Every(60).slot_at(now)
    assert (job.type, job.priority, job.idempotency_key) == ("report", 3, "schedule:report")
    assert job.payload == {"kind": "daily", "schedule": "report", "slot": slot, "slot_start": utc(2026, 5, 4, 12)}

    # Another process (a fresh Scheduler) in the same slot: nothing new.
    assert await Scheduler(queue, [schedule]).tick(now + 20) == []
    assert await slot_rows(engine) == [("report", slot, job.id)]

    # Next slot while the previous run is still queued: the run maps to it instead of piling up.
    [same] = await Scheduler(queue, [schedule]).tick(now + 60)
    assert same.id == job.id
    [claimed] = await queue.claim("w")
    assert await queue.complete(claimed)
    [fresh] = await Scheduler(queue, [schedule]).tick(now + 120)
    assert fresh.id != job.id and fresh.payload["slot"] == slot + 2
    assert [row[1] for row in await slot_rows(engine)] == [slot, slot + 1, slot + 2]


async def test_racing_schedulers_on_separate_connections_enqueue_one_run(
    database_url: str, url_engine: AsyncEngine
) -> None:
    schedules = [Schedule("poll", Every(300), JobSpec("poll")), prune_schedule()]
    engines = [create_engine(database_url) for _ in range(8)]
    queues = [JobQueue(e) for e in engines]
    try:
        now = time.time()
        results = await asyncio.gather(*(Scheduler(q, schedules).tick(now) for q in queues))
        enqueued = [job for result in results for job in result]
        assert sorted(job.type for job in enqueued) == ["poll", PRUNE]
        assert await queues[0].counts() == {"queued": {"poll": 1, PRUNE: 1}}
        assert len(await slot_rows(url_engine)) == 2
    finally:
        for q, e in zip(queues, engines, strict=True):
            await q.close()
            await e.dispose()


async def test_scheduler_runs_inside_a_worker(queue: JobQueue, engine: AsyncEngine) -> None:
    ran: list[int] = []

    async def beat(job: Job, ctx: JobContext) -> None:
        ran.append(job.payload["slot"])

    scheduler = Scheduler(queue, [Schedule("beat", Every(0.25), JobSpec("beat"))])
    worker = Worker(queue, {"beat": beat}, poll_seconds=0.05, heartbeat_seconds=0.2, scheduler=scheduler)
    runner = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 20
        while len(ran) < 3:
            assert time.monotonic() < deadline, f"only {ran} ran"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop(1)
    assert runner.done()
    assert len(set(ran)) == len(ran) and ran == sorted(ran)  # one run per slot, in order
    assert len(await slot_rows(engine)) >= 3


async def test_scheduler_service_stops_when_asked(queue: JobQueue, engine: AsyncEngine) -> None:
    class FakeRuntime:  # the one thing background_service() asks of the runtime
        def scheduler(self) -> Scheduler:
            return Scheduler(queue, [Schedule("svc", Every(3600), JobSpec("svc"))])

    service = background_service(FakeRuntime())
    assert isinstance(service, SchedulerService) and service.name == "scheduler"
    runner = asyncio.create_task(service.run())
    deadline = time.monotonic() + 10
    while not await slot_rows(engine):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await service.stop(1)
    await asyncio.wait_for(runner, 5)
    assert (await queue.counts()) == {"queued": {"svc": 1}}


async def test_prune_job_applies_the_retention_policy(queue: JobQueue, engine: AsyncEngine) -> None:
    now = time.time()
    old_done = await queue.enqueue_many([JobSpec("old", {"n": n}) for n in range(2_500)])  # > one prune chunk
    recent_done, _ = await queue.enqueue(JobSpec("recent"))
    old_failed, _ = await queue.enqueue(JobSpec("old_failed"))
    kept_failed, _ = await queue.enqueue(JobSpec("kept_failed"))
    await queue.enqueue(JobSpec("waiting"))
    async with engine.begin() as conn:
        def finish(ids: list[int], state: str, age: float) -> sa.Update:
            return sa.update(jobs).where(jobs.c.id.in_(ids)).values(state=state, finished_at=now - age)

        await conn.execute(finish([j.id for j in old_done], "completed", 2 * DAY))
        await conn.execute(finish([recent_done.id], "completed", 3600))
        await conn.execute(finish([old_failed.id], "failed", 8 * DAY))
        await conn.execute(finish([kept_failed.id], "failed", 2 * DAY))
        await conn.execute(sa.insert(job_steps), [
            {"job_id": old_done[0].id, "attempt": 1, "name": "x", "at": now},
            {"job_id": kept_failed.id, "attempt": 1, "name": "y", "at": now},
        ])
        await conn.execute(sa.insert(schedule_slots), [
            {"name": "ancient", "slot": 1, "created_at": now - 30 * DAY},
            {"name": "current", "slot": 2, "created_at": now},
        ])

    [prune_job] = await Scheduler(queue, [prune_schedule()]).tick()
    [claimed] = await queue.claim("w", types=[PRUNE])
    handler = prune_handler(queue, RetentionPolicy())
    await handler(claimed, QueueJobContext(claimed, queue))
    assert await queue.complete(claimed)

    remaining = await queue.counts()
    assert remaining == {
        "completed": {"recent": 1, PRUNE: 1}, "failed": {"kept_failed": 1}, "queued": {"waiting": 1},
    }
    assert [s.name for s in await queue.steps(kept_failed.id)] == ["y"]
    assert await queue.steps(old_done[0].id) == []
    assert [(s.name, s.detail) for s in await queue.steps(prune_job.id)] == [("pruned", {"jobs": 2_501})]
    assert {row[0] for row in await slot_rows(engine)} == {"current", PRUNE}


async def test_sync_schedules_and_their_handlers(database_url: str, tmp_path: Path) -> None:
    # The schedules belong to the sync engine, which refines them (Pub/Sub, watches); this checks
    # the wiring: they reach the runtime's scheduler and workers, and their handlers enqueue work.
    from mailtide.runtime import Runtime
    from mailtide.store.accounts import create_account, update_account
    from mailtide.sync import jobtypes
    from mailtide.sync.schedules import HISTORY_POLL, LABELS_POLL, handle_history_poll, handle_labels_poll

    settings = Settings(database_url=database_url, data_dir=tmp_path, labels_sync_seconds=1800, prune_hour_utc=4)
    async with Runtime.open(settings) as rt:
        scheduler = rt.scheduler()
        cadences = {s.name: s.cadence for s in scheduler.schedules}
        assert {HISTORY_POLL, LABELS_POLL, PRUNE} <= set(cadences)
        assert (cadences[LABELS_POLL], cadences[PRUNE]) == (Every(1800), DailyAt(4, 0))
        assert rt.worker().scheduler is None and rt.worker(periodic=True).scheduler is not None
        assert set(cadences) <= set(rt.worker().handlers)

        ids = {}
        for email, status in (("a@x.test", STATUS_NORMAL), ("b@x.test", STATUS_NORMAL), ("c@x.test", "needs_backfill"),
                              ("d@x.test", STATUS_NEEDS_REAUTH)):
            ids[email] = await create_account(rt.engine, email, client_id="c", client_secret=None, refresh_token="r")
            await update_account(rt.engine, ids[email], status=status)
        normal = {ids["a@x.test"], ids["b@x.test"]}
        await scheduler.tick()
        for job_type, handler in ((HISTORY_POLL, handle_history_poll), (LABELS_POLL, handle_labels_poll)):
            [job] = await rt.queue.claim("w", types=[job_type])
            await handler(rt.services, job, QueueJobContext(job, rt.queue))
            assert await rt.queue.complete(job)

        queued = await rt.queue.list_jobs(state="queued")
        assert {j.account_id for j in queued if j.type == jobtypes.HISTORY_SYNC} <= normal
        assert {j.account_id for j in queued if j.type == jobtypes.LABELS_SYNC} == normal

    from mailtide.sync.schedules import sync_schedules

    off = Settings(database_url=database_url, data_dir=tmp_path, history_poll_seconds=0, labels_sync_seconds=0)
    names = [s.name for s in sync_schedules(off)]
    assert PRUNE in names and HISTORY_POLL not in names and LABELS_POLL not in names
