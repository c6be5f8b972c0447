"""A revoked grant (invalid_grant) pauses an account's jobs until `mailtide accounts reauth` resumes them.

Choice: the jobs are *parked*, not failed and not retried. On invalid_grant the account becomes
`needs_reauth` and every queued job of the account is scheduled for PAUSED_NOT_BEFORE (a date no
clock reaches), so no worker claims it and no attempt is spent; the job that met the error is
parked the same way. A job enqueued later for the account (a notification, a poll) meets the
`needs_reauth` status before any request and is parked too. Resuming sets the account's status
back, makes the parked jobs due now, retries jobs that failed for good on the revoked grant,
and asks for a history sync (or a backfill) so nothing announced meanwhile is missed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import (
    FAILED,
    QUEUED,
    STATUS_BACKFILLING,
    STATUS_NEEDS_BACKFILL,
    STATUS_NEEDS_REAUTH,
    STATUS_NORMAL,
    accounts,
    jobs,
)
from mailtide.store.accounts import get_account
from mailtide.sync import jobtypes
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)

PAUSED_NOT_BEFORE = 4_102_444_800.0  # 2100-01-01 UTC
# Anything scheduled this far out is parked, whatever the exact float the queue computed.
PAUSED_THRESHOLD = PAUSED_NOT_BEFORE - 86_400 * 365
REAUTH_MARKER = "re-authorisation needed"


def reauth_reason(email_or_id: str, detail: str) -> str:
    return f"{REAUTH_MARKER}: the refresh token was refused ({detail}); run `mailtide accounts reauth {email_or_id}`"


def pause_delay() -> float:
    """The Retryable delay that parks a job until the account is resumed."""
    return max(0.0, PAUSED_NOT_BEFORE - time.time())


def is_paused(state: str, not_before: float) -> bool:
    return state == QUEUED and not_before >= PAUSED_THRESHOLD


async def mark_grant_refused(engine: AsyncEngine, account_id: int, detail: str) -> str:
    """invalid_grant: flag the account and park its jobs; returns the reason recorded (it says what to run)."""
    async with engine.connect() as conn:
        email = (await conn.execute(sa.select(accounts.c.email).where(accounts.c.id == account_id))).scalar()
    reason = reauth_reason(email or str(account_id), detail)
    await mark_needs_reauth(engine, account_id, reason)
    return reason


async def mark_needs_reauth(engine: AsyncEngine, account_id: int, reason: str) -> int:
    """Flag the account and park its queued jobs; returns how many jobs were parked."""
    async with engine.begin() as conn:
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .values(status=STATUS_NEEDS_REAUTH, last_error=reason)
        )
        parked = await conn.execute(
            jobs.update()
            .where(jobs.c.account_id == account_id, jobs.c.state == QUEUED, jobs.c.not_before < PAUSED_THRESHOLD)
            .values(not_before=PAUSED_NOT_BEFORE, last_error=f"paused: {reason}")
        )
    log.error("account.needs_reauth account_id=%s parked_jobs=%s reason=%s", account_id, parked.rowcount, reason)
    return parked.rowcount


@dataclass(frozen=True)
class Resumed:
    status: str
    unparked: int
    retried: int

    def describe(self) -> str:
        return f"status {self.status}, {self.unparked} paused job(s) resumed, {self.retried} failed job(s) retried"


async def resume_account(services: SyncServices, account_id: int) -> Resumed:
    """After a new grant was stored: un-park the account's jobs and sync what was missed."""
    engine = services.engine
    account = await get_account(engine, account_id)
    now = time.time()
    async with engine.begin() as conn:
        backfill_active = await jobtypes.active_backfill_job_id(conn, account_id) is not None
        if backfill_active:
            status = STATUS_BACKFILLING if account.anchor_history_id is not None else STATUS_NEEDS_BACKFILL
        else:
            status = STATUS_NORMAL if account.history_id is not None else STATUS_NEEDS_BACKFILL
        await conn.execute(
            accounts.update().where(accounts.c.id == account_id).values(status=status, last_error=None)
        )
        unparked = await conn.execute(
            jobs.update()
            .where(jobs.c.account_id == account_id, jobs.c.state == QUEUED, jobs.c.not_before >= PAUSED_THRESHOLD)
            .values(not_before=now, last_error=None)
        )
        failed_on_grant = (
            await conn.execute(
                sa.select(jobs.c.id)
                .where(jobs.c.account_id == account_id, jobs.c.state == FAILED)
                .where(jobs.c.last_error.contains(REAUTH_MARKER))
            )
        ).scalars().all()
    retried = 0
    for job_id in failed_on_grant:
        if await services.queue.retry(job_id) is not None:
            retried += 1
    services.gmail.forget(account_id)
    if not backfill_active:
        if account.history_id is None:
            from mailtide.sync.backfill import start_backfill

            await start_backfill(services, account_id, recovery=False, reason="resumed after re-authorisation")
        else:
            await jobtypes.request_history_sync(services.queue, account_id)
    services.queue.wakeup.notify()
    log.info(
        "account.resumed account_id=%s status=%s unparked_jobs=%s retried_jobs=%s",
        account_id, status, unparked.rowcount, retried,
    )
    return Resumed(status, unparked.rowcount, retried)
