"""The JobContext a handler receives from the worker, backed by the queue."""

from __future__ import annotations

from typing import Any

from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job


class QueueJobContext:
    """Records steps in `job_steps` and reads the job's cancel flag from the database."""

    def __init__(self, job: Job, queue: JobQueue) -> None:
        self.job = job
        self.queue = queue
        self.saw_cancel_request = False

    async def step(self, name: str, detail: dict[str, Any] | None = None) -> None:
        await self.queue.add_step(self.job, name, detail)

    async def cancel_requested(self) -> bool:
        requested = await self.queue.is_cancel_requested(self.job)
        # Remembered so the worker can end the job `canceled` when the handler stops early.
        self.saw_cancel_request = self.saw_cancel_request or requested
        return requested
