"""watch.renew.gmail: keep a Gmail watch on every account, so Gmail announces changes via Pub/Sub.

Gmail stops notifying 7 days after a watch and recommends renewing daily. Each account is watched
on setup (never watched = due) and again once `watch_renew_seconds` passed or its expiration draws
near. The expiration and any failure are stored on the account (shown in status). A failed watch is
retried with the queue's backoff, and the next sweep enqueues it again after that, so a topic that is
fixed later is picked up without anyone asking.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from mailtide.config import Settings
from mailtide.db.schema import STATUS_NEEDS_REAUTH, accounts
from mailtide.gmail.errors import GmailError
from mailtide.gmail.models import WatchResponse
from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job, JobContext, JobSpec, Retryable
from mailtide.queue.periodic import Every, Schedule
from mailtide.store.accounts import update_account
from mailtide.sync import jobtypes
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)

WATCH_MAX_ATTEMPTS = 8  # ~10 minutes of backoff; then the next sweep starts over
WATCH_SWEEP = "watch.sweep.gmail"


def watch_schedules(settings: Settings) -> list[Schedule]:
    """The periodic sweep (payload without an account) that enqueues due renewals; none without a topic."""
    if settings.pubsub_topic is None:
        return []
    return [
        Schedule(
            name=WATCH_SWEEP,
            cadence=Every(settings.realtime_check_seconds),
            job=JobSpec(jobtypes.WATCH_RENEW, priority=jobtypes.PRIORITY_REALTIME_UPKEEP, max_attempts=3),
        )
    ]


async def request_watch(queue: JobQueue, account_id: int) -> Job:
    """Enqueue a watch (renewal) for one account; deduplicated while one is queued or running."""
    job, _ = await queue.enqueue(
        JobSpec(
            type=jobtypes.WATCH_RENEW,
            payload={"account_id": account_id},
            priority=jobtypes.PRIORITY_REALTIME_UPKEEP,
            idempotency_key=f"watch:{account_id}",
            account_id=account_id,
            max_attempts=WATCH_MAX_ATTEMPTS,
        )
    )
    return job


async def due_watch_renewals(services: SyncServices, *, now: float | None = None) -> list[int]:
    """Accounts whose watch is missing, older than the renewal interval, or expiring within it."""
    if services.settings.pubsub_topic is None:
        return []
    now = time.time() if now is None else now
    interval = services.settings.watch_renew_seconds
    query = (
        sa.select(accounts.c.id)
        .where(accounts.c.status != STATUS_NEEDS_REAUTH)
        .where(
            sa.or_(
                accounts.c.watch_renewed_at.is_(None),
                accounts.c.watch_expiration.is_(None),
                accounts.c.watch_renewed_at < now - interval,
                accounts.c.watch_expiration < now + interval,
            )
        )
        .order_by(accounts.c.id)
    )
    async with services.engine.connect() as conn:
        return [row.id for row in await conn.execute(query)]


async def enqueue_due_watch_renewals(services: SyncServices, *, now: float | None = None) -> list[int]:
    due = await due_watch_renewals(services, now=now)
    for account_id in due:
        await request_watch(services.queue, account_id)
    if due:
        log.info("watch.renewals_enqueued accounts=%s", due)
    return due


async def handle_watch_renew(services: SyncServices, job: Job, ctx: JobContext) -> None:
    if "account_id" not in job.payload:  # the periodic sweep
        due = await enqueue_due_watch_renewals(services)
        await ctx.step("swept", {"enqueued": len(due)})
        return
    account_id = account_id_of(job.payload)
    if services.settings.pubsub_topic is None:
        await ctx.step("skipped", {"reason": "pubsub_topic is not configured"})
        return
    async with gmail_errors_as_job_errors(services.engine, account_id):  # a revoked grant: needs_reauth
        try:
            response = await renew_watch(services, account_id)
        except GmailError as exc:
            if exc.is_auth_revoked:
                raise
            # Transient or not (a missing topic, a missing publish grant), the user can fix it: retry.
            raise Retryable(f"watch failed: {exc}", delay=exc.retry_after) from exc
    await ctx.step("watched", {"expiration": response.expiration / 1000, "history_id": response.history_id})


async def renew_watch(services: SyncServices, account_id: int) -> WatchResponse:
    """users.watch now; the expiration (or the failure) is stored on the account. GmailError on failure."""
    settings = services.settings
    topic = settings.pubsub_topic
    if topic is None:
        raise ValueError("pubsub_topic is not configured")
    client = await services.gmail.for_account(account_id)
    try:
        response = await client.watch(topic, settings.watch_label_ids, settings.watch_label_filter_behavior)
    except GmailError as exc:
        if not exc.is_auth_revoked:
            await update_account(services.engine, account_id, watch_error=f"watch failed: {exc}")
            log.warning("watch.failed account_id=%s topic=%s error=%s", account_id, topic, exc)
        raise
    expiration = response.expiration / 1000
    await update_account(
        services.engine, account_id, watch_expiration=expiration, watch_renewed_at=time.time(), watch_error=None
    )
    log.info(
        "watch.renewed account_id=%s topic=%s expires_in_h=%.1f", account_id, topic, (expiration - time.time()) / 3600
    )
    return response


async def stop_watch(services: SyncServices, account_id: int) -> None:
    """users.stop, and forget the stored watch (e.g. before removing an account)."""
    client = await services.gmail.for_account(account_id)
    await client.stop()
    await update_account(services.engine, account_id, watch_expiration=None, watch_renewed_at=None, watch_error=None)
    log.info("watch.stopped account_id=%s", account_id)
