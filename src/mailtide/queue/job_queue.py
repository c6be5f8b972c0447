"""The durable job queue: enqueue, claim, heartbeat, finish, rescue, inspect, prune.

Every state change of a running job is guarded on (id, attempts, state='running'): a job that
was rescued from a silent worker and claimed again has a higher attempt number, so the late
finish of the old attempt matches no row and is refused (the methods return False).

On PostgreSQL every transaction that makes jobs claimable also sends a NOTIFY (delivered at
commit) so that idle workers in other processes wake at once; see queue/pg_listen.py. The
enqueue INSERTs send it themselves (an extra RETURNING column): no round trip of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.db.schema import (
    ACTIVE_STATES,
    CANCELED,
    COMPLETED,
    FAILED,
    QUEUED,
    RUNNING,
    job_steps,
    jobs,
    schedule_slots,
)
from mailtide.queue import statements
from mailtide.queue.backoff import backoff_delay
from mailtide.queue.jobs import Job, JobSpec
from mailtide.queue.pg_listen import NOTIFY_NEW_WORK
from mailtide.queue.records import (
    JobStep,
    clip_error,
    job_from_inserted_row,
    job_from_row,
    row_from_spec,
    step_from_row,
)
from mailtide.queue.stats import QueueStats, collect_stats
from mailtide.queue.wakeup import WakeUp, wakeup_for

logger = logging.getLogger(__name__)

ENQUEUE_CHUNK = 500
PRUNE_CHUNK = 2_000  # rows per INSERT: ~13 parameters each stays far below both backends' limits
RACE_RETRIES = 5
DEFAULT_RETRY_ATTEMPTS = 10
FOLLOW_UP_SUFFIX = ":next"


class EnqueueRaceError(RuntimeError):
    """An idempotent enqueue kept colliding with jobs that vanished (should never persist)."""


def will_retry(job: Job, *, retryable: bool) -> bool:
    """Whether a failure of this attempt sends the job back to the queue (vs. failed for good)."""
    return retryable and job.attempts < job.max_attempts


def _guard(job: Job) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.id == job.id, jobs.c.attempts == job.attempts, jobs.c.state == RUNNING)


def _canceled_or(state: str) -> sa.ColumnElement[Any]:
    # A job someone asked to cancel ends canceled instead of going back to the queue.
    return sa.case((jobs.c.cancel_requested, CANCELED), else_=state)


DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


def _violated_constraint(exc: IntegrityError) -> str | None:
    """The constraint or unique index an IntegrityError names, when the driver tells (asyncpg:
    `constraint_name` of its exception, which SQLAlchemy's adapter chains as the cause)."""
    return getattr(exc.orig.__cause__, "constraint_name", None) if exc.orig is not None else None


def _is_claim_race(exc: DBAPIError) -> bool:
    """Concurrent claimers starting jobs of the same lanes (PostgreSQL): one meets the other's new
    entry in the running-lane index, or, when each waits for the other's entry, the deadlock
    detector cancels one of them. Either way, claiming again sees those lanes busy and skips them."""
    if isinstance(exc, IntegrityError):
        return _is_running_lane_conflict(exc)
    driver_error = exc.orig.__cause__ if exc.orig is not None else None
    return getattr(driver_error, "sqlstate", None) == DEADLOCK_DETECTED


def _is_running_lane_conflict(exc: IntegrityError) -> bool:
    constraint = _violated_constraint(exc)
    if constraint is not None:
        return constraint == statements.RUNNING_LANE_INDEX
    # SQLite names only the columns, in its message: "UNIQUE constraint failed: jobs.lane".
    return str(exc.orig).endswith("UNIQUE constraint failed: jobs.lane")


class JobQueue:
    """A job queue stored in the `jobs` / `job_steps` tables of a SQLite or PostgreSQL database."""

    def __init__(self, engine: AsyncEngine, *, wakeup: WakeUp | None = None) -> None:
        self.engine = engine
        self.dialect_name = engine.dialect.name
        self.wakeup: WakeUp = wakeup or wakeup_for(engine)
        # PostgreSQL: statements that are a transaction on their own run in autocommit mode,
        # which spares the BEGIN and COMMIT round trips (SQLite keeps BEGIN IMMEDIATE: db/sqlite.py).
        self._autocommit: AsyncEngine | None = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect_name == "postgresql" else None
        )
        self._insert_batch = statements.insert_batch_skipping_active_keys(self.dialect_name)

    async def close(self) -> None:
        """Release the wake-up's resources (PostgreSQL: its LISTEN connection); before engine.dispose()."""
        await self.wakeup.close()

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _transaction(self, conn: AsyncConnection | None = None) -> AsyncIterator[AsyncConnection]:
        """The caller's connection (its transaction, its commit) or a new transaction of our own."""
        if conn is not None:
            yield conn
            return
        async with self.engine.begin() as own:
            yield own

    @asynccontextmanager
    async def _single_statements(self, conn: AsyncConnection | None = None) -> AsyncIterator[AsyncConnection]:
        """For work whose every statement is atomic on its own and correct whatever commits
        between them: the caller's connection, an autocommit one (PostgreSQL), or a transaction."""
        if conn is not None or self._autocommit is None:
            async with self._transaction(conn) as tx:
                yield tx
            return
        async with self._autocommit.connect() as own:
            yield own

    async def _announce(self, conn: AsyncConnection) -> None:
        """Inside a transaction that made jobs claimable: tell listeners in other processes at commit."""
        if self.dialect_name == "postgresql":
            await conn.execute(NOTIFY_NEW_WORK)

    async def _update_guarded(self, job: Job, values: dict[str, Any]) -> bool:
        async with self._single_statements() as conn:
            result = await conn.execute(sa.update(jobs).where(_guard(job)).values(**values))
        return result.rowcount == 1

    # ------------------------------------------------------------------ enqueue

    async def enqueue(self, spec: JobSpec, *, conn: AsyncConnection | None = None) -> tuple[Job, bool]:
        """Add a job; returns (job, created).

        With an idempotency key held by an active (queued or running) job, nothing is inserted
        and that job is returned with created=False. Pass `conn` to enqueue inside your own
        transaction (the job then exists only once you commit).
        """
        now = time.time()
        row = row_from_spec(spec, now)
        # Each INSERT or SELECT of the race loop stands on its own: no transaction needed around them.
        async with self._single_statements(conn) as tx:
            for _ in range(RACE_RETRIES):
                inserted = (await tx.execute(statements.insert_one_skipping_active_key(self.dialect_name), row)).first()
                if inserted is not None:
                    job = job_from_inserted_row(row, inserted.id)
                    break
                assert spec.idempotency_key is not None  # only a key can conflict
                existing = (await tx.execute(statements.select_active_by_keys([spec.idempotency_key]))).first()
                if existing is not None:
                    logger.debug("queue.enqueue_deduplicated key=%s job_id=%s", spec.idempotency_key, existing.id)
                    return job_from_row(existing), False
                # The active holder of the key finished between our INSERT and SELECT: try again.
            else:
                raise EnqueueRaceError(f"could not enqueue job with key {spec.idempotency_key!r}")
        logger.debug("queue.enqueued job_id=%s type=%s key=%s", job.id, job.type, job.idempotency_key)
        self.wakeup.notify()
        return job, True

    async def enqueue_many(self, specs: Sequence[JobSpec], *, conn: AsyncConnection | None = None) -> list[Job]:
        """Add many jobs with one INSERT per chunk; returns one Job per spec, in the same order.

        The idempotency rule of `enqueue` holds, also between duplicates inside `specs`: a spec
        whose key is already taken (by an active job or an earlier spec) maps to that job.
        Jobs created here are built from the specs and their new ids, not read back.
        """
        if not specs:
            return []
        now = time.time()
        # Keys in sorted order: concurrent batches then take their key locks in the same order
        # and cannot deadlock each other on PostgreSQL.
        first_spec_by_key = {s.idempotency_key: s for s in reversed(specs) if s.idempotency_key is not None}
        keyed_rows = [row_from_spec(first_spec_by_key[key], now) for key in sorted(first_spec_by_key)]
        unkeyed_rows = [row_from_spec(s, now) for s in specs if s.idempotency_key is None]
        # A batch that fits one INSERT is atomic without a transaction around it (PostgreSQL:
        # autocommit spares BEGIN and COMMIT); the race loop's later statements stand on their own.
        one_insert = not (keyed_rows and unkeyed_rows) and len(keyed_rows or unkeyed_rows) <= ENQUEUE_CHUNK
        async with (self._single_statements(conn) if one_insert else self._transaction(conn)) as tx:
            unkeyed_jobs = await self._insert_unkeyed(tx, unkeyed_rows)
            by_key, keyed_created = await self._insert_keyed(tx, keyed_rows)
        created = len(unkeyed_jobs) + keyed_created
        logger.debug("queue.enqueued_many specs=%d created=%d", len(specs), created)
        if created:
            self.wakeup.notify()
        unkeyed = iter(unkeyed_jobs)
        return [by_key[s.idempotency_key] if s.idempotency_key is not None else next(unkeyed) for s in specs]

    async def _insert_rows(self, tx: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[sa.Row[Any]]:
        """One batch INSERT; (id, idempotency_key) of the rows that got in."""
        parameters = statements.insert_batch_parameters(self.dialect_name, rows)
        return list(await tx.execute(self._insert_batch, parameters))

    async def _insert_unkeyed(self, tx: AsyncConnection, rows: Sequence[dict[str, Any]]) -> list[Job]:
        """Insert rows without an idempotency key (all of them get in); their jobs, in row order."""
        created: list[Job] = []
        for start in range(0, len(rows), ENQUEUE_CHUNK):
            chunk = rows[start : start + ENQUEUE_CHUNK]
            # Rows of one multi-row INSERT get ascending ids in the order given, on both backends.
            ids = sorted(inserted.id for inserted in await self._insert_rows(tx, chunk))
            if len(ids) != len(chunk):
                raise RuntimeError("enqueue_many: INSERT returned fewer rows than it was given")
            created.extend(map(job_from_inserted_row, chunk, ids))
        return created

    async def _insert_keyed(self, tx: AsyncConnection, rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Job], int]:
        """Insert rows with distinct idempotency keys; returns {key: the active job holding it}
        (the new one, or the one that held the key already) and how many jobs were created."""
        by_key: dict[str, Job] = {}
        created = 0
        for start in range(0, len(rows), ENQUEUE_CHUNK):
            pending = {row["idempotency_key"]: row for row in rows[start : start + ENQUEUE_CHUNK]}
            for _ in range(RACE_RETRIES):
                for inserted in await self._insert_rows(tx, list(pending.values())):
                    by_key[inserted.idempotency_key] = job_from_inserted_row(
                        pending[inserted.idempotency_key], inserted.id
                    )
                    created += 1
                missing = [key for key in pending if key not in by_key]
                if missing:
                    for holder in await tx.execute(statements.select_active_by_keys(missing)):
                        by_key[holder.idempotency_key] = job_from_row(holder)
                # Whatever is still missing lost a race with a job that just finished.
                pending = {key: row for key, row in pending.items() if key not in by_key}
                if not pending:
                    break
            else:
                raise EnqueueRaceError(f"could not enqueue {len(pending)} keyed jobs")
        return by_key, created

    async def enqueue_coalesced(self, spec: JobSpec) -> Job:
        """At most one *queued* job per key, without losing a change announced mid-run.

        If the active job with this key is queued, it will see the change: return it. If it is
        running, it may already be past the change, so a follow-up is enqueued under
        `<key>:next` (itself unique among active jobs) and returned; an existing active
        follow-up is returned as it is.
        """
        if spec.idempotency_key is None:
            raise ValueError("enqueue_coalesced needs an idempotency_key")
        job, created = await self.enqueue(spec)
        if created or job.state == QUEUED:
            return job
        follow_up = JobSpec(
            type=spec.type,
            payload=spec.payload,
            priority=spec.priority,
            not_before=spec.not_before,
            idempotency_key=spec.idempotency_key + FOLLOW_UP_SUFFIX,
            lane=spec.lane,
            account_id=spec.account_id,
            max_attempts=spec.max_attempts,
        )
        next_job, next_created = await self.enqueue(follow_up)
        logger.debug(
            "queue.enqueue_coalesced key=%s running_job_id=%s follow_up_id=%s created=%s",
            spec.idempotency_key, job.id, next_job.id, next_created,
        )
        return next_job

    async def wait_for_work(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll interval, not a deadline
        """Sleep until a job is enqueued in this process (True) or `timeout` passes (False)."""
        return await self.wakeup.wait(timeout)

    # ------------------------------------------------------------------ claim and finish

    async def claim(
        self, worker_id: str, limit: int = 1, types: Sequence[str] | None = None, *, min_priority: int | None = None
    ) -> list[Job]:
        """Take up to `limit` due queued jobs (priority desc, then oldest), at most one per lane,
        skipping lanes that already have a running job. They come back running, attempts + 1.
        min_priority: only jobs of at least that priority (what a worker's reserved slots take)."""
        if limit < 1:
            return []
        statement = statements.claim(
            dialect_name=self.dialect_name, limit=limit, filter_types=types is not None,
            filter_priority=min_priority is not None,
        )
        for _ in range(RACE_RETRIES):
            parameters = statements.claim_parameters(
                worker_id=worker_id, now=time.time(), limit=limit, types=types, min_priority=min_priority
            )
            try:
                async with self._single_statements() as conn:
                    rows = (await conn.execute(statement, parameters)).all()
            except DBAPIError as exc:
                if not _is_claim_race(exc):
                    raise
                logger.debug("queue.claim_lane_race worker_id=%s error=%s", worker_id, type(exc.orig).__name__)
                continue
            claimed = sorted((job_from_row(r) for r in rows), key=lambda j: (-j.priority, j.id))
            for job in claimed:
                logger.debug("queue.claimed job_id=%s type=%s attempt=%s worker_id=%s",
                             job.id, job.type, job.attempts, worker_id)
            return claimed
        logger.warning("queue.claim_gave_up worker_id=%s reason=lane_conflicts", worker_id)
        return []

    async def complete(self, job: Job, result_note: str | None = None) -> bool:
        """Mark a running job completed (the note, if any, is recorded as a step)."""
        now = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                sa.update(jobs).where(_guard(job)).values(state=COMPLETED, finished_at=now, worker_id=None)
            )
            applied = result.rowcount == 1
            if applied and result_note is not None:
                await conn.execute(sa.insert(job_steps).values(
                    job_id=job.id, attempt=job.attempts, name="result", detail={"note": result_note}, at=now
                ))
        if not applied:
            logger.warning("queue.finish_refused job_id=%s attempt=%s outcome=completed", job.id, job.attempts)
        return applied

    async def complete_many(self, finished: Sequence[Job]) -> set[int]:
        """Mark many running jobs completed in one statement; returns the ids it applied to.

        Each job is guarded on its own (id, attempts): a rescued attempt in the batch is refused
        without holding back the others.
        """
        if not finished:
            return set()
        parameters = {"finished": [(job.id, job.attempts) for job in finished], "finished_at": time.time()}
        async with self._single_statements() as conn:
            applied = set((await conn.execute(statements.complete_running(), parameters)).scalars())
        for job in finished:
            if job.id not in applied:
                logger.warning("queue.finish_refused job_id=%s attempt=%s outcome=completed", job.id, job.attempts)
        return applied

    async def fail(self, job: Job, error: str, *, retryable: bool, delay: float | None = None) -> bool:
        """Record a failed attempt: back to the queue after a backoff (or `delay`) when retryable
        and attempts remain, otherwise failed for good."""
        now = time.time()
        if will_retry(job, retryable=retryable):
            wait = backoff_delay(job.attempts) if delay is None else max(0.0, delay)
            values: dict[str, Any] = {
                "state": _canceled_or(QUEUED),
                "not_before": now + wait,
                "finished_at": sa.case((jobs.c.cancel_requested, now), else_=sa.null()),
                "last_error": clip_error(error),
                "worker_id": None,
                "heartbeat_at": None,
            }
            outcome = f"retry_in_{wait:.1f}s"
        else:
            values = {"state": FAILED, "finished_at": now, "last_error": clip_error(error), "worker_id": None}
            outcome = "failed"
        applied = await self._update_guarded(job, values)
        if applied:
            last_line = error.strip().splitlines()[-1] if error.strip() else ""
            logger.info("queue.job_failed job_id=%s type=%s attempt=%s/%s outcome=%s error=%r",
                        job.id, job.type, job.attempts, job.max_attempts, outcome, last_line)
        else:
            logger.warning("queue.finish_refused job_id=%s attempt=%s outcome=%s", job.id, job.attempts, outcome)
        return applied

    async def mark_canceled(self, job: Job, note: str | None = None) -> bool:
        """End a running job as canceled (its handler stopped because cancel was requested)."""
        values: dict[str, Any] = {"state": CANCELED, "finished_at": time.time(), "worker_id": None}
        if note is not None:
            values["last_error"] = clip_error(note)
        return await self._update_guarded(job, values)

    async def release(self, jobs_to_release: Iterable[Job]) -> int:
        """Give running jobs back to the queue without charging the attempt (graceful shutdown).

        A job whose cancel was requested ends canceled instead.
        """
        now = time.time()
        released = 0
        async with self.engine.begin() as conn:
            for job in jobs_to_release:
                result = await conn.execute(
                    sa.update(jobs)
                    .where(_guard(job))
                    .values(
                        state=_canceled_or(QUEUED),
                        attempts=jobs.c.attempts - 1,
                        not_before=now,
                        finished_at=sa.case((jobs.c.cancel_requested, now), else_=sa.null()),
                        worker_id=None,
                        heartbeat_at=None,
                    )
                )
                if result.rowcount == 1:
                    released += 1
                    logger.info("queue.job_released job_id=%s type=%s", job.id, job.type)
            if released:
                await self._announce(conn)
        return released

    async def heartbeat(self, running_jobs: Iterable[Job]) -> int:
        """Refresh heartbeat_at of these running jobs in one statement; returns how many matched."""
        guards = [_guard(job) for job in running_jobs]
        if not guards:
            return 0
        async with self._single_statements() as conn:
            result = await conn.execute(sa.update(jobs).where(sa.or_(*guards)).values(heartbeat_at=time.time()))
        return result.rowcount

    async def rescue_stale(self, older_than_seconds: float) -> int:
        """Requeue (with backoff) or fail running jobs whose heartbeat is older than the threshold."""
        now = time.time()
        cutoff = now - older_than_seconds
        last_sign_of_life = sa.func.coalesce(jobs.c.heartbeat_at, jobs.c.started_at, 0.0)
        stale_query = (
            sa.select(jobs)
            .where(jobs.c.state == RUNNING, last_sign_of_life < cutoff)
            .order_by(jobs.c.id)
            .with_for_update(skip_locked=True)
        )
        rescued = 0
        async with self.engine.begin() as conn:
            stale = [job_from_row(r) for r in await conn.execute(stale_query)]
            for job in stale:
                error = f"heartbeat lost: worker {job.worker_id} silent since {job.heartbeat_at or job.started_at}"
                if will_retry(job, retryable=True):
                    values: dict[str, Any] = {
                        "state": _canceled_or(QUEUED),
                        "not_before": now + backoff_delay(job.attempts),
                        "finished_at": sa.case((jobs.c.cancel_requested, now), else_=sa.null()),
                    }
                else:
                    values = {"state": FAILED, "finished_at": now}
                values.update(last_error=error, worker_id=None, heartbeat_at=None)
                result = await conn.execute(
                    sa.update(jobs).where(_guard(job), last_sign_of_life < cutoff).values(**values)
                )
                if result.rowcount == 1:
                    rescued += 1
                    logger.warning(
                        "queue.job_rescued job_id=%s type=%s attempt=%s/%s worker_id=%s silent_for=%.1fs",
                        job.id, job.type, job.attempts, job.max_attempts, job.worker_id,
                        now - (job.heartbeat_at or job.started_at or now),
                    )
        return rescued

    # ------------------------------------------------------------------ steps and cancel

    async def add_step(self, job: Job, name: str, detail: dict[str, Any] | None = None) -> None:
        async with self._single_statements() as conn:
            await conn.execute(sa.insert(job_steps).values(
                job_id=job.id, attempt=job.attempts, name=name, detail=detail, at=time.time()
            ))

    async def steps(self, job_id: int) -> list[JobStep]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(sa.select(job_steps).where(job_steps.c.job_id == job_id).order_by(job_steps.c.id))
            return [step_from_row(r) for r in rows]

    async def cancel(self, job_id: int) -> Job | None:
        """Queued -> canceled now; running -> cancel_requested (the handler decides when to stop).

        Returns the job as it is afterwards, or None if there is no such job.
        """
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state == QUEUED)
                .values(state=CANCELED, finished_at=time.time())
            )
            await conn.execute(
                sa.update(jobs).where(jobs.c.id == job_id, jobs.c.state == RUNNING).values(cancel_requested=True)
            )
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        if row is None:
            return None
        job = job_from_row(row)
        logger.info("queue.cancel_requested job_id=%s state=%s", job.id, job.state)
        return job

    async def is_cancel_requested(self, job: Job) -> bool:
        async with self.engine.connect() as conn:
            flag = await conn.scalar(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job.id))
        return bool(flag)

    async def retry(self, job_id: int, *, extra_attempts: int = DEFAULT_RETRY_ATTEMPTS) -> Job | None:
        """Put a failed or canceled job back in the queue, due now.

        Attempts are kept, never reset: they only grow, so the finish of some old attempt can
        never pass the guard of a new one. Instead max_attempts becomes attempts + extra_attempts.
        If another active job holds the same idempotency key, that job is returned and this one
        stays as it is. Returns None for an unknown job or one that is not failed/canceled.
        """
        for _ in range(RACE_RETRIES):
            try:
                async with self.engine.begin() as conn:
                    row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
                    if row is None or row.state not in (FAILED, CANCELED):
                        return None
                    if row.idempotency_key is not None:
                        holder = (await conn.execute(statements.select_active_by_keys([row.idempotency_key]))).first()
                        if holder is not None:
                            return job_from_row(holder)
                    updated = (await conn.execute(
                        sa.update(jobs)
                        .where(jobs.c.id == job_id, jobs.c.state.in_((FAILED, CANCELED)))
                        .values(
                            state=QUEUED,
                            not_before=time.time(),
                            max_attempts=jobs.c.attempts + max(1, extra_attempts),
                            finished_at=None,
                            cancel_requested=False,
                            worker_id=None,
                        )
                        .returning(*jobs.c)
                    )).first()
                    if updated is not None:
                        await self._announce(conn)
            except IntegrityError:
                continue  # an active job took the key just now; the next round returns it
            if updated is None:
                return None
            logger.info("queue.job_retried job_id=%s type=%s", job_id, updated.type)
            self.wakeup.notify()
            return job_from_row(updated)
        raise EnqueueRaceError(f"could not retry job {job_id}")

    async def retry_failed(self, *, type: str | None = None, account_id: int | None = None) -> list[Job]:
        """retry() every failed job (optionally of one type or account); returns the jobs now
        queued or running for them (for a key held by another active job: that job)."""
        query = sa.select(jobs.c.id).where(jobs.c.state == FAILED).order_by(jobs.c.id)
        if type is not None:
            query = query.where(jobs.c.type == type)
        if account_id is not None:
            query = query.where(jobs.c.account_id == account_id)
        async with self.engine.connect() as conn:
            failed_ids = list((await conn.execute(query)).scalars())
        retried = []
        for job_id in failed_ids:
            job = await self.retry(job_id)
            if job is not None:
                retried.append(job)
        return retried

    # ------------------------------------------------------------------ inspection and housekeeping

    async def get(self, job_id: int) -> Job | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(jobs).where(jobs.c.id == job_id))).first()
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self,
        state: str | None = None,
        type: str | None = None,
        account_id: int | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Job]:
        """Jobs matching the filters, newest first (older than job `before_id`, to page)."""
        query = sa.select(jobs).order_by(jobs.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(jobs.c.id < before_id)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if type is not None:
            query = query.where(jobs.c.type == type)
        if account_id is not None:
            query = query.where(jobs.c.account_id == account_id)
        async with self.engine.connect() as conn:
            return [job_from_row(r) for r in await conn.execute(query)]

    async def stats(self) -> QueueStats:
        """Counts by state and type, waiting times and recent throughput (`mailtide jobs stats`)."""
        return await collect_stats(self.engine)

    async def counts(self) -> dict[str, dict[str, int]]:
        """{state: {type: number of jobs}}."""
        query = sa.select(jobs.c.state, jobs.c.type, sa.func.count()).group_by(jobs.c.state, jobs.c.type)
        result: dict[str, dict[str, int]] = {}
        async with self.engine.connect() as conn:
            for state, job_type, number in await conn.execute(query):
                result.setdefault(state, {})[job_type] = number
        return result

    async def is_idle(self, account_id: int | None = None, *, include_scheduled: bool = True) -> bool:
        """No queued or running jobs (for one account, or at all).

        Queued jobs scheduled for later count as work unless include_scheduled=False.
        """
        query = sa.select(jobs.c.id).where(jobs.c.state.in_(ACTIVE_STATES))
        if account_id is not None:
            query = query.where(jobs.c.account_id == account_id)
        async with self.engine.begin() as conn:
            if not include_scheduled:
                # Read the clock only now that the transaction has begun: on SQLite, beginning may
                # wait for the write lock, and a job enqueued (due) during that wait must not pass
                # for one scheduled later.
                query = query.where(sa.or_(jobs.c.state == RUNNING, jobs.c.not_before <= time.time()))
            return (await conn.execute(query.limit(1))).first() is None

    async def prune(self, completed_older_than: float, failed_older_than: float) -> int:
        """Delete completed jobs finished more than `completed_older_than` seconds ago, and failed
        or canceled ones older than `failed_older_than`; their steps go with them, and so do
        schedule slots older than `failed_older_than`. Returns how many jobs were deleted.

        Works in chunks of PRUNE_CHUNK jobs, one short transaction each, so a large backlog never
        holds SQLite's write lock long enough to stall the workers.
        """
        now = time.time()
        finished_long_ago = sa.or_(
            sa.and_(jobs.c.state == COMPLETED, jobs.c.finished_at < now - completed_older_than),
            sa.and_(jobs.c.state.in_((FAILED, CANCELED)), jobs.c.finished_at < now - failed_older_than),
        )
        deleted = 0
        while True:
            async with self.engine.begin() as conn:
                ids = list((await conn.execute(
                    sa.select(jobs.c.id).where(finished_long_ago).order_by(jobs.c.id).limit(PRUNE_CHUNK)
                )).scalars())
                if ids:
                    # Steps first: no reliance on ON DELETE CASCADE being enforced by the connection.
                    await conn.execute(sa.delete(job_steps).where(job_steps.c.job_id.in_(ids)))
                    deleted += (await conn.execute(sa.delete(jobs).where(jobs.c.id.in_(ids)))).rowcount
            if len(ids) < PRUNE_CHUNK:
                break
        async with self.engine.begin() as conn:
            slots = (await conn.execute(
                sa.delete(schedule_slots).where(schedule_slots.c.created_at < now - failed_older_than)
            )).rowcount
        if deleted or slots:
            logger.info("queue.pruned jobs=%d schedule_slots=%d", deleted, slots)
        return deleted
