"""poll.fallback.gmail: the safety net under Pub/Sub. Notifications can be delayed or dropped (and
there are none without Pub/Sub), so an account nothing was heard from for `poll_fallback_seconds`
(no notification and no history sync) gets a history sync anyway: a lost notification costs
latency, never mail.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from mailtide.db.schema import STATUS_NORMAL, accounts
from mailtide.queue.jobs import Job, JobContext
from mailtide.sync import jobtypes
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)


async def quiet_accounts(services: SyncServices, *, now: float | None = None) -> list[int]:
    """Accounts in normal sync whose last notification and last history sync are both older than the interval."""
    now = time.time() if now is None else now
    cutoff = now - services.settings.poll_fallback_seconds
    query = (
        sa.select(accounts.c.id, accounts.c.last_notification_at, accounts.c.last_sync_at, accounts.c.created_at)
        .where(accounts.c.status == STATUS_NORMAL, accounts.c.history_id.is_not(None))
        .order_by(accounts.c.id)
    )
    async with services.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        row.id
        for row in rows
        if max(row.last_notification_at or 0.0, row.last_sync_at or 0.0, row.created_at or 0.0) < cutoff
    ]


async def enqueue_fallback_syncs(services: SyncServices, *, now: float | None = None) -> list[int]:
    quiet = await quiet_accounts(services, now=now)
    for account_id in quiet:
        await jobtypes.request_history_sync(services.queue, account_id)
    if quiet:
        log.info("poll_fallback.history_syncs_enqueued accounts=%s", quiet)
    return quiet


async def handle_poll_fallback(services: SyncServices, job: Job, ctx: JobContext) -> None:
    enqueued = await enqueue_fallback_syncs(services)
    await ctx.step("checked", {"enqueued": len(enqueued)})
