"""A worker keeps reserved slots for urgent jobs: slow, low-priority jobs never take them, so an
urgent job never waits behind them; urgent jobs may take every slot.

Handlers block on events the test releases; assertions are on which jobs started, in what order,
and how many ran at once. (Timeouts only guard against a hang.)"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mailtide.queue import Job, JobContext, JobQueue, JobSpec, Worker

URGENT = 10
LOW = 0
THRESHOLD = 5
HANG_GUARD = 20.0


class Gate:
    """Handlers of types "low" and "urgent" that run until their type is released; records the
    start order and the most jobs of each type running at once."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished = 0
        self.running = {"low": 0, "urgent": 0}
        self.most_running = {"low": 0, "urgent": 0}
        self.release = {"low": asyncio.Event(), "urgent": asyncio.Event()}
        self._changed = asyncio.Condition()

    @property
    def handlers(self) -> dict[str, Callable]:
        return {"low": self.run, "urgent": self.run}

    async def run(self, job: Job, ctx: JobContext) -> None:
        async with self._changed:
            self.started.append(f"{job.type}{job.payload['n']}")
            self.running[job.type] += 1
            self.most_running[job.type] = max(self.most_running[job.type], self.running[job.type])
            self._changed.notify_all()
        await self.release[job.type].wait()
        async with self._changed:
            self.running[job.type] -= 1
            self.finished += 1
            self._changed.notify_all()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), HANG_GUARD)

    def started_of(self, job_type: str) -> list[str]:
        return [name for name in self.started if name.startswith(job_type)]


def low_jobs(count: int) -> list[JobSpec]:
    return [JobSpec("low", {"n": n}, priority=LOW) for n in range(count)]


def urgent_job(n: int) -> JobSpec:
    return JobSpec("urgent", {"n": n}, priority=URGENT)


def reserving_worker(queue: JobQueue, gate: Gate, *, concurrency: int, reserved: int) -> Worker:
    return Worker(queue, gate.handlers, concurrency=concurrency, reserved_slots=reserved,
                  reserved_min_priority=THRESHOLD, poll_seconds=0.05, heartbeat_seconds=0.5)


@contextlib.asynccontextmanager
async def running(worker: Worker, gate: Gate) -> AsyncIterator[None]:
    runner = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        for release in gate.release.values():  # also when the test failed: nothing left blocked
            release.set()
        await worker.stop(grace_seconds=HANG_GUARD)
        await runner


async def finish_all(gate: Gate, total: int) -> None:
    for release in gate.release.values():
        release.set()
    await gate.until(lambda: gate.finished == total)


async def test_urgent_job_starts_while_slow_low_priority_jobs_hold_the_other_slot(queue: JobQueue) -> None:
    gate = Gate()
    await queue.enqueue_many(low_jobs(4))
    worker = reserving_worker(queue, gate, concurrency=2, reserved=1)
    async with running(worker, gate):
        await gate.until(lambda: gate.running["low"] == 1)

        await queue.enqueue(urgent_job(0))
        await gate.until(lambda: "urgent0" in gate.started)
        assert gate.started == ["low0", "urgent0"]  # the low job still runs; its queued peers did not start

        # Once the urgent job is done, its slot is kept free again: the next urgent job finds it.
        gate.release["urgent"].set()
        await gate.until(lambda: gate.running["urgent"] == 0)
        await queue.enqueue(urgent_job(1))
        await gate.until(lambda: "urgent1" in gate.started)
        assert gate.started == ["low0", "urgent0", "urgent1"]

        await finish_all(gate, total=6)
        assert gate.started_of("low") == ["low0", "low1", "low2", "low3"]
        assert gate.most_running["low"] == 1  # never in the reserved slot, even with nothing urgent queued


async def test_low_priority_jobs_use_the_unreserved_slots(queue: JobQueue) -> None:
    gate = Gate()
    await queue.enqueue_many(low_jobs(5))
    worker = reserving_worker(queue, gate, concurrency=3, reserved=1)
    async with running(worker, gate):
        await gate.until(lambda: gate.running["low"] == 2)

        await queue.enqueue(urgent_job(0))
        await gate.until(lambda: "urgent0" in gate.started)
        assert gate.started == ["low0", "low1", "urgent0"]

        await finish_all(gate, total=6)
        assert gate.most_running["low"] == 2


async def test_a_burst_of_urgent_jobs_may_take_every_slot(queue: JobQueue) -> None:
    gate = Gate()
    await queue.enqueue_many(low_jobs(3))
    await queue.enqueue_many([urgent_job(n) for n in range(3)])
    worker = reserving_worker(queue, gate, concurrency=2, reserved=1)
    async with running(worker, gate):
        await gate.until(lambda: gate.running["urgent"] == 2)
        assert gate.started == ["urgent0", "urgent1"]  # both slots, none left for the queued low jobs

        gate.release["urgent"].set()
        await gate.until(lambda: "urgent2" in gate.started and gate.running["low"] == 1)
        assert gate.started[2:4] == ["urgent2", "low0"]  # the first freed slot goes to urgent work

        await finish_all(gate, total=6)
        assert gate.most_running == {"low": 1, "urgent": 2}


async def test_without_a_reservation_low_priority_jobs_take_every_slot(queue: JobQueue) -> None:
    gate = Gate()
    await queue.enqueue_many(low_jobs(3))
    worker = reserving_worker(queue, gate, concurrency=2, reserved=0)
    async with running(worker, gate):
        await gate.until(lambda: gate.running["low"] == 2)
        await finish_all(gate, total=3)


@pytest.mark.parametrize("reserved", [-1, 2, 3])
async def test_reserved_slots_must_leave_a_slot_for_any_job(queue: JobQueue, reserved: int) -> None:
    with pytest.raises(ValueError, match="reserved_slots"):
        Worker(queue, {}, concurrency=2, reserved_slots=reserved)


async def test_runtime_worker_reserves_slots_for_realtime_jobs(database_url: str, tmp_path: Path) -> None:
    from mailtide.config import load_settings
    from mailtide.runtime import Runtime
    from mailtide.sync.jobtypes import (
        PRIORITY_BACKFILL_INGEST,
        PRIORITY_HISTORY_SYNC,
        PRIORITY_REALTIME_INGEST,
        PRIORITY_REALTIME_UPKEEP,
        REALTIME_MIN_PRIORITY,
    )

    assert PRIORITY_BACKFILL_INGEST < REALTIME_MIN_PRIORITY
    assert min(PRIORITY_HISTORY_SYNC, PRIORITY_REALTIME_INGEST, PRIORITY_REALTIME_UPKEEP) >= REALTIME_MIN_PRIORITY
    for overrides, reserved in (({}, 1), ({"worker_reserved_slots": 0}, 0), ({"worker_concurrency": 1}, 0),
                                ({"worker_concurrency": 3, "worker_reserved_slots": 5}, 2)):
        settings = load_settings(database_url=database_url, data_dir=tmp_path, **overrides)
        async with Runtime.open(settings) as rt:
            worker = rt.worker()
            assert (worker.reserved_slots, worker.reserved_min_priority) == (reserved, REALTIME_MIN_PRIORITY)


def test_reserved_slots_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from mailtide.config import load_settings

    monkeypatch.setenv("MAILTIDE_WORKER_RESERVED_SLOTS", "2")
    assert load_settings().worker_reserved_slots == 2
