"""Retention: the `queue.prune` job deletes finished jobs (and their steps) past their age."""

from __future__ import annotations

from dataclasses import dataclass

from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Handler, Job, JobContext, JobSpec
from mailtide.queue.periodic import Cadence, DailyAt, Schedule

PRUNE = "queue.prune"
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class RetentionPolicy:
    completed_seconds: float = DAY_SECONDS  # completed jobs: kept a day
    failed_seconds: float = 7 * DAY_SECONDS  # failed and canceled jobs: kept a week, for inspection


def prune_handler(queue: JobQueue, policy: RetentionPolicy) -> Handler:
    async def prune(job: Job, ctx: JobContext) -> None:
        deleted = await queue.prune(policy.completed_seconds, policy.failed_seconds)
        await ctx.step("pruned", {"jobs": deleted})

    return prune


def prune_schedule(cadence: Cadence | None = None) -> Schedule:
    """Pruning once a day (03:30 UTC unless told otherwise), at low priority."""
    return Schedule(name=PRUNE, cadence=cadence or DailyAt(3, 30), job=JobSpec(PRUNE, priority=-20, max_attempts=3))
