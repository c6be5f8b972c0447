"""watch.renew.gmail and poll.fallback.gmail on both backends, against the emulator over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from realtime_harness import PROJECT, PubSubEmulator, Realtime, realtime_runtime, realtime_settings

from mailtide.db.schema import accounts, jobs
from mailtide.queue.context import QueueJobContext
from mailtide.queue.jobs import Job, Retryable
from mailtide.queue.periodic import Every, Schedule
from mailtide.sync import jobtypes
from mailtide.sync.handlers import build_handlers
from mailtide.sync.poll_fallback import quiet_accounts
from mailtide.sync.schedules import HISTORY_POLL, schedule_handlers, sync_schedules
from mailtide.sync.watch import WATCH_SWEEP, due_watch_renewals, request_watch, stop_watch

MISSING_TOPIC = f"{PROJECT}/topics/created-later"


@pytest.fixture
async def realtime(pubsub_emulator: PubSubEmulator, database_url: str, tmp_path: Path) -> AsyncIterator[Realtime]:
    settings = realtime_settings(pubsub_emulator, database_url, tmp_path, pubsub_topic=MISSING_TOPIC)
    async with realtime_runtime(settings, pubsub_emulator) as harness:
        yield harness


async def run_job(realtime: Realtime, job_type: str) -> Job:
    claimed = await realtime.rt.queue.claim("test", limit=1, types=[job_type])
    assert claimed, f"no {job_type} job ready"
    job = claimed[0]
    handlers = {**build_handlers(realtime.rt.services), **schedule_handlers(realtime.rt.services)}
    await handlers[job.type](job, QueueJobContext(job, realtime.rt.queue))
    assert await realtime.rt.queue.complete(job)
    return job


async def account_row(realtime: Realtime) -> sa.Row:
    async with realtime.rt.engine.connect() as conn:
        return (await conn.execute(sa.select(accounts).where(accounts.c.id == realtime.account_id))).one()


async def test_watch_is_set_up_renewed_and_failures_are_retried_and_reported(realtime: Realtime) -> None:
    rt, notifier = realtime.rt, realtime.emulator.pubsub.notifier
    # Never watched: due. The sweep (payload {}) enqueues the per-account renewal.
    assert await due_watch_renewals(rt.services) == [realtime.account_id]
    await rt.queue.enqueue(schedule(realtime, WATCH_SWEEP).spec_for(1))
    await run_job(realtime, jobtypes.WATCH_RENEW)
    # The topic does not exist yet: the failure is stored on the account and the job retried.
    claimed = (await rt.queue.claim("test", limit=1, types=[jobtypes.WATCH_RENEW]))[0]
    assert claimed.payload == {"account_id": realtime.account_id}
    with pytest.raises(Retryable, match="404"):
        await build_handlers(rt.services)[claimed.type](claimed, QueueJobContext(claimed, rt.queue))
    await rt.queue.fail(claimed, "watch failed", retryable=True, delay=0)
    row = await account_row(realtime)
    assert "404" in row.watch_error and row.watch_expiration is None
    retry = (await rt.queue.get(claimed.id))
    assert retry is not None and retry.state == "queued"
    # Once the topic exists, the retry succeeds: expiration stored, error cleared.
    realtime.emulator.pubsub.broker.create_topic(MISSING_TOPIC)
    await run_job(realtime, jobtypes.WATCH_RENEW)
    row = await account_row(realtime)
    assert row.watch_error is None and row.watch_expiration > time.time() + 6.9 * 86400
    assert notifier.watch_of(realtime.emulator.mailbox.email) is not None
    # Renewed just now: not due today; due again after the renewal interval.
    assert await due_watch_renewals(rt.services) == []
    assert await due_watch_renewals(rt.services, now=time.time() + 86_401) == [realtime.account_id]
    await stop_watch(rt.services, realtime.account_id)
    assert notifier.watch_of(realtime.emulator.mailbox.email) is None
    assert await due_watch_renewals(rt.services) == [realtime.account_id]


async def test_watch_requests_are_deduplicated_while_active(realtime: Realtime) -> None:
    first = await request_watch(realtime.rt.queue, realtime.account_id)
    second = await request_watch(realtime.rt.queue, realtime.account_id)
    assert first.id == second.id


async def test_polling_fallback_only_for_quiet_accounts(realtime: Realtime) -> None:
    rt = realtime.rt
    now = time.time()
    async with rt.engine.begin() as conn:
        await conn.execute(accounts.update().values(last_sync_at=now, last_notification_at=None))
    assert await quiet_accounts(rt.services, now=now) == []
    assert await quiet_accounts(rt.services, now=now + 3599) == []  # history_poll_seconds is 3600 here
    assert await quiet_accounts(rt.services, now=now + 3601) == [realtime.account_id]
    # A notification heard recently keeps the account off the list, even with an old sync.
    async with rt.engine.begin() as conn:
        await conn.execute(accounts.update().values(last_sync_at=now - 7200, last_notification_at=now))
    assert await quiet_accounts(rt.services, now=now + 60) == []
    # The periodic history poll asks for a sync of quiet accounts only, and it is checked often.
    poll = schedule(realtime, HISTORY_POLL)
    assert poll.cadence == Every(rt.settings.realtime_check_seconds)
    await rt.queue.enqueue(poll.spec_for(1))
    await run_job(realtime, HISTORY_POLL)
    assert await history_syncs_queued(realtime) == 0
    async with rt.engine.begin() as conn:
        await conn.execute(accounts.update().values(last_sync_at=now - 7200, last_notification_at=now - 7200))
    await rt.queue.enqueue(poll.spec_for(2))
    await run_job(realtime, HISTORY_POLL)
    assert await history_syncs_queued(realtime) == 1


def schedule(realtime: Realtime, name: str) -> Schedule:
    return next(s for s in sync_schedules(realtime.rt.settings) if s.name == name)


async def history_syncs_queued(realtime: Realtime) -> int:
    async with realtime.rt.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.type == jobtypes.HISTORY_SYNC, jobs.c.state == "queued"
        )
        return (await conn.execute(query)).scalar_one()
