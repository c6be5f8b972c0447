"""API test support: a small real mailbox in the emulator over HTTP, a Runtime on a real database,
and the API app reached through httpx's ASGI transport (same event loop, no socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailtide.api import create_api
from mailtide.config import Settings, load_settings
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox
from mailtide.queue.context import QueueJobContext
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.sync.backfill import start_backfill
from mailtide.sync.handlers import build_handlers

EMAIL = "carol@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "api-client", "api-secret", "carol-refresh-token"
API_TOKEN = "test-api-token-0123456789"
DEMO_DATA = Path(__file__).parents[2] / "src" / "mailtide" / "demo_data"
HAM_MESSAGES = 12


@dataclass
class Emulator:
    state: EmulatorState
    mailbox: Mailbox
    server: EmulatorServer

    def message_ids(self) -> set[str]:
        return {row["id"] for row in self.mailbox.snapshot()["messages"]}


def load_small_mailbox(mailbox: Mailbox, directory: Path) -> None:
    """12 SpamAssassin ham messages (INBOX, UNREAD) and the Google Takeout sample (user labels)."""
    ham = directory / "ham"
    ham.mkdir(exist_ok=True)
    for path in sorted((DEMO_DATA / "spamassassin" / "ham").iterdir())[:HAM_MESSAGES]:
        (ham / path.name).write_bytes(path.read_bytes())
    mailbox.load_path(ham, label_ids=["INBOX", "UNREAD"])
    mailbox.load_path(DEMO_DATA / "takeout" / "takeout.mbox")


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    state = EmulatorState(seed=5)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    load_small_mailbox(mailbox, tmp_path)
    with EmulatorServer(state) as server:
        yield Emulator(state, mailbox, server)


def settings_for(emulator: Emulator, database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        gmail_api_url=emulator.server.url,
        token_url=emulator.server.token_url,
        data_dir=tmp_path / "data",
        worker_concurrency=4,
        poll_seconds=0.05,
        list_page_size=10,
        ingest_batch_size=10,
        **overrides,
    )


@dataclass
class Api:
    rt: Runtime
    http: httpx.AsyncClient
    account_id: int
    emulator: Emulator

    async def settle(self) -> None:
        await self.rt.worker().run_until_idle(60)

    async def backfill(self) -> None:
        await start_backfill(self.rt.services, self.account_id, recovery=False, reason="test")
        await self.settle()

    async def run_one(self, job_type: str) -> None:
        """Claim and run one job of this type, as a worker would (to stop a backfill half way)."""
        [job] = await self.rt.queue.claim("test", limit=1, types=[job_type])
        await build_handlers(self.rt.services)[job.type](job, QueueJobContext(job, self.rt.queue))
        assert await self.rt.queue.complete(job)


async def open_api(settings: Settings, emulator: Emulator, *, worker_running: bool | None = True,
                   headers: dict[str, str] | None = None) -> AsyncIterator[Api]:
    async with Runtime.open(settings) as rt:
        account_id = await create_account(
            rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN,
            secrets=rt.secrets,
        )
        probe = None if worker_running is None else (lambda: worker_running)
        app = create_api(rt, settings, worker_running=probe)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailtide.test", headers=headers) as http:
            yield Api(rt, http, account_id, emulator)


@pytest.fixture
async def api(emulator: Emulator, database_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    async for ready in open_api(settings_for(emulator, database_url, tmp_path), emulator):
        yield ready


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Every error has the same JSON shape: {"error": {"status", "code", "message", ...}}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["code"] == code and error["message"]
    return error
