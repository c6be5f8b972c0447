"""backfill.gmail: list message ids (newest first), one page per job, and ingest what is missing.

Page 1 records the anchor (getProfile.historyId) *before* listing, so every change made while the
backfill runs is replayed by history sync afterwards. Each page enqueues the next one with the page
token in its payload, so a crash resumes where it stopped. The last page hands over to history sync
from the anchor; a recovery backfill (after the history expired) first runs a reconcile job that
removes what Gmail deleted and refreshes label membership.

What is listed follows the account's backfill options, fixed at page 1 and carried in the payload
(a page token only makes sense with the query that produced it): a `newer_than` window, and whether
SPAM and TRASH are included.

Re-running any page is safe (after a kill -9 the rescuer hands the job out again): page 1 reuses the
anchor a previous attempt recorded, counters are written as absolute values, and a page never
enqueues a next page that this backfill already has, so a crash cannot fork a second chain.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from mailtide.db.schema import (
    CANCELED,
    FAILED,
    STATUS_BACKFILLING,
    STATUS_NEEDS_BACKFILL,
    STATUS_NORMAL,
    jobs,
)
from mailtide.gmail.client import GmailClient
from mailtide.queue.jobs import Fatal, Job, JobContext, JobSpec
from mailtide.store.accounts import (
    Account,
    InvalidBackfillWindow,
    advance_history_id,
    clear_last_error,
    get_account,
    update_account,
)
from mailtide.store.messages import has_mirrored_messages, known_ids
from mailtide.store.sql import now
from mailtide.sync import jobtypes
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors
from mailtide.sync.labels import sync_labels
from mailtide.sync.listing import Scope
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)


def page_key(account_id: int, anchor: int, run: int | None, page_no: int) -> str:
    """`run` (the id of the backfill's page-1 job) tells apart two backfills from the same anchor,
    as when a backfill is asked for again while the mailbox has not changed."""
    return f"backfill:{account_id}:{anchor}:{run}:{page_no}"


async def start_backfill(services: SyncServices, account_id: int, *, recovery: bool, reason: str) -> Job | None:
    """Enqueue page 1 of a backfill unless one is already queued or running for the account.

    The check and the enqueue share one transaction, so concurrent requests start one backfill.
    Over a mirror that already holds mail the backfill is always a recovery: it ingests only the
    ids the mirror lacks, so only the reconcile ending a recovery applies what was deleted or
    relabelled since that mail was mirrored (after a first backfill that failed half-way, say)."""
    async with services.engine.begin() as conn:
        active_id = await jobtypes.active_backfill_job_id(conn, account_id)
        if active_id is not None:
            log.info("backfill.already_active account_id=%s job_id=%s", account_id, active_id)
            return None
        recovery = recovery or await has_mirrored_messages(conn, account_id)
        payload = {"recovery": recovery, "reason": reason}
        spec = jobtypes.backfill_page_spec(account_id, payload, key=f"backfill:{account_id}")
        job, created = await services.queue.enqueue(spec, conn=conn)
        if not created:
            log.info("backfill.already_active account_id=%s job_id=%s", account_id, job.id)
            return None
        await update_account(conn, account_id, status=STATUS_NEEDS_BACKFILL)
    log.info("backfill.requested account_id=%s recovery=%s reason=%s", account_id, recovery, reason)
    return job


def is_stale(account: Account, anchor: int | None) -> bool:
    """A page or reconcile of a backfill that is over: handed over, or replaced by a newer one.

    (Page 1, which has no anchor yet, is stale only once the backfill it started has handed over.)"""
    if account.status == STATUS_NORMAL:
        return True
    return anchor is not None and account.anchor_history_id != anchor


async def handle_backfill(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_id = account_id_of(job.payload)
    account = await get_account(services.engine, account_id)
    payload: dict[str, Any] = dict(job.payload)
    payload.pop("account_id", None)
    if is_stale(account, int(payload["anchor"]) if "anchor" in payload else None):
        await ctx.step("stale", {"anchor": payload.get("anchor"), "status": account.status})
        return
    async with gmail_errors_as_job_errors(services.engine, account_id):
        client = await services.gmail.for_account(account_id)
        if "anchor" not in payload:
            payload.update(await _begin(services, account, client, ctx), run=job.id)
        anchor = int(payload["anchor"])
        page_no = int(payload.get("page", 1))
        page = await client.list_messages(
            q=payload.get("q"),
            page_token=payload.get("page_token"),
            max_results=services.settings.list_page_size,
            include_spam_trash=bool(payload.get("include_spam_trash", True)),
        )

    ids = [m.id for m in page.messages]
    have = await known_ids(services.engine, account_id, ids)
    missing = [i for i in ids if i not in have]
    await jobtypes.request_ingest(
        services.queue,
        account_id,
        missing,
        batch_size=services.settings.ingest_batch_size,
        priority=jobtypes.PRIORITY_BACKFILL_INGEST,
    )
    listed = int(payload.get("listed", 0)) + len(ids)
    await update_account(services.engine, account_id, backfill_listed=listed)
    await ctx.step("page", {"page": page_no, "listed": len(ids), "to_ingest": len(missing)})

    if page.next_page_token:
        next_payload = {**payload, "page_token": page.next_page_token, "page": page_no + 1, "listed": listed}
        next_key = page_key(account_id, anchor, payload.get("run"), page_no + 1)
        await _enqueue_once(services, jobtypes.backfill_page_spec(account_id, next_payload, key=next_key))
    elif payload.get("recovery"):
        await _enqueue_once(services, jobtypes.reconcile_spec(account_id, anchor, payload.get("run")))
    else:
        await hand_over(services, account_id, anchor)


async def _begin(services: SyncServices, account: Account, client: GmailClient, ctx: JobContext) -> dict[str, Any]:
    """Page 1: fix the options, record the anchor (or reuse the one an earlier attempt recorded)."""
    try:
        scope = Scope.of(account)
    except InvalidBackfillWindow as exc:
        await update_account(services.engine, account.id, last_error=str(exc))
        raise Fatal(str(exc)) from exc
    options = {"q": scope.query, "include_spam_trash": scope.include_spam_trash, "page": 1, "listed": 0}
    if account.status == STATUS_BACKFILLING and account.anchor_history_id is not None:
        # An earlier attempt of this job recorded the anchor and may have mirrored messages since:
        # a newer anchor would skip the changes made in between.
        await ctx.step("anchor-reused", {"history_id": account.anchor_history_id})
        return {**options, "anchor": account.anchor_history_id}
    profile = await client.get_profile()
    await sync_labels(services, account.id, client)
    await update_account(
        services.engine,
        account.id,
        status=STATUS_BACKFILLING,
        anchor_history_id=profile.history_id,
        messages_total=profile.messages_total,
        backfill_listed=0,
        backfill_started_at=now(),
        backfill_finished_at=None,
        last_error=None,
    )
    await ctx.step(
        "anchor",
        {"history_id": profile.history_id, "messages_total": profile.messages_total, "q": scope.query,
         "include_spam_trash": scope.include_spam_trash},
    )
    return {**options, "anchor": profile.history_id}


async def _enqueue_once(services: SyncServices, spec: JobSpec) -> None:
    """Enqueue a follow-up unless a job with its key exists in any state but failed or canceled.

    After a crash, a re-run page may find its next page already done: enqueueing it again would
    start a second chain over the same pages."""
    async with services.engine.begin() as conn:
        existing = (
            await conn.execute(
                sa.select(jobs.c.id)
                .where(jobs.c.account_id == spec.account_id)
                .where(jobs.c.type == spec.type)
                .where(jobs.c.idempotency_key == spec.idempotency_key)
                .where(jobs.c.state.not_in([FAILED, CANCELED]))
                .limit(1)
            )
        ).first()
        if existing is not None:
            log.info("backfill.follow_up_exists key=%s job_id=%s", spec.idempotency_key, existing.id)
            return
        await services.queue.enqueue(spec, conn=conn)


async def hand_over(services: SyncServices, account_id: int, anchor: int) -> None:
    """End of a backfill: history sync takes over from the anchor."""
    account = await get_account(services.engine, account_id)
    await advance_history_id(
        services.engine,
        account_id,
        anchor,
        status=STATUS_NORMAL,
        backfill_finished_at=now(),
        last_sync_at=now(),
    )
    # The backfill is complete: an error from an earlier failed attempt no longer describes the account.
    await clear_last_error(services.engine, account_id, seen=account.last_error)
    log.info(
        "backfill.handed_over account_id=%s anchor=%s previous_cursor=%s", account_id, anchor, account.history_id
    )
    await jobtypes.request_history_sync(services.queue, account_id)
