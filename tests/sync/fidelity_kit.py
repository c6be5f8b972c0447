"""Helpers of the mirror-fidelity tests: a small dated mailbox, a runtime pointed at any API URL
(the emulator or a proxy in front of it), and verification through the Gmail API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import sqlalchemy as sa
from sync_harness import CLIENT_ID, CLIENT_SECRET, EMAIL, REFRESH_TOKEN, Emulator, Harness, ham_files, raw_of

from mailtide.config import load_settings
from mailtide.db.schema import jobs
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.sync.backfill import start_backfill
from mailtide.verify import VerifyReport, verify_account

DAY_MS = 86_400_000


@contextmanager
def dated_emulator(count: int, *, skip: int = 0, days_apart: float = 1.0) -> Iterator[Emulator]:
    """`count` real ham messages delivered to INBOX, one every `days_apart` days ending now (newest
    first in the list), so `newer_than:` windows select a known subset."""
    state = EmulatorState(seed=23)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    now_ms = int(time.time() * 1000)
    for age, path in enumerate(ham_files(count, skip=skip)):
        mailbox.add_message(
            raw_of(path), label_ids=["INBOX", "UNREAD"], internal_date_ms=now_ms - int(age * days_apart * DAY_MS) - 1000
        )
    with EmulatorServer(state) as server:
        yield Emulator(state, mailbox, server)


@asynccontextmanager
async def harness_via(
    emulator: Emulator, database_url: str, api_url: str | None = None, **settings: object
) -> AsyncIterator[Harness]:
    """A runtime whose Gmail requests go to `api_url` (default: the emulator itself)."""
    values: dict[str, object] = {
        "database_url": database_url,
        "gmail_api_url": api_url or emulator.server.url,
        "token_url": f"{emulator.server.url}/token",
        "worker_concurrency": 4,
        "poll_seconds": 0.05,
        "list_page_size": 25,
        "ingest_batch_size": 10,
        **settings,
    }
    async with Runtime.open(load_settings(**values)) as rt:
        account_id = await create_account(
            rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        yield Harness(rt, account_id, emulator)


async def backfill(h: Harness) -> None:
    await start_backfill(h.rt.services, h.account_id, recovery=False, reason="test")
    await h.settle()


async def verify_via_api(h: Harness, *, full: bool = True) -> VerifyReport:
    """`mailtide verify --full` for the harness's account (through the same Gmail client the sync uses)."""
    client = await h.rt.services.gmail.for_account(h.account_id)
    return await verify_account(h.rt.engine, client, h.account_id, full=full)


async def assert_no_drift(h: Harness, *, whole_mailbox: bool = True) -> VerifyReport:
    """No drift through the API (`mailtide verify --full`) and, when the account mirrors the whole
    mailbox, none against the emulator's own snapshot either."""
    report = await verify_via_api(h)
    assert report.converged, report.drift.by_kind()
    if whole_mailbox:
        drift = await h.drift()
        assert drift.total == 0, drift.by_kind()
    return report


async def jobs_of(h: Harness, job_type: str) -> list[sa.Row]:
    async with h.rt.engine.connect() as conn:
        return list(
            await conn.execute(sa.select(jobs).where(jobs.c.type == job_type).order_by(jobs.c.id))
        )
