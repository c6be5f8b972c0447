"""Group commit of job completions.

A worker running many short jobs would spend most of its time on one small transaction per
finished job. Here the first completion is written at once, and the completions that arrive while
that write is in flight go together in the next statement: no added latency when jobs are rare,
one round trip for many jobs when they are not. Each caller still learns whether its own
completion was applied (the guard on (id, attempts) is per job).
"""

from __future__ import annotations

import asyncio
import logging

from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # two parameters per job: far below both backends' limits


class CompletionBatcher:
    def __init__(self, queue: JobQueue, *, max_batch: int = MAX_BATCH) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self._pending: list[tuple[Job, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    def submit(self, job: Job) -> asyncio.Future[bool]:
        """Hand in `job`'s completion; the future says whether it was applied (False: refused,
        the attempt was rescued meanwhile) or raises what the write raised."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending(), name="mailtide-completions")
        return future

    async def complete(self, job: Job) -> bool:
        """submit() and wait for the outcome."""
        # Shielded: a caller cancelled at shutdown must not cancel the write of the whole batch.
        return await asyncio.shield(self.submit(job))

    async def flush(self) -> None:
        """Wait until every completion handed in so far is written (or has failed)."""
        writer = self._writer
        if writer is not None:
            await asyncio.gather(writer, return_exceptions=True)

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                applied = await self.queue.complete_many([job for job, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for job, future in batch:
                if not future.done():
                    future.set_result(job.id in applied)
            if len(batch) > 1:
                logger.debug("queue.completed_batch jobs=%d applied=%d", len(batch), len(applied))
