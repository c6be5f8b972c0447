"""Backfill options (a newer_than window, SPAM/TRASH or not), resumability after kill -9 at any page,
and a backfill never running twice. Every test ends with `verify` through the Gmail API."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from fidelity_kit import DAY_MS, assert_no_drift, backfill, dated_emulator, harness_via, jobs_of
from sync_harness import Harness, ham_files, raw_of

from mailtide.db.schema import STATUS_NORMAL, job_steps, messages
from mailtide.queue.context import QueueJobContext
from mailtide.store.accounts import InvalidBackfillWindow, get_account, set_backfill_options, update_account
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill
from mailtide.sync.handlers import build_handlers


async def mirrored_ids(h: Harness, *, deleted: bool = False) -> set[str]:
    async with h.rt.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.id).where(messages.c.account_id == h.account_id, messages.c.deleted.is_(deleted))
        )
        return {r.id for r in rows}


async def test_a_window_backfills_only_recent_mail(database_url: str) -> None:
    with dated_emulator(30, days_apart=2) as emulator:  # ages 0, 2, 4, ... 58 days
        async with harness_via(emulator, database_url, list_page_size=4) as h:
            await set_backfill_options(h.rt.engine, h.account_id, newer_than="21d", include_spam_trash=True)
            await backfill(h)

            window_start = time.time() * 1000 - 21 * DAY_MS
            recent = {m.id for m in emulator.mailbox.messages() if m.internal_date_ms > window_start}
            assert len(recent) == 11
            assert await mirrored_ids(h) == recent
            [page_1, *_] = await jobs_of(h, jobtypes.BACKFILL)
            assert page_1.state == "completed"
            # Only the window was fetched: one messages.get per recent message.
            assert emulator.state.counters.requests("messages.get") == len(recent)
            report = await assert_no_drift(h, whole_mailbox=False)
            assert (report.on_server, report.in_scope, report.mirrored) == (30, 11, 11)


async def test_spam_and_trash_are_left_out_when_asked(database_url: str) -> None:
    with dated_emulator(12) as emulator:
        mailbox = emulator.mailbox
        spam, trash, *_ = [m.id for m in mailbox.messages()]
        mailbox.modify_labels(spam, add=["SPAM"], remove=["INBOX"])
        mailbox.modify_labels(trash, add=["TRASH"], remove=["INBOX"])
        async with harness_via(emulator, database_url) as h:
            await set_backfill_options(h.rt.engine, h.account_id, newer_than=None, include_spam_trash=False)
            await backfill(h)
            assert await mirrored_ids(h) == set(mailbox.message_ids()) - {spam, trash}
            report = await assert_no_drift(h, whole_mailbox=False)
            assert (report.on_server, report.in_scope) == (12, 10)

            # The default mirrors them too.
            await set_backfill_options(h.rt.engine, h.account_id, newer_than=None, include_spam_trash=True)
            await backfill(h)
            await assert_no_drift(h)


async def test_a_windowed_recovery_keeps_mirrored_mail_older_than_the_window(database_url: str) -> None:
    with dated_emulator(16, days_apart=1) as emulator:
        mailbox, state = emulator.mailbox, emulator.state
        async with harness_via(emulator, database_url) as h:
            await set_backfill_options(h.rt.engine, h.account_id, newer_than="30d", include_spam_trash=True)
            await backfill(h)
            assert await mirrored_ids(h) == set(mailbox.message_ids())

            # Forty days later every mirrored message is older than the window. During a history gap
            # one old message is deleted, one relabelled, and new mail arrives.
            state.set_now(time.time() + 40 * 86_400)
            old = sorted(mailbox.message_ids())
            mailbox.delete_message(old[0])
            mailbox.modify_labels(old[1], add=["STARRED"], remove=["INBOX"])
            new = mailbox.add_message(raw_of(ham_files(1, skip=100)[0]), internal_date_ms=int(state.now() * 1000))
            mailbox.expire_history()
            await jobtypes.request_history_sync(h.rt.queue, h.account_id)
            await h.settle()

            assert await mirrored_ids(h) == set(old[1:]) | {new}  # nothing old was tombstoned but the deleted one
            assert await mirrored_ids(h, deleted=True) == {old[0]}
            assert [j.state for j in await jobs_of(h, jobtypes.RECONCILE)] == ["completed"]
            await assert_no_drift(h)


async def test_an_invalid_window_is_refused_and_a_bad_stored_one_fails_clearly(database_url: str) -> None:
    with dated_emulator(3) as emulator:
        async with harness_via(emulator, database_url) as h:
            for bad in ("30", "d30", "0d", "1w", "30d; in:spam"):
                with pytest.raises(InvalidBackfillWindow):
                    await set_backfill_options(h.rt.engine, h.account_id, newer_than=bad, include_spam_trash=True)
            await update_account(h.rt.engine, h.account_id, backfill_newer_than="forever")  # written behind our back
            await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
            await h.settle()
            [job] = await jobs_of(h, jobtypes.BACKFILL)
            assert job.state == "failed" and job.attempts == 1
            assert "'forever' is not a Gmail newer_than value" in job.last_error
            assert "newer_than" in ((await get_account(h.rt.engine, h.account_id)).last_error or "")


async def test_concurrent_requests_start_one_backfill(database_url: str) -> None:
    with dated_emulator(12) as emulator:
        async with harness_via(emulator, database_url, list_page_size=5) as h:
            started = await asyncio.gather(
                *(start_backfill(h.rt.services, h.account_id, recovery=False, reason=f"r{i}") for i in range(6))
            )
            assert sum(job is not None for job in started) == 1
            await h.run_one(jobtypes.BACKFILL)  # page 1 done, page 2 queued: still the same backfill
            assert await start_backfill(h.rt.services, h.account_id, recovery=True, reason="again") is None
            await h.settle()
            assert len(await jobs_of(h, jobtypes.BACKFILL)) == 3
            await assert_no_drift(h)


async def test_a_rerun_page_reuses_the_anchor_and_never_forks_the_chain(database_url: str) -> None:
    """What the rescuer does after a kill -9, made deterministic: pages run again after they (or
    the pages after them) completed."""
    with dated_emulator(14) as emulator:
        async with harness_via(emulator, database_url, list_page_size=4) as h:
            handlers = build_handlers(h.rt.services)

            async def rerun(job_row: sa.Row) -> None:
                job = await h.rt.queue.get(job_row.id)
                assert job is not None
                await handlers[job.type](job, QueueJobContext(job, h.rt.queue))

            await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
            await h.run_one(jobtypes.BACKFILL)
            anchor = (await get_account(h.rt.engine, h.account_id)).anchor_history_id
            emulator.mailbox.delete_message(emulator.mailbox.messages()[0].id)  # changes after the anchor
            await h.run_one(jobtypes.BACKFILL)
            await h.run_one(jobtypes.BACKFILL)  # page 3 completed, page 4 queued
            profiles = emulator.state.counters.requests("getProfile")

            [p1, p2, _p3, p4] = await jobs_of(h, jobtypes.BACKFILL)
            await rerun(p1)
            await rerun(p2)
            assert (await get_account(h.rt.engine, h.account_id)).anchor_history_id == anchor
            assert emulator.state.counters.requests("getProfile") == profiles  # no new anchor taken
            assert len(await jobs_of(h, jobtypes.BACKFILL)) == 4  # pages 2..4 were not enqueued again

            await h.settle()
            await rerun(p4)  # the last page, after the hand-over: nothing happens
            assert len(await jobs_of(h, jobtypes.HISTORY_SYNC)) == 1
            await assert_no_drift(h)


# ------------------------------------------------------------------------------------ kill -9
async def wait_for(condition: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def completed_pages(h: Harness) -> int:
    return sum(j.state == "completed" for j in await jobs_of(h, jobtypes.BACKFILL))


@pytest.mark.timeout(120)
async def test_a_backfill_resumes_after_kill_9_at_any_page(database_url: str, tmp_path: Path) -> None:
    """A real `mailtide worker` process is killed with SIGKILL twice mid-backfill while the mailbox
    changes; a new worker finishes, and verify finds no drift and no page run twice."""
    with dated_emulator(36) as emulator:
        mailbox = emulator.mailbox
        async with harness_via(emulator, database_url) as h:
            env = {
                **os.environ,
                "MAILTIDE_DATABASE_URL": database_url,
                "MAILTIDE_GMAIL_API_URL": emulator.server.url,
                "MAILTIDE_TOKEN_URL": f"{emulator.server.url}/token",
                "MAILTIDE_DATA_DIR": str(tmp_path),
                "MAILTIDE_LIST_PAGE_SIZE": "4",
                "MAILTIDE_INGEST_BATCH_SIZE": "3",
                "MAILTIDE_WORKER_CONCURRENCY": "2",
                "MAILTIDE_HEARTBEAT_SECONDS": "0.2",
                "MAILTIDE_POLL_SECONDS": "0.05",
            }

            async def worker() -> asyncio.subprocess.Process:
                return await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "mailtide", "worker", env=env,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )

            await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
            for round_no, pages_done in enumerate((2, 5)):
                proc = await worker()
                await wait_for(lambda n=pages_done: _at_least(completed_pages(h), n), 60, f"{pages_done} pages")
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
                assert (await get_account(h.rt.engine, h.account_id)).status != STATUS_NORMAL, "killed too late"
                ids = sorted(mailbox.message_ids())
                mailbox.delete_message(ids[round_no])
                mailbox.modify_labels(ids[-1 - round_no], add=["STARRED"], remove=["UNREAD"])
                mailbox.add_message(raw_of(ham_files(1, skip=200 + round_no)[0]))

            last = await worker()
            try:
                await wait_for(lambda: _settled(h), 90, "the backfill to finish")
            finally:
                last.send_signal(signal.SIGTERM)
                await last.wait()

            await assert_no_drift(h)
            pages = [j for j in await jobs_of(h, jobtypes.BACKFILL) if j.state == "completed"]
            numbers = sorted(int(j.payload.get("page", 1)) for j in pages)
            assert numbers == list(range(1, len(numbers) + 1)), "a page ran twice or was skipped"
            async with h.rt.engine.connect() as conn:
                anchor_steps = sa.select(sa.func.count()).select_from(job_steps).where(job_steps.c.name == "anchor")
                anchors = (await conn.execute(anchor_steps)).scalar_one()
            assert anchors == 1  # re-runs of page 1 reused the anchor
            assert (await get_account(h.rt.engine, h.account_id)).history_id == mailbox.history_id


async def _at_least(count: Awaitable[int], wanted: int) -> bool:
    return await count >= wanted


async def _settled(h: Harness) -> bool:
    account = await get_account(h.rt.engine, h.account_id)
    return account.status == STATUS_NORMAL and await h.rt.queue.is_idle()
