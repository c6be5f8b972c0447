"""The periodic jobs of real-time sync, for the worker's scheduler: the polling fallback always
(without Pub/Sub it is the only way new mail arrives), the watch sweep when a topic is configured.
Both are cheap sweeps that enqueue per-account work only where it is due.
"""

from __future__ import annotations

from mailtide.config import Settings
from mailtide.queue.jobs import JobSpec
from mailtide.queue.periodic import Every, Schedule
from mailtide.sync import jobtypes


def realtime_schedules(settings: Settings) -> list[Schedule]:
    cadence = Every(settings.realtime_check_seconds)
    schedules = [
        Schedule(
            "poll.fallback",
            cadence,
            JobSpec(type=jobtypes.POLL_FALLBACK, priority=jobtypes.PRIORITY_REALTIME_UPKEEP, max_attempts=3),
        )
    ]
    if settings.pubsub_topic is not None:
        schedules.append(
            Schedule(
                "watch.sweep",
                cadence,
                JobSpec(type=jobtypes.WATCH_RENEW, priority=jobtypes.PRIORITY_REALTIME_UPKEEP, max_attempts=3),
            )
        )
    return schedules
