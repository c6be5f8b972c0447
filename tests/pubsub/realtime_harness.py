"""Real-time test harness: the emulator (Gmail REST + Pub/Sub gRPC on loopback), a runtime on a real
database whose account has finished its backfill, and our push endpoint served by uvicorn."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI

from mailtide.config import Settings, load_settings
from mailtide.db.schema import STATUS_NORMAL, jobs
from mailtide.emulator.pubsub.grpc_server import PubSubGrpcServer
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account, get_account
from mailtide.sync.backfill import start_backfill
from mailtide.verify import Drift, MessageFacts, compare, mirror_facts

EMAIL = "carol@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "rt-client", "rt-secret", "carol-refresh-token"
PROJECT = "projects/mailtide-test"
TOPIC = f"{PROJECT}/topics/gmail"
PULL_SUBSCRIPTION = f"{PROJECT}/subscriptions/gmail-pull"
PUSH_SUBSCRIPTION = f"{PROJECT}/subscriptions/gmail-push"
PUSH_SERVICE_ACCOUNT = "gmail-push@mailtide-test.iam.gserviceaccount.com"
PUSH_AUDIENCE = "https://mailtide.test/pubsub/gmail"
HAM = Path(__file__).parents[2] / "src" / "mailtide" / "demo_data" / "spamassassin" / "ham"


def ham_raw(index: int) -> bytes:
    raw = sorted(HAM.iterdir())[index].read_bytes()
    return raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw


@dataclass
class PubSubEmulator:
    state: EmulatorState
    mailbox: Mailbox
    server: EmulatorServer
    grpc: PubSubGrpcServer

    @property
    def pubsub(self) -> Any:
        return self.state.pubsub

    @property
    def certs_url(self) -> str:
        return self.server.url + "/oauth2/v1/certs"

    def facts(self) -> dict[str, MessageFacts]:
        return {
            row["id"]: MessageFacts(row["threadId"], tuple(sorted(row["labelIds"])), row["sha256"])
            for row in self.mailbox.snapshot()["messages"]
        }


@pytest.fixture
def pubsub_emulator() -> Iterator[PubSubEmulator]:
    """A mailbox of 15 real messages, the Gmail REST API over HTTP and Pub/Sub over gRPC, a topic."""
    state = EmulatorState(seed=5)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    for index in range(15):
        mailbox.add_message(ham_raw(index))
    state.pubsub.broker.create_topic(TOPIC)
    with EmulatorServer(state) as server, PubSubGrpcServer(state.pubsub.broker) as grpc_server:
        yield PubSubEmulator(state, mailbox, server, grpc_server)
        state.pubsub.close()


def realtime_settings(emulator: PubSubEmulator, database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path,
        "gmail_api_url": emulator.server.url,
        "token_url": f"{emulator.server.url}/token",
        "worker_concurrency": 4,
        "poll_seconds": 0.05,
        "pubsub_topic": TOPIC,
        "pubsub_emulator_host": emulator.grpc.address,
        "pubsub_push_audience": PUSH_AUDIENCE,
        "pubsub_push_service_account": PUSH_SERVICE_ACCOUNT,
        "pubsub_certs_url": emulator.certs_url,
        "history_poll_seconds": 3600,
    }
    return load_settings(**{**values, **overrides})


@dataclass
class Realtime:
    rt: Runtime
    account_id: int
    emulator: PubSubEmulator

    async def drift(self) -> Drift:
        return compare(self.emulator.facts(), await mirror_facts(self.rt.engine, self.account_id))

    async def converge(self, within: float = 30.0) -> float:
        """Wait (workers run elsewhere) until the mirror equals the mailbox; returns the seconds it took."""
        started = time.monotonic()
        drift = await self.drift()
        while drift.total:
            if time.monotonic() - started > within:
                raise AssertionError(f"no convergence after {within}s: {drift.by_kind()}")
            await asyncio.sleep(0.05)
            drift = await self.drift()
        return time.monotonic() - started

    async def history_syncs(self) -> int:
        async with self.rt.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.type == "history.sync.gmail")
            return (await conn.execute(query)).scalar_one()


@asynccontextmanager
async def realtime_runtime(settings: Settings, emulator: PubSubEmulator) -> AsyncIterator[Realtime]:
    """A runtime whose account has been backfilled (status normal, cursor set)."""
    async with Runtime.open(settings) as rt:
        account_id = await create_account(
            rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        await start_backfill(rt.services, account_id, recovery=False, reason="test")
        await rt.worker().run_until_idle(60)
        assert (await get_account(rt.engine, account_id)).status == STATUS_NORMAL
        yield Realtime(rt, account_id, emulator)


@asynccontextmanager
async def running(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]) -> AsyncIterator[None]:
    task = asyncio.create_task(start())
    try:
        yield
    finally:
        await stop()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def serve_routers(*routers: APIRouter) -> AsyncIterator[str]:
    """A FastAPI app with these routers, served by uvicorn on a loopback port in this event loop."""
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", loop="asyncio"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within}s")
        await asyncio.sleep(0.05)
