"""The durable job queue and its worker runtime."""

from mailtide.queue.backoff import backoff_delay
from mailtide.queue.context import QueueJobContext
from mailtide.queue.job_queue import EnqueueRaceError, JobQueue, will_retry
from mailtide.queue.jobs import Fatal, Handler, Job, JobContext, JobSpec, Retryable
from mailtide.queue.periodic import DailyAt, Every, Schedule, Scheduler
from mailtide.queue.records import JobStep
from mailtide.queue.retention import PRUNE, RetentionPolicy, prune_handler, prune_schedule
from mailtide.queue.wakeup import LocalWakeUp, WakeUp, wakeup_for
from mailtide.queue.worker import Worker, WorkerStats

__all__ = [
    "PRUNE",
    "DailyAt",
    "EnqueueRaceError",
    "Every",
    "Fatal",
    "Handler",
    "Job",
    "JobContext",
    "JobQueue",
    "JobSpec",
    "JobStep",
    "LocalWakeUp",
    "QueueJobContext",
    "RetentionPolicy",
    "Retryable",
    "Schedule",
    "Scheduler",
    "WakeUp",
    "Worker",
    "WorkerStats",
    "backoff_delay",
    "prune_handler",
    "prune_schedule",
    "wakeup_for",
    "will_retry",
]
