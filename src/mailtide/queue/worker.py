"""The worker runtime: claim jobs, run their handlers, record outcomes, heartbeat, rescue.

A Worker is generic: it maps job types to handlers `(job, ctx) -> None`. Whatever a handler
needs besides the job (database, Gmail client, ...) comes in through a closure or bound method.
Given a Scheduler, the worker also enqueues the periodic jobs while it runs (every worker may:
each run is inserted once per time slot whatever the number of workers).

Reserved slots: of its `concurrency` slots a worker may keep `reserved_slots` for jobs of priority
>= `reserved_min_priority`. Jobs below that priority never run more than concurrency - reserved_slots
at once, so urgent work finds a slot even when long, low-priority jobs are queued in the thousands;
urgent jobs may take every slot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mailtide.queue.completions import CompletionBatcher
from mailtide.queue.context import QueueJobContext
from mailtide.queue.job_queue import JobQueue, will_retry
from mailtide.queue.jobs import Fatal, Handler, Job, JobContext, Retryable
from mailtide.queue.periodic import Scheduler

logger = logging.getLogger(__name__)

ContextFactory = Callable[[Job, JobQueue], JobContext]

STALE_HEARTBEATS = 6  # a job is stale after this many missed heartbeat intervals


@dataclass
class WorkerStats:
    """What a worker did since it started (for summaries and tests)."""

    completed: int = 0
    failed: int = 0  # failed for good (fatal, unknown type, or out of attempts)
    retried: int = 0  # sent back to the queue with a backoff
    canceled: int = 0
    released: int = 0  # given back unfinished at shutdown
    refused: int = 0  # finishes the queue refused: the attempt had been rescued meanwhile


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def describe_exception(exc: BaseException) -> str:
    """The traceback text stored as last_error (clipped to its tail by the queue)."""
    return "".join(traceback.format_exception(exc)).strip()


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 4,
        heartbeat_seconds: float = 5.0,
        poll_seconds: float = 1.0,
        worker_id: str | None = None,
        context_factory: ContextFactory | None = None,
        types: Sequence[str] | None = None,
        shutdown_grace_seconds: float = 20.0,
        stale_after_seconds: float | None = None,
        scheduler: Scheduler | None = None,
        reserved_slots: int = 0,
        reserved_min_priority: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= reserved_slots < concurrency:
            raise ValueError("reserved_slots must be at least 0 and less than concurrency")
        self.queue = queue
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.reserved_slots = reserved_slots
        self.reserved_min_priority = reserved_min_priority
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.worker_id = worker_id or default_worker_id()
        self.types = list(types) if types is not None else None
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.stale_after_seconds = stale_after_seconds or heartbeat_seconds * STALE_HEARTBEATS
        self.scheduler = scheduler
        self.stats = WorkerStats()
        self._completions = CompletionBatcher(queue)
        self._context_factory: ContextFactory = context_factory or QueueJobContext
        self._in_flight: dict[asyncio.Task[None], Job] = {}
        self._stop_requested = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopped.set()
        self._grace = shutdown_grace_seconds

    # ------------------------------------------------------------------ public control

    @property
    def running_jobs(self) -> list[Job]:
        return list(self._in_flight.values())

    def request_stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming; run() then drains in-flight jobs for up to the grace period and returns.

        Safe to call from a signal handler.
        """
        if grace_seconds is not None:
            self._grace = grace_seconds
        self._stop_requested.set()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Request a stop and wait until run() has finished: no job of ours is left running."""
        self.request_stop(self.shutdown_grace_seconds if grace_seconds is None else grace_seconds)
        await self._stopped.wait()

    async def run(self) -> None:
        """Claim and run jobs until stopped."""
        if not self._stopped.is_set():
            raise RuntimeError("worker is already running")
        self._stopped.clear()
        self._stop_requested.clear()
        logger.info("worker.started worker_id=%s concurrency=%d reserved=%d(priority>=%d) types=%s",
                    self.worker_id, self.concurrency, self.reserved_slots, self.reserved_min_priority,
                    self.types or "all")
        background = [asyncio.create_task(self._heartbeat_and_rescue(), name=f"heartbeat-{self.worker_id}")]
        if self.scheduler is not None:
            background.append(asyncio.create_task(self.scheduler.run(), name=f"scheduler-{self.worker_id}"))
        try:
            await self._claim_loop()
        except asyncio.CancelledError:
            self._grace = 0.0  # cancelled from outside: release at once
            raise
        finally:
            try:
                await self._drain()
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                self._stopped.set()
                logger.info("worker.stopped worker_id=%s stats=%s", self.worker_id, self.stats)

    async def run_until_idle(self, timeout: float) -> None:  # noqa: ASYNC109 - part of the result
        """Run until no job is queued-and-due or running anywhere, then stop (tests, demo).

        Jobs scheduled for later (e.g. retries waiting out their backoff) do not count as work.

        Raises TimeoutError when the queue is still busy after `timeout` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        check_every = max(0.02, min(self.poll_seconds, 0.1))
        runner = asyncio.create_task(self.run(), name=f"worker-{self.worker_id}")
        try:
            while True:
                if runner.done():
                    runner.result()  # surfaces the error, if any
                    raise RuntimeError("worker stopped before the queue became idle")
                if not self._in_flight and await self.queue.is_idle(include_scheduled=False):
                    return
                if loop.time() >= deadline:
                    raise TimeoutError(f"queue not idle after {timeout:.1f}s")
                await asyncio.sleep(check_every)
        finally:
            self.request_stop(0.0)
            await asyncio.gather(runner, return_exceptions=True)

    # ------------------------------------------------------------------ the loop

    async def _claim_loop(self) -> None:
        while not self._stop_requested.is_set():
            free = self.concurrency - len(self._in_flight)
            if free > 0 and await self._claim_for_free_slots(free):
                continue  # maybe more is due: claim again (the next round waits if slots are full)
            await self._wait_for_change(listen_for_work=free > 0)

    async def _claim_for_free_slots(self, free: int) -> bool:
        """One claim for the free slots, started at once; True when more may be claimable now.

        While jobs of any priority may still take a slot, the claim is open to all (it returns
        the most urgent first); after that, only urgent jobs may take the reserved slots.
        """
        open_slots = min(free, self._slots_open_to_any_priority())
        min_priority = None if open_slots > 0 else self.reserved_min_priority
        limit = open_slots if open_slots > 0 else free
        try:
            claimed = await self.queue.claim(self.worker_id, limit=limit, types=self.types, min_priority=min_priority)
        except Exception:
            logger.exception("worker.claim_failed worker_id=%s", self.worker_id)
            return False
        for job in claimed:
            self._start(job)
        if len(claimed) < limit:
            return False
        # A full claim that took a non-urgent job had no urgent job left to take: unless slots
        # stay open to any priority, the next round would only look for urgent work in vain.
        took_non_urgent = any(not self._is_urgent(job) for job in claimed)
        return not took_non_urgent or self._slots_open_to_any_priority() > 0

    def _slots_open_to_any_priority(self) -> int:
        """How many more jobs below the reserved priority may start now."""
        non_urgent_running = sum(1 for job in self._in_flight.values() if not self._is_urgent(job))
        return max(0, self.concurrency - self.reserved_slots - non_urgent_running)

    def _is_urgent(self, job: Job) -> bool:
        return self.reserved_slots == 0 or job.priority >= self.reserved_min_priority

    async def _wait_for_change(self, *, listen_for_work: bool) -> None:
        """Until a slot frees, a stop is requested, work is announced, or the poll interval ends."""
        waiters = [
            asyncio.create_task(self._slot_freed.wait()),
            asyncio.create_task(self._stop_requested.wait()),
        ]
        if listen_for_work and len(self._in_flight) < self.concurrency:
            waiters.append(asyncio.create_task(self.queue.wait_for_work(self.poll_seconds)))
        try:
            await asyncio.wait(waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            self._slot_freed.clear()

    def _start(self, job: Job) -> None:
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
        self._in_flight[task] = job
        task.add_done_callback(self._on_job_task_done)

    def _on_job_task_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.pop(task, None)
        self._slot_freed.set()

    # ------------------------------------------------------------------ one job

    async def _execute(self, job: Job) -> None:
        handler = self.handlers.get(job.type)
        logger.debug("worker.job_started job_id=%s type=%s attempt=%s", job.id, job.type, job.attempts)
        try:
            ctx = self._context_factory(job, self.queue)
            if handler is None:
                raise Fatal(f"no handler for job type {job.type!r}")
            await handler(job, ctx)
        except Retryable as exc:
            await self._record_failure(job, f"{type(exc).__name__}: {exc}", retryable=True, delay=exc.delay)
        except Fatal as exc:
            await self._record_failure(job, f"{type(exc).__name__}: {exc}", retryable=False)
        except Exception as exc:
            # A bug or an unexpected error in one job: log it, retry it later, keep working.
            logger.exception("worker.job_crashed job_id=%s type=%s attempt=%s", job.id, job.type, job.attempts)
            await self._record_failure(job, describe_exception(exc), retryable=True)
        else:
            await self._record_success(job, ctx)

    async def _record_success(self, job: Job, ctx: JobContext) -> None:
        if not getattr(ctx, "saw_cancel_request", False):
            # The slot is free as soon as the handler returns: the completion is written with
            # others (group commit) while this worker already claims and runs the next jobs.
            written = self._completions.submit(job)
            written.add_done_callback(functools.partial(self._on_completion_written, job))
            return
        try:
            applied = await self.queue.mark_canceled(job, "canceled on request")
        except Exception:
            # The job stays running without heartbeats; the rescuer will hand it out again.
            logger.exception("worker.finish_failed job_id=%s", job.id)
            return
        self._count("canceled" if applied else "refused")

    def _on_completion_written(self, job: Job, written: asyncio.Future[bool]) -> None:
        if written.cancelled():
            return
        failure = written.exception()
        if failure is not None:
            # The job stays running without heartbeats; the rescuer will hand it out again.
            logger.error("worker.finish_failed job_id=%s error=%s: %s", job.id, type(failure).__name__, failure)
            return
        applied = written.result()
        self._count("completed" if applied else "refused")
        logger.debug("worker.job_finished job_id=%s type=%s applied=%s", job.id, job.type, applied)

    async def _record_failure(self, job: Job, error: str, *, retryable: bool, delay: float | None = None) -> None:
        try:
            applied = await self.queue.fail(job, error, retryable=retryable, delay=delay)
        except Exception:
            logger.exception("worker.finish_failed job_id=%s", job.id)
            return
        if not applied:
            self._count("refused")
        else:
            self._count("retried" if will_retry(job, retryable=retryable) else "failed")

    def _count(self, counter: str) -> None:
        setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    # ------------------------------------------------------------------ keeping jobs alive

    async def _heartbeat_and_rescue(self) -> None:
        loop = asyncio.get_running_loop()
        rescue_every = self.stale_after_seconds / 2
        next_rescue = loop.time()  # once at start: pick up what a crashed worker left behind
        while True:
            try:
                if loop.time() >= next_rescue:
                    next_rescue = loop.time() + rescue_every
                    await self.queue.rescue_stale(self.stale_after_seconds)
            except Exception:
                logger.exception("worker.rescue_failed worker_id=%s", self.worker_id)
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                if self._in_flight:
                    await self.queue.heartbeat(list(self._in_flight.values()))
            except Exception:
                logger.exception("worker.heartbeat_failed worker_id=%s", self.worker_id)

    async def _drain(self) -> None:
        """Wait up to the grace period for in-flight jobs, then cancel and release the rest."""
        try:
            await self._release_in_flight()
        finally:
            await self._completions.flush()

    async def _release_in_flight(self) -> None:
        if not self._in_flight:
            return
        tasks = dict(self._in_flight)
        logger.info("worker.draining worker_id=%s jobs=%d grace=%.1fs", self.worker_id, len(tasks), self._grace)
        if self._grace > 0:
            await asyncio.wait(tasks.keys(), timeout=self._grace)
        unfinished = {task: job for task, job in tasks.items() if not task.done()}
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        # A cancelled job may have handed its completion in already: write it before releasing,
        # since release gives the attempt back and a later write could then match a new attempt.
        await self._completions.flush()
        if unfinished:
            try:
                released = await self.queue.release(unfinished.values())
            except Exception:
                # Left running without heartbeats: the rescuer requeues them later.
                logger.exception("worker.release_failed worker_id=%s jobs=%d", self.worker_id, len(unfinished))
                return
            self.stats.released += released
            logger.info("worker.released worker_id=%s jobs=%d", self.worker_id, released)
