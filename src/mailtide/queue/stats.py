"""A snapshot of the queue for operators: counts, waiting times, recent throughput."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import COMPLETED, FAILED, QUEUED, RUNNING, jobs

THROUGHPUT_WINDOWS_MINUTES = (1, 5, 15)


@dataclass(frozen=True)
class QueueStats:
    taken_at: float
    counts: dict[str, dict[str, int]]  # {state: {type: jobs}}
    due: int  # queued and due now
    scheduled: int  # queued for later (retry backoff, not_before)
    oldest_due_wait_seconds: float | None  # how long the longest-waiting due job has been due
    oldest_running_seconds: float | None
    finished: dict[int, dict[str, int]] = field(default_factory=dict)  # {minutes: {completed|failed: jobs}}

    def total(self, state: str) -> int:
        return sum(self.counts.get(state, {}).values())

    def completed_per_minute(self, minutes: int) -> float:
        return self.finished.get(minutes, {}).get(COMPLETED, 0) / minutes


async def collect_stats(
    engine: AsyncEngine, *, windows_minutes: Sequence[int] = THROUGHPUT_WINDOWS_MINUTES, now: float | None = None
) -> QueueStats:
    now = time.time() if now is None else now
    is_due = jobs.c.not_before <= now
    async with engine.connect() as conn:
        counts: dict[str, dict[str, int]] = {}
        by_state_and_type = sa.select(jobs.c.state, jobs.c.type, sa.func.count()).group_by(jobs.c.state, jobs.c.type)
        for state, job_type, number in await conn.execute(by_state_and_type):
            counts.setdefault(state, {})[job_type] = number
        queued = (await conn.execute(
            sa.select(
                sa.func.count().filter(is_due),
                sa.func.count().filter(~is_due),
                sa.func.min(jobs.c.not_before).filter(is_due),
            ).where(jobs.c.state == QUEUED)
        )).one()
        oldest_start = await conn.scalar(sa.select(sa.func.min(jobs.c.started_at)).where(jobs.c.state == RUNNING))
        finished: dict[int, dict[str, int]] = {}
        window_counts = [
            sa.func.count().filter(jobs.c.state == state, jobs.c.finished_at >= now - minutes * 60)
            for minutes in windows_minutes
            for state in (COMPLETED, FAILED)
        ]
        if window_counts:
            longest = max(windows_minutes)
            row = (await conn.execute(
                sa.select(*window_counts)
                .where(jobs.c.state.in_((COMPLETED, FAILED)), jobs.c.finished_at >= now - longest * 60)
            )).one()
            values = iter(row)
            for minutes in windows_minutes:
                finished[minutes] = {COMPLETED: next(values), FAILED: next(values)}
    return QueueStats(
        taken_at=now,
        counts=counts,
        due=queued[0],
        scheduled=queued[1],
        oldest_due_wait_seconds=None if queued[2] is None else max(0.0, now - queued[2]),
        oldest_running_seconds=None if oldest_start is None else max(0.0, now - oldest_start),
        finished=finished,
    )
