"""Chaos convergence: 5 % server errors, 2 % connections reset mid-body and Gmail's 2026 quota (scaled down
so it binds within seconds) while a backfill runs and the mailbox keeps changing. The mirror must converge
exactly (no drift) with zero failed jobs: every failure is absorbed by the client's retries or by the
job's, and no failed fetch is ever counted as done."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sync_harness import Emulator, Harness, ham_files, open_harness, raw_of

from mailtide.db.schema import jobs
from mailtide.emulator.faults import MethodFaults, parse_fault_spec
from mailtide.gmail.quota import quota_profile
from mailtide.store.messages import count_messages
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill

# Gmail's 2026 prices with a 600-unit allowance per 2-second quota minute: 300 units/s, 15 messages.get/s.
QUOTA = {"user_units_per_minute": 600, "time_scale": 30}
CHAOS = "5xx=5%,reset=2%"
CONVERGE_TIMEOUT_SECONDS = 90


async def settle_everything(h: Harness) -> None:
    """Run workers until nothing is queued at all, retries scheduled for later included."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_SECONDS
    while True:
        await h.rt.worker().run_until_idle(max(1.0, deadline - time.monotonic()))
        if await h.rt.queue.is_idle(include_scheduled=True):
            return
        assert time.monotonic() < deadline, "the queue never became idle"
        await asyncio.sleep(0.2)  # a retry is scheduled a little later


async def job_states(h: Harness) -> dict[str, int]:
    async with h.rt.engine.connect() as conn:
        rows = await conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state))
        return {state: count for state, count in rows}


@asynccontextmanager
async def chaos_harness(emulator: Emulator, database_url: str, **overrides: object) -> AsyncIterator[Harness]:
    emulator.state.set_quota_profile(quota_profile("gmail-2026", **QUOTA))  # type: ignore[arg-type]
    emulator.state.faults.configure(dict([parse_fault_spec(CHAOS)]), seed=2026)
    async with open_harness(
        emulator,
        database_url,
        quota_profile="gmail-2026",
        quota_user_units_per_minute=QUOTA["user_units_per_minute"],
        quota_time_scale=QUOTA["time_scale"],
        **overrides,
    ) as h:
        yield h


@pytest.fixture
async def chaos(emulator: Emulator, database_url: str) -> AsyncIterator[Harness]:
    async with chaos_harness(emulator, database_url) as h:
        yield h


async def test_backfill_and_live_changes_converge_under_chaos(chaos: Harness) -> None:
    h = chaos
    mailbox = h.emulator.mailbox
    total = len(mailbox.message_ids())
    rng = random.Random(7)
    await start_backfill(h.rt.services, h.account_id, recovery=False, reason="chaos")
    # settle_everything, not a bare run_until_idle: under chaos a job may be waiting out a retry's
    # backoff with nothing else due, which run_until_idle rightly counts as idle.
    backfill = asyncio.create_task(settle_everything(h))
    while await count_messages(h.rt.engine, h.account_id) < total // 3:  # live changes a third of the way in
        assert not backfill.done(), "the backfill ended before a third of the mailbox was mirrored"
        await asyncio.sleep(0.05)
    ids = sorted(mailbox.message_ids())
    for message_id in rng.sample(ids, 4):
        mailbox.delete_message(message_id)
    for message_id in rng.sample(sorted(mailbox.message_ids()), 8):
        mailbox.modify_labels(message_id, add=["STARRED"], remove=["UNREAD"])
    for path in ham_files(6, skip=150):
        mailbox.add_message(raw_of(path), label_ids=["INBOX", "UNREAD"])
    await backfill
    await settle_everything(h)

    # After the hand-over, more changes arrive and a notification asks for a history sync.
    for message_id in rng.sample(sorted(mailbox.message_ids()), 3):
        mailbox.delete_message(message_id)
    for message_id in rng.sample(sorted(mailbox.message_ids()), 6):
        mailbox.modify_labels(message_id, add=["IMPORTANT"], remove=["INBOX"])
    for path in ham_files(4, skip=170):
        mailbox.add_message(raw_of(path), label_ids=["INBOX"])
    await jobtypes.request_history_sync(h.rt.queue, h.account_id)
    await settle_everything(h)

    drift = await h.drift()
    assert drift.total == 0, drift.by_kind()
    states = await job_states(h)
    assert states.get("failed", 0) == 0, states
    injected = h.emulator.state.faults.to_json()["injected"]
    kinds = {kind for per_method in injected.values() for kind in per_method}
    assert {"error500", "error503", "reset"} <= kinds, injected  # the chaos really happened
    units_per_second = QUOTA["user_units_per_minute"] / (60 / QUOTA["time_scale"])
    assert h.emulator.units() > 2 * units_per_second  # and the quota really bound: several quota minutes' worth


async def test_a_fetch_that_keeps_failing_is_never_counted_as_done(emulator: Emulator, database_url: str) -> None:
    async with chaos_harness(emulator, database_url, gmail_max_retries=1) as h:
        await _keep_failing_then_recover(h)


async def _keep_failing_then_recover(h: Harness) -> None:
    ids = sorted(h.emulator.mailbox.message_ids())[:6]
    h.emulator.state.faults.configure({"messages.get": MethodFaults(error500=1.0)})
    await jobtypes.request_ingest(h.rt.queue, h.account_id, ids, batch_size=10, priority=0)
    await h.rt.worker().run_until_idle(CONVERGE_TIMEOUT_SECONDS)
    [job] = await h.rt.queue.list_jobs(type=jobtypes.INGEST)
    assert job.state == "queued" and job.attempts == 1  # retried later, not completed
    assert "6 of 6 fetches failed" in (job.last_error or "")
    steps = await h.rt.queue.steps(job.id)
    assert steps[-1].detail == {"stored": 0, "gone": 0, "failed": 6}
    assert await count_messages(h.rt.engine, h.account_id) == 0

    h.emulator.state.faults.configure({})
    await settle_everything(h)
    [job] = await h.rt.queue.list_jobs(type=jobtypes.INGEST)
    assert job.state == "completed"
    assert await count_messages(h.rt.engine, h.account_id) == 6
