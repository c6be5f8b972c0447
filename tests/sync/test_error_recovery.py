"""Failures that pass: a reply cut short is retried, never fatal, and an account's last error goes
away once the sync step that failed succeeds (emulator over HTTP, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time

from sync_harness import Emulator, Harness, open_harness

from mailtide.db.schema import STATUS_NORMAL
from mailtide.emulator.faults import MethodFaults
from mailtide.store.accounts import clear_last_error, get_account, update_account
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill

SETTLE_SECONDS = 60
OLD_ERROR = "Gmail refused a request (200 malformedResponse): messages.list: unexpected shape"


async def settle_with_retries(h: Harness) -> None:
    """Run workers until nothing is queued at all, retries waiting out their backoff included."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while not await h.rt.queue.is_idle(include_scheduled=True):
        assert time.monotonic() < deadline, "the queue never became idle"
        await h.rt.worker().run_until_idle(max(1.0, deadline - time.monotonic()))
        await asyncio.sleep(0.2)


async def test_a_listing_cut_short_is_retried_and_the_backfill_completes(
    emulator: Emulator, database_url: str
) -> None:
    emulator.state.faults.configure({"messages.list": MethodFaults(truncate=1.0)})
    async with open_harness(emulator, database_url, gmail_max_retries=1) as h:
        await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
        await h.rt.worker().run_until_idle(SETTLE_SECONDS)

        [page] = await h.rt.queue.list_jobs(type=jobtypes.BACKFILL)
        assert (page.state, page.attempts) == ("queued", 1)  # waiting to retry, not failed
        assert "Retryable" in (page.last_error or "") and "malformedResponse" in (page.last_error or "")
        assert "body is not JSON" in (page.last_error or "")
        assert emulator.state.faults.to_json()["injected"]["messages.list"]["truncate"] == 2  # 1 + 1 retry
        assert (await get_account(h.rt.engine, h.account_id)).last_error is None

        emulator.state.faults.configure({})
        await settle_with_retries(h)

        assert (await h.rt.queue.get(page.id)).state == "completed"
        assert not await h.rt.queue.list_jobs(state="failed")
        assert (await get_account(h.rt.engine, h.account_id)).status == STATUS_NORMAL
        drift = await h.drift()
        assert drift.total == 0, drift.by_kind()


async def test_a_history_sync_that_succeeds_clears_the_last_error(harness: Harness) -> None:
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.settle()
    await update_account(harness.rt.engine, harness.account_id, last_error=OLD_ERROR)  # an earlier sync failed

    await jobtypes.request_history_sync(harness.rt.queue, harness.account_id)
    await harness.settle()

    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NORMAL and account.last_error is None


async def test_a_backfill_hand_over_clears_the_last_error(harness: Harness) -> None:
    await start_backfill(harness.rt.services, harness.account_id, recovery=False, reason="test")
    await harness.run_one(jobtypes.BACKFILL)  # page 1 (clears the error of an earlier backfill itself)
    await update_account(harness.rt.engine, harness.account_id, last_error=OLD_ERROR)  # a page failed since

    await harness.settle()

    account = await get_account(harness.rt.engine, harness.account_id)
    assert account.status == STATUS_NORMAL and account.last_error is None


async def test_an_error_recorded_meanwhile_is_kept(harness: Harness) -> None:
    newer = "Gmail refused a request (400 badRequest): a newer problem"
    await update_account(harness.rt.engine, harness.account_id, last_error=newer)
    await clear_last_error(harness.rt.engine, harness.account_id, seen=OLD_ERROR)
    assert (await get_account(harness.rt.engine, harness.account_id)).last_error == newer
    await clear_last_error(harness.rt.engine, harness.account_id, seen=newer)
    assert (await get_account(harness.rt.engine, harness.account_id)).last_error is None
