"""history.sync.gmail: replay Gmail's history from the stored cursor.

All pages are read; each page's deletions and label deltas are committed before the cursor moves,
and the cursor only moves forward. Messages the mirror lacks (added, or relabelled before we ever
fetched them) are ingested. A 404 means the history expired: the account needs a recovery backfill.
"""

from __future__ import annotations

import logging

from mailtide.db.schema import STATUS_NORMAL
from mailtide.gmail.errors import GmailError
from mailtide.gmail.models import HistoryPage, HistoryRecord
from mailtide.queue.jobs import Job, JobContext
from mailtide.store.accounts import advance_history_id, clear_last_error, get_account, update_account
from mailtide.store.messages import LabelChangeResult, apply_label_change, known_ids, mark_deleted
from mailtide.store.sql import now
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)


async def handle_history_sync(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_id = account_id_of(job.payload)
    account = await get_account(services.engine, account_id)
    if account.status != STATUS_NORMAL or account.history_id is None:
        # A backfill is pending or running; it hands over to history sync when it ends.
        await ctx.step("skipped", {"status": account.status})
        return

    start = account.history_id
    page_token: str | None = None
    totals = {"pages": 0, "records": 0, "ingest": 0}
    async with gmail_errors_as_job_errors(services.engine, account_id):
        client = await services.gmail.for_account(account_id)
        while True:
            try:
                page = await client.list_history(start, page_token=page_token, max_results=500)
            except GmailError as exc:
                if exc.is_not_found:
                    await _history_expired(services, account_id, start)
                    await ctx.step("history-expired", {"start_history_id": start})
                    return
                raise
            to_ingest = await _apply_page(services, account_id, page)
            totals["pages"] += 1
            totals["records"] += len(page.history)
            totals["ingest"] += len(to_ingest)
            if page.next_page_token:
                # Everything up to the last record of this page is committed: safe to resume after it.
                if page.history:
                    await advance_history_id(services.engine, account_id, page.history[-1].id)
                page_token = page.next_page_token
                if await ctx.cancel_requested():
                    return
                continue
            await advance_history_id(services.engine, account_id, page.history_id, last_sync_at=now())
            break
    # Caught up with Gmail: an error from an earlier failed sync no longer describes the account.
    await clear_last_error(services.engine, account_id, seen=account.last_error)
    await ctx.step("synced", {**totals, "from": start, "to": page.history_id})


async def _apply_page(services: SyncServices, account_id: int, page: HistoryPage) -> list[str]:
    """Commit one page's deletions and label deltas; enqueue ingests for messages the mirror lacks."""
    added = [c.message.id for r in page.history for c in r.messages_added]
    have = await known_ids(services.engine, account_id, added)
    to_ingest: dict[str, None] = {}
    async with services.engine.begin() as conn:
        for record in page.history:
            for change in record.messages_added:
                if change.message.id not in have:
                    to_ingest[change.message.id] = None
            deleted = [c.message.id for c in record.messages_deleted]
            if deleted:
                await mark_deleted(conn, account_id, deleted, record.id, tombstone_unknown=True)
                have.update(deleted)
            for message_id, (add, remove) in _label_deltas(record).items():
                result = await apply_label_change(
                    conn, account_id, message_id, add=add, remove=remove, version=record.id
                )
                if result is LabelChangeResult.MISSING and message_id not in have:
                    to_ingest[message_id] = None
    # A message deleted later in the same page needs no fetch.
    have = await known_ids(services.engine, account_id, list(to_ingest))
    ids = [i for i in to_ingest if i not in have]
    await jobtypes.request_ingest(
        services.queue,
        account_id,
        ids,
        batch_size=services.settings.ingest_batch_size,
        priority=jobtypes.PRIORITY_REALTIME_INGEST,
    )
    return ids


def _label_deltas(record: HistoryRecord) -> dict[str, tuple[set[str], set[str]]]:
    """A record's label changes per message, merged so one version applies them together."""
    deltas: dict[str, tuple[set[str], set[str]]] = {}
    for change in record.labels_added:
        deltas.setdefault(change.message.id, (set(), set()))[0].update(change.label_ids)
    for change in record.labels_removed:
        deltas.setdefault(change.message.id, (set(), set()))[1].update(change.label_ids)
    return deltas


async def _history_expired(services: SyncServices, account_id: int, start: int) -> None:
    log.warning("history.expired account_id=%s start_history_id=%s", account_id, start)
    await update_account(
        services.engine,
        account_id,
        last_error=f"history from {start} is no longer available; recovering with a backfill",
    )
    await start_backfill(services, account_id, recovery=True, reason="history expired")
