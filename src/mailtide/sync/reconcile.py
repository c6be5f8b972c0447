"""reconcile.gmail: the last step of a recovery backfill, after Gmail's history expired.

Changes made while the history was unavailable are unknown, so compare instead of replaying:
list every message id (5 quota units per 500 ids), tombstone mirrored messages Gmail no longer has,
and refresh label membership by listing the ids of each label and diffing, which costs a tiny
fraction of a messages.get per message. Only messages whose stored version is not newer than the
anchor are touched: anything newer was written after the recovery began and history replay from the
anchor brings it up to date.

Deletions are judged against the whole mailbox, never against the account's backfill window: a
mirrored message that is merely older than the window still exists and stays. Missing messages are
ingested only when they are inside the account's scope (window, SPAM/TRASH option). Label ids that
labels.list does not return cannot be listed, so a message keeps the ones it had.
"""

from __future__ import annotations

import logging

from mailtide.queue.jobs import Fatal, Job, JobContext
from mailtide.store.accounts import InvalidBackfillWindow, get_account
from mailtide.store.labels import replace_labels
from mailtide.store.messages import known_ids, live_messages, mark_deleted, refresh_threads, set_labels
from mailtide.sync import jobtypes
from mailtide.sync.backfill import hand_over, is_stale
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors, payload_value
from mailtide.sync.listing import Scope, label_membership, list_ids
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)


async def handle_reconcile(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_id = account_id_of(job.payload)
    anchor = int(payload_value(job.payload, "anchor", int))  # type: ignore[arg-type]
    account = await get_account(services.engine, account_id)
    if is_stale(account, anchor):
        await ctx.step("stale", {"anchor": anchor, "status": account.status})
        return
    try:
        scope = Scope.of(account)
    except InvalidBackfillWindow as exc:
        raise Fatal(str(exc)) from exc
    async with gmail_errors_as_job_errors(services.engine, account_id):
        client = await services.gmail.for_account(account_id)
        on_server = await list_ids(client)
        in_scope = set(on_server) if scope.is_everything else set(
            await list_ids(client, query=scope.query, include_spam_trash=scope.include_spam_trash)
        )
        labels = await client.list_labels()
        await replace_labels(services.engine, account_id, labels)
        membership = await label_membership(client, labels)
    listable = {label.id for label in labels}

    mirror = await live_messages(services.engine, account_id)
    settled = {mid: m for mid, m in mirror.items() if m.history_id <= anchor}
    vanished = [mid for mid in settled if mid not in on_server]
    relabelled = 0
    async with services.engine.begin() as conn:
        await mark_deleted(conn, account_id, vanished, anchor, tombstone_unknown=False)
        touched_threads: set[str] = set()
        for mid, m in settled.items():
            if mid not in on_server:
                continue
            unlistable = {lid for lid in m.label_ids if lid not in listable}
            wanted = sorted(membership.get(mid, set()) | unlistable)
            if wanted != sorted(m.label_ids) and await set_labels(
                conn, account_id, mid, wanted, anchor, expected_version=m.history_id
            ):
                relabelled += 1
                touched_threads.add(m.thread_id)
        await refresh_threads(conn, account_id, touched_threads)

    missing = sorted(in_scope - await known_ids(services.engine, account_id, in_scope))
    await jobtypes.request_ingest(
        services.queue,
        account_id,
        missing,
        batch_size=services.settings.ingest_batch_size,
        priority=jobtypes.PRIORITY_BACKFILL_INGEST,
    )
    detail = {
        "on_server": len(on_server),
        "in_scope": len(in_scope),
        "deleted": len(vanished),
        "relabelled": relabelled,
        "missing": len(missing),
    }
    log.info("reconcile.done account_id=%s %s", account_id, detail)
    await ctx.step("reconciled", detail)
    await hand_over(services, account_id, anchor)
