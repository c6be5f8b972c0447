"""Sync test harness: the emulator over real HTTP, and a wired runtime on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailtide.config import load_settings
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox
from mailtide.queue.context import QueueJobContext
from mailtide.queue.jobs import Job
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.sync.handlers import build_handlers
from mailtide.verify import Drift, MessageFacts, compare, mirror_facts

EMAIL = "alice@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "test-client", "test-secret", "alice-refresh-token"
SETTLE_TIMEOUT_SECONDS = 60
DEMO_DATA = Path(__file__).parents[2] / "src" / "mailtide" / "demo_data"


@dataclass
class Emulator:
    state: EmulatorState
    mailbox: Mailbox
    server: EmulatorServer

    def facts(self) -> dict[str, MessageFacts]:
        return {
            row["id"]: MessageFacts(row["threadId"], tuple(sorted(row["labelIds"])), row["sha256"])
            for row in self.mailbox.snapshot()["messages"]
        }

    def units(self) -> int:
        return self.state.counters.quota_units(EMAIL)


def ham_files(count: int, *, skip: int = 0) -> list[Path]:
    return sorted((DEMO_DATA / "spamassassin" / "ham").iterdir())[skip : skip + count]


def raw_of(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """A mailbox of 60 real ham messages plus the Google Takeout sample (labels and threads from headers)."""
    state = EmulatorState(seed=11)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    ham_dir = tmp_path / "ham"
    ham_dir.mkdir()
    for f in ham_files(60):
        (ham_dir / f.name).write_bytes(f.read_bytes())
    mailbox.load_path(ham_dir, label_ids=["INBOX", "UNREAD"])
    mailbox.load_path(DEMO_DATA / "takeout" / "takeout.mbox")
    with EmulatorServer(state) as server:
        yield Emulator(state, mailbox, server)


@dataclass
class Harness:
    rt: Runtime
    account_id: int
    emulator: Emulator

    async def settle(self) -> None:
        await self.rt.worker().run_until_idle(SETTLE_TIMEOUT_SECONDS)

    async def run_one(self, job_type: str) -> Job:
        """Claim and run exactly one job of `job_type`, as a worker would (deterministic interleavings)."""
        claimed = await self.rt.queue.claim("test-harness", limit=1, types=[job_type])
        assert claimed, f"no {job_type} job is ready"
        job = claimed[0]
        await build_handlers(self.rt.services)[job.type](job, QueueJobContext(job, self.rt.queue))
        assert await self.rt.queue.complete(job)
        return job

    async def drift(self) -> Drift:
        return compare(self.emulator.facts(), await mirror_facts(self.rt.engine, self.account_id))


@asynccontextmanager
async def open_harness(emulator: Emulator, database_url: str, **overrides: object) -> AsyncIterator[Harness]:
    """A runtime on `database_url` pointed at the emulator, with the test account created."""
    settings = load_settings(
        database_url=database_url,
        gmail_api_url=emulator.server.url,
        token_url=f"{emulator.server.url}/token",
        worker_concurrency=4,
        poll_seconds=0.05,
        list_page_size=25,
        ingest_batch_size=10,
        **overrides,
    )
    async with Runtime.open(settings) as rt:
        account_id = await create_account(
            rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        yield Harness(rt, account_id, emulator)


@pytest.fixture
async def harness(emulator: Emulator, database_url: str) -> AsyncIterator[Harness]:
    async with open_harness(emulator, database_url) as h:
        yield h
