"""What `mailtide status` and the API say about a backfill: never "done" while its messages are still
queued for ingest, no ETA while nothing of it is queued or running, and a failed backfill as failed."""

from __future__ import annotations

from rich.console import Console
from sync_harness import Harness

from mailtide.commands.status import render_accounts
from mailtide.db.schema import STATUS_NORMAL
from mailtide.overview import AccountOverview, Overview, collect_overview
from mailtide.store.messages import count_messages
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill


async def overview_of(h: Harness) -> tuple[Overview, AccountOverview]:
    overview = await collect_overview(h.rt.engine, h.rt.settings)
    [account] = overview.accounts
    return overview, account


def rendered(overview: Overview) -> str:
    out = Console(record=True, width=250)
    render_accounts(overview, out)
    return out.export_text()


async def run_every_page(h: Harness) -> None:
    """All backfill pages, none of the ingests they ask for (as after a kill -9 of the worker)."""
    while await h.rt.queue.list_jobs(state="queued", type=jobtypes.BACKFILL):
        await h.run_one(jobtypes.BACKFILL)


async def test_a_handed_over_backfill_with_queued_ingests_is_not_done(harness: Harness) -> None:
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await run_every_page(harness)
    total = len(harness.emulator.facts())

    overview, account = await overview_of(harness)
    assert account.status == STATUS_NORMAL
    assert account.backfill.state == "ingesting" and not account.backfill.running
    assert (account.ingest.messages, account.ingest.backfill_messages) == (total, total)
    per_page = [min(25, total - start) for start in range(0, total, 25)]  # list_page_size 25
    assert account.ingest.jobs == sum(-(-listed // 10) for listed in per_page)  # ingest_batch_size 10
    assert account.backfill.eta_seconds == total / 5  # 2026 quota: 5 messages.get a second
    summary = account.summary(overview.taken_at)
    assert summary.startswith(f"ingesting: {total} messages in {account.ingest.jobs} job(s), ETA ")
    assert "done" not in rendered(overview)

    await harness.settle()
    overview, account = await overview_of(harness)
    assert account.backfill.state == "done" and account.ingest.jobs == 0
    assert account.backfill.eta_seconds is None
    assert account.summary(overview.taken_at).startswith("done ")


async def test_a_failed_backfill_shows_as_failed_with_its_job_and_no_eta(harness: Harness) -> None:
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.run_one(jobtypes.BACKFILL)  # page 1: ingests queued, page 2 queued
    [page2] = await harness.rt.queue.claim("test", limit=1, types=[jobtypes.BACKFILL])
    await harness.rt.queue.fail(page2, "Fatal: Gmail refused a request (400 badRequest)", retryable=False)
    await harness.run_one(jobtypes.INGEST)

    overview, account = await overview_of(harness)
    b = account.backfill
    assert (b.state, b.job_id, b.running, b.eta_seconds) == ("failed", page2.id, False, None)
    mirrored = await count_messages(harness.rt.engine, harness.account_id)
    percent = round(100 * mirrored / b.total)
    pending = account.ingest
    assert pending.jobs >= 1
    assert account.summary(overview.taken_at) == (
        f"failed at {percent}% of {b.total} (job {page2.id}); "
        f"ingesting: {pending.messages} messages in {pending.jobs} job(s)"
    )
    assert f"mailtide jobs retry {page2.id}" in (account.action or "")
    text = rendered(overview)
    assert f"(job {page2.id})" in text and "ETA" not in text


async def test_a_parked_backfill_has_no_eta(harness: Harness) -> None:
    harness.emulator.state.revoke_refresh_token(harness.emulator.mailbox.email)
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.settle()

    overview, account = await overview_of(harness)
    assert account.backfill.state == "paused" and account.backfill.eta_seconds is None
    assert "until re-authorisation" in account.summary(overview.taken_at)


async def test_a_failed_ingest_is_pointed_out_after_the_backfill_is_done(harness: Harness) -> None:
    """A failed ingest means mail the mirror lacks: status must say so even though the backfill is done."""
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await run_every_page(harness)
    [ingest] = await harness.rt.queue.claim("test", types=[jobtypes.INGEST])
    await harness.rt.queue.fail(ingest, "Fatal: made up", retryable=False)
    await harness.settle()

    overview, account = await overview_of(harness)
    assert account.backfill.state == "done" and account.failed_jobs == 1
    assert account.action is not None and "1 job(s) failed" in account.action
    assert f"jobs retry --failed --account {account.id}" in rendered(overview)
