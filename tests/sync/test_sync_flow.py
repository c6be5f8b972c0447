"""The sync jobs end to end: emulator over HTTP, real queue, real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import random

import sqlalchemy as sa
from sync_harness import Harness, ham_files, raw_of

from mailtide.db.schema import STATUS_NEEDS_BACKFILL, STATUS_NORMAL, jobs, labels, messages, threads
from mailtide.store.accounts import get_account, update_account
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill


async def backfill(h: Harness) -> None:
    await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
    await h.settle()


async def completed_jobs(h: Harness, job_type: str) -> int:
    async with h.rt.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count()).select_from(jobs).where(jobs.c.type == job_type, jobs.c.state == "completed")
            )
        ).scalar_one()


async def test_backfill_mirrors_the_mailbox_exactly(harness: Harness) -> None:
    await backfill(harness)

    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NORMAL
    assert account.history_id == account.anchor_history_id == harness.emulator.mailbox.history_id
    assert account.backfill_listed == len(harness.emulator.facts())
    async with harness.rt.engine.connect() as conn:
        thread_count = (await conn.execute(sa.select(sa.func.count()).select_from(threads))).scalar_one()
        label_names = {r.name for r in await conn.execute(sa.select(labels.c.name))}
        parsed = (await conn.execute(sa.select(messages.c.subject, messages.c.from_addr).limit(5))).all()
    assert thread_count == len({f.thread_id for f in harness.emulator.facts().values()})
    assert "INBOX" in label_names and "takeout" in label_names  # a user label from X-Gmail-Labels
    assert all(row.subject and row.from_addr for row in parsed)
    # Pages were separate jobs (page size 25) and every page ran once.
    assert await completed_jobs(harness, jobtypes.BACKFILL) == -(-len(harness.emulator.facts()) // 25)


async def test_changes_during_a_backfill_are_mirrored(harness: Harness) -> None:
    mailbox = harness.emulator.mailbox
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.run_one(jobtypes.BACKFILL)  # anchor + page 1 (25 newest ids listed, ingests queued)
    await harness.run_one(jobtypes.INGEST)  # 10 of them mirrored

    listed_newest = [m.id for m in mailbox.messages()[:25]]
    mirrored, listed_only = listed_newest[:10], listed_newest[10:]
    mailbox.delete_message(listed_only[0])  # listed, not fetched yet: its ingest will get a 404
    mailbox.delete_message(mirrored[0])  # already mirrored
    mailbox.modify_labels(mirrored[1], add=["STARRED"], remove=["INBOX"])
    mailbox.modify_labels(listed_only[1], add=["IMPORTANT"], remove=["UNREAD"])
    unlisted = [m.id for m in mailbox.messages()[25:]]
    mailbox.modify_labels(unlisted[0], add=["TRASH"], remove=["INBOX"])
    mailbox.delete_message(unlisted[1])
    for f in ham_files(3, skip=200):
        mailbox.add_message(raw_of(f))

    await harness.settle()
    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()


async def test_history_sync_applies_every_kind_of_change(harness: Harness) -> None:
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    rng = random.Random(5)
    ids = sorted(mailbox.message_ids())
    for mid in rng.sample(ids, 4):
        mailbox.delete_message(mid)
    ids = sorted(mailbox.message_ids())
    for mid in rng.sample(ids, 8):
        mailbox.modify_labels(mid, add=["STARRED"], remove=["UNREAD"])
    new_ids = [mailbox.add_message(raw_of(f)) for f in ham_files(4, skip=100)]
    # remove INBOX, re-add INBOX, then archive, within one history window: final state archived
    target = new_ids[0]
    mailbox.modify_labels(target, remove=["INBOX"])
    mailbox.modify_labels(target, add=["INBOX"])
    mailbox.modify_labels(target, remove=["INBOX"])
    gets_before = harness.emulator.state.counters.requests("messages.get")

    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()

    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.history_id == mailbox.history_id
    # Label changes came from the history deltas: only the 4 new messages were fetched.
    assert harness.emulator.state.counters.requests("messages.get") - gets_before == 4
    async with harness.rt.engine.connect() as conn:
        archived = (await conn.execute(sa.select(messages.c.label_ids).where(messages.c.id == target))).scalar_one()
        tombstones = (
            await conn.execute(sa.select(sa.func.count()).select_from(messages).where(messages.c.deleted.is_(True)))
        ).scalar_one()
    assert "INBOX" not in archived
    assert tombstones == 4


async def test_replaying_history_twice_is_harmless(harness: Harness) -> None:
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    start = mailbox.history_id
    ids = sorted(mailbox.message_ids())
    mailbox.modify_labels(ids[0], add=["STARRED"])
    mailbox.delete_message(ids[1])
    mailbox.add_message(raw_of(ham_files(1, skip=150)[0]))
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    end = (await get_account(harness.rt.engine, harness.account_id)).history_id

    # Rewind the cursor by hand (as a crash before the cursor moved would) and sync again.
    await update_account(harness.rt.engine, harness.account_id, history_id=start)
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()

    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    assert (await get_account(harness.rt.engine, harness.account_id)).history_id == end


async def test_history_sync_reads_every_page(harness: Harness) -> None:
    """More records than one history page (500) between two syncs: none is dropped."""
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    ids = sorted(mailbox.message_ids())
    for round_no in range(6):
        for mid in ids:
            if round_no % 2 == 0:
                mailbox.modify_labels(mid, add=["STARRED"])
            else:
                mailbox.modify_labels(mid, remove=["STARRED"])
    mailbox.modify_labels(ids[-1], add=["IMPORTANT"])
    assert 6 * len(ids) > 500
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    assert harness.emulator.state.counters.requests("history.list") >= 2


async def test_expired_history_marks_the_account_and_starts_a_recovery(harness: Harness) -> None:
    await backfill(harness)
    harness.emulator.mailbox.delete_message(sorted(harness.emulator.mailbox.message_ids())[0])
    harness.emulator.mailbox.expire_history()
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.run_one(jobtypes.HISTORY_SYNC)

    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NEEDS_BACKFILL
    assert "no longer available" in (account.last_error or "")
    queued = await harness.rt.queue.list_jobs(state="queued", type=jobtypes.BACKFILL)
    assert len(queued) == 1 and queued[0].payload["recovery"] is True


async def test_recovery_after_expiry_converges_and_costs_little_quota(harness: Harness) -> None:
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    rng = random.Random(9)
    ids = sorted(mailbox.message_ids())
    n = len(ids)
    for mid in rng.sample(ids, max(1, n * 5 // 100)):
        mailbox.delete_message(mid)
    ids = sorted(mailbox.message_ids())
    for mid in rng.sample(ids, max(1, n * 10 // 100)):
        mailbox.modify_labels(mid, add=["STARRED", "IMPORTANT"], remove=["INBOX"])
    added = [mailbox.add_message(raw_of(f)) for f in ham_files(max(1, n * 5 // 100), skip=120)]
    mailbox.expire_history()
    units_before = harness.emulator.units()

    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()

    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    assert (await get_account(harness.rt.engine, harness.account_id)).status == STATUS_NORMAL
    recovery_units = harness.emulator.units() - units_before
    refetch_all_units = len(mailbox.message_ids()) * harness.emulator.state.cost_of("messages.get")
    ratio = recovery_units / refetch_all_units
    print(f"recovery cost {recovery_units} units vs {refetch_all_units} to refetch everything: ratio {ratio:.2f}")
    assert harness.emulator.state.counters.requests("messages.get") >= len(added)
    assert ratio < 0.5


async def test_a_second_history_expiry_triggers_a_second_recovery(harness: Harness) -> None:
    await backfill(harness)
    mailbox = harness.emulator.mailbox
    for round_no in range(2):
        ids = sorted(mailbox.message_ids())
        mailbox.delete_message(ids[round_no])
        mailbox.modify_labels(ids[round_no + 5], add=["STARRED"])
        mailbox.add_message(raw_of(ham_files(1, skip=130 + round_no)[0]))
        mailbox.expire_history()
        await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
        await harness.settle()
        drift = await harness.drift()
        assert drift.total == 0, (round_no, drift.by_kind())
    assert await completed_jobs(harness, jobtypes.RECONCILE) == 2


async def test_ingest_of_a_message_deleted_meanwhile_completes(harness: Harness) -> None:
    mid = sorted(harness.emulator.mailbox.message_ids())[0]
    harness.emulator.mailbox.delete_message(mid)
    await jobtypes.request_ingest(harness.rt.queue, harness.account_id, [mid], batch_size=10, priority=0)
    await harness.settle()
    [job] = await harness.rt.queue.list_jobs(type=jobtypes.INGEST)
    assert job.state == "completed"
    steps = await harness.rt.queue.steps(job.id)
    assert steps[-1].detail == {"stored": 0, "gone": 1, "failed": 0}


async def test_a_malformed_job_fails_alone_and_the_worker_goes_on(harness: Harness) -> None:
    from mailtide.queue.jobs import JobSpec

    bad, _ = await harness.rt.queue.enqueue(JobSpec(type=jobtypes.INGEST, payload={"ids": "not-a-list"}))
    await jobtypes.request_labels_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    failed = await harness.rt.queue.get(bad.id)
    assert failed is not None and failed.state == "failed" and failed.attempts == 1
    assert "malformed job payload" in (failed.last_error or "")
    [labels_job] = await harness.rt.queue.list_jobs(type=jobtypes.LABELS_SYNC)
    assert labels_job.state == "completed"


async def test_a_revoked_grant_flags_the_account_without_endless_retries(harness: Harness) -> None:
    from mailtide.db.schema import STATUS_NEEDS_REAUTH
    from mailtide.sync.reauth import is_paused

    harness.emulator.state.revoke_refresh_token(harness.emulator.mailbox.email)
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.settle()
    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NEEDS_REAUTH
    assert "re-authorisation" in (account.last_error or "")
    # Parked until `accounts reauth` (sync/reauth.py): queued, never due, one attempt spent.
    [job] = await harness.rt.queue.list_jobs(type=jobtypes.BACKFILL)
    assert job.state == "queued" and job.attempts == 1 and is_paused(job.state, job.not_before)


async def test_a_backfill_is_never_started_twice(harness: Harness) -> None:
    first = await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="a")
    second = await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="b")
    assert first is not None and second is None


async def test_a_backfill_asked_for_again_on_an_unchanged_mailbox_hands_over(harness: Harness) -> None:
    """Regression: the second backfill from the same anchor found the first one's completed page
    jobs under the same keys, never enqueued its next page, and left the account backfilling for good."""
    await backfill(harness)
    for _ in range(2):
        await backfill(harness)
        account = await get_account(harness.rt.engine, harness.account_id)
        assert account.status == STATUS_NORMAL, account.status
    added = harness.emulator.mailbox.add_message(raw_of(ham_files(1, skip=120)[0]))
    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()
    drift = await harness.drift()
    assert drift.total == 0 and added in harness.emulator.facts(), drift.by_kind()


async def test_a_backfill_restarted_after_one_failed_half_way_reconciles(harness: Harness) -> None:
    """Regression: restarting after a first backfill failed part-way was a plain backfill (the account
    had no history id yet), so what Gmail deleted or relabelled in between stayed in the mirror."""
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="first")
    await harness.run_one(jobtypes.BACKFILL)  # page 1: 25 ids, ingested below
    for _ in range(3):
        await harness.run_one(jobtypes.INGEST)
    [page_2] = await harness.rt.queue.claim("test", types=[jobtypes.BACKFILL])
    await harness.rt.queue.fail(page_2, "Fatal: made up", retryable=False)
    async with harness.rt.engine.connect() as conn:
        mirrored = sorted((await conn.execute(sa.select(messages.c.id))).scalars())
    assert len(mirrored) == 25
    mailbox = harness.emulator.mailbox
    mailbox.delete_message(mirrored[0])
    mailbox.modify_labels(mirrored[1], add=["STARRED"], remove=["INBOX"])

    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="again")
    await harness.settle()
    drift = await harness.drift()
    assert drift.total == 0, drift.by_kind()
    assert await completed_jobs(harness, jobtypes.RECONCILE) == 1
