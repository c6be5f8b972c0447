"""Periodic jobs: each run enqueued exactly once per (schedule name, time slot), by any worker.

Time is cut into slots by a cadence (`Every(300)`: slot n covers [300n, 300n+300) in epoch seconds;
`DailyAt(3, 30)`: one slot per day starting 03:30 UTC). Every worker runs a Scheduler; when it
sees a slot it has not seen, it inserts (name, slot) into `schedule_slots` and, only if that row is
new, enqueues the job in the same transaction. So any number of workers, started at any time,
enqueue each run once, and a crash between the two writes cannot lose or double a run. A slot
missed while no worker ran is not made up; the current one runs as soon as a worker starts.

The job carries the idempotency key `schedule:<name>` unless its spec has one: while a run is
still queued or running, the next slot maps to it instead of piling up behind it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from mailtide.db.schema import schedule_slots
from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job, JobSpec

logger = logging.getLogger(__name__)

CHECK_AT_LEAST_EVERY_SECONDS = 60.0  # also re-checks after the wall clock jumped
SCHEDULE_KEY_PREFIX = "schedule:"


class Cadence(Protocol):
    def slot_at(self, now: float) -> int:
        """The slot that contains the instant `now` (epoch seconds)."""

    def slot_start(self, slot: int) -> float:
        """When `slot` begins (epoch seconds)."""


@dataclass(frozen=True)
class Every:
    """Every `seconds` seconds, aligned to the epoch (so all workers agree on the slots)."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ValueError("Every(seconds) needs seconds > 0")

    @classmethod
    def minutes(cls, minutes: float) -> Every:
        return cls(minutes * 60.0)

    def slot_at(self, now: float) -> int:
        return math.floor(now / self.seconds)

    def slot_start(self, slot: int) -> float:
        return slot * self.seconds


@dataclass(frozen=True)
class DailyAt:
    """Once a day at hour:minute UTC; the slot is the day (proleptic ordinal) of that run."""

    hour: int
    minute: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.hour < 24 and 0 <= self.minute < 60):
            raise ValueError("DailyAt needs 0 <= hour < 24 and 0 <= minute < 60")

    def slot_at(self, now: float) -> int:
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        day = moment.date()
        if (moment.hour, moment.minute) < (self.hour, self.minute):
            day -= dt.timedelta(days=1)  # today's run has not started: we are in yesterday's slot
        return day.toordinal()

    def slot_start(self, slot: int) -> float:
        day = dt.date.fromordinal(slot)
        return dt.datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=dt.UTC).timestamp()


@dataclass(frozen=True)
class Schedule:
    """A named periodic job. The slot and its start time are added to the payload."""

    name: str
    cadence: Cadence
    job: JobSpec

    def spec_for(self, slot: int) -> JobSpec:
        return dataclasses.replace(
            self.job,
            payload={**self.job.payload, "schedule": self.name, "slot": slot,
                     "slot_start": self.cadence.slot_start(slot)},
            idempotency_key=self.job.idempotency_key or SCHEDULE_KEY_PREFIX + self.name,
        )


class Scheduler:
    """Enqueues the runs of its schedules; cheap to run in every worker process."""

    def __init__(
        self,
        queue: JobQueue,
        schedules: Sequence[Schedule],
        *,
        check_at_least_every: float = CHECK_AT_LEAST_EVERY_SECONDS,
    ) -> None:
        names = [s.name for s in schedules]
        if len(names) != len(set(names)):
            raise ValueError(f"schedule names must be unique: {names}")
        self.queue = queue
        self.schedules = list(schedules)
        self.check_at_least_every = check_at_least_every
        self._seen_slot: dict[str, int] = {}

    async def tick(self, now: float | None = None) -> list[Job]:
        """Enqueue every schedule whose current slot nobody has enqueued yet; returns what this
        call enqueued (runs already enqueued by another worker are not included)."""
        now = time.time() if now is None else now
        enqueued: list[Job] = []
        for schedule in self.schedules:
            slot = schedule.cadence.slot_at(now)
            if self._seen_slot.get(schedule.name) == slot:
                continue  # this process already settled the slot: no database round trip
            job = await self._enqueue_slot(schedule, slot)
            self._seen_slot[schedule.name] = slot
            if job is not None:
                enqueued.append(job)
        return enqueued

    async def run(self) -> None:
        """Tick at every slot boundary (and at least every `check_at_least_every` seconds) until cancelled."""
        logger.info("queue.scheduler_started schedules=%s", ",".join(s.name for s in self.schedules))
        while True:
            try:
                await self.tick()
            except Exception:
                # Keep scheduling: the next tick retries the slots this one could not write.
                logger.exception("queue.scheduler_tick_failed")
            await asyncio.sleep(self.seconds_until_next_slot())

    def seconds_until_next_slot(self, now: float | None = None) -> float:
        now = time.time() if now is None else now
        waits = [s.cadence.slot_start(s.cadence.slot_at(now) + 1) - now for s in self.schedules]
        # A few ms past the boundary, so slot_at() already gives the new slot.
        return min([self.check_at_least_every, *waits]) + 0.005

    async def _enqueue_slot(self, schedule: Schedule, slot: int) -> Job | None:
        async with self.queue.engine.begin() as conn:
            claimed = (await conn.execute(_insert_slot(conn.dialect.name, schedule.name, slot))).first()
            if claimed is None:
                return None  # another worker enqueued this run
            job, created = await self.queue.enqueue(schedule.spec_for(slot), conn=conn)
            await conn.execute(
                sa.update(schedule_slots)
                .where(schedule_slots.c.name == schedule.name, schedule_slots.c.slot == slot)
                .values(job_id=job.id)
            )
        logger.info("queue.schedule_enqueued schedule=%s slot=%s job_id=%s created=%s",
                    schedule.name, slot, job.id, created)
        return job


def _insert_slot(dialect_name: str, name: str, slot: int) -> sa.Executable:
    insert = postgresql.insert(schedule_slots) if dialect_name == "postgresql" else sqlite.insert(schedule_slots)
    return (
        insert.values(name=name, slot=slot, created_at=time.time())
        .on_conflict_do_nothing(index_elements=[schedule_slots.c.name, schedule_slots.c.slot])
        .returning(schedule_slots.c.name)
    )


class SchedulerService:
    """A Scheduler as a background service of `mailtide serve` (the protocol in service.py)."""

    name = "scheduler"

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._stop_requested = asyncio.Event()

    async def run(self) -> None:
        self._stop_requested.clear()
        ticking = asyncio.create_task(self.scheduler.run(), name="mailtide-scheduler")
        stopping = asyncio.create_task(self._stop_requested.wait())
        try:
            await asyncio.wait([ticking, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (ticking, stopping):
                task.cancel()
            await asyncio.gather(ticking, stopping, return_exceptions=True)

    async def stop(self, grace_seconds: float) -> None:
        self._stop_requested.set()


def background_service(runtime: Any) -> SchedulerService:
    """The hook `mailtide serve` looks for (service.optional_services): the runtime's schedules."""
    return SchedulerService(runtime.scheduler())
