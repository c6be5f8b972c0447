"""Add-to-mirror latency of real-time sync: from a message added on the emulator to it being in the mirror.

Four scenarios: push and pull, each with and without a concurrent backfill of other, large accounts
(--backfill-accounts; real-time work must overtake it). Everything is real and on loopback: the
emulator's Gmail REST API and Pub/Sub (gRPC for pull, signed OIDC pushes to mailtide's push endpoint
served by uvicorn), the google-cloud-pubsub client, the worker, the database. The emulator runs in
its own process, as Gmail is another machine: its CPU work must not slow mailtide down (and so
inflate the figures).
Latency = the message row's first write time in the mirror minus the time just before the message
was added through the emulator's admin API (same machine, same clock).

Messages arrive round-robin over --users mailboxes, each user at most one per --interval seconds,
because Gmail sends at most one notification per second per user (faster arrivals are folded into
the next notification and wait for it: that wait is Gmail's, not mailtide's; --interval 0.25 shows it).

    .venv/bin/python bench/latency_bench.py                       # 200 messages per scenario (~5 min)
    .venv/bin/python bench/latency_bench.py --messages 40 --backfill-messages 1500   # a quick look
    .venv/bin/python bench/latency_bench.py --backend postgresql  # PostgreSQL at 127.0.0.1:5432/test
    .venv/bin/python bench/latency_bench.py --backfill-accounts 4 --reserved-slots 0   # no slot kept
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import multiprocessing
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from mailtide.config import load_settings
from mailtide.db.schema import accounts, jobs, messages
from mailtide.db.testing import DEFAULT_POSTGRES_TEST_URL, empty_database_url
from mailtide.emulator.mailbox import NewMessage
from mailtide.emulator.pubsub.grpc_server import PubSubGrpcServer
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorState
from mailtide.pubsub.push import PUSH_PATH, api_router
from mailtide.pubsub.service import PullListeners
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account, get_account
from mailtide.sync.backfill import start_backfill
from mailtide.sync.watch import request_watch

CORPUS = Path(__file__).parents[1] / "src" / "mailtide" / "demo_data" / "spamassassin"
TOPIC = "projects/bench/topics/gmail"
SUBSCRIPTION = "projects/bench/subscriptions/gmail"
AUDIENCE = "https://mailtide.bench/pubsub/gmail"
PUSH_ACCOUNT = "gmail-push@bench.iam.gserviceaccount.com"
QUOTA_UNITS_PER_USER_MINUTE = 6_000  # Gmail's 2026 per-user allowance


def corpus() -> list[bytes]:
    raws = []
    for path in sorted((CORPUS / "ham").iterdir()) + sorted((CORPUS / "spam").iterdir()):
        raw = path.read_bytes()
        raws.append(raw.split(b"\n", 1)[1] if raw.startswith(b"From ") else raw)
    return raws


@dataclass
class Result:
    mode: str
    backfill: bool
    latencies: list[float]
    missing: int
    realtime_units_per_minute: float
    backfill_mirrored: int | None
    backfill_total: int | None

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: TCP_NODELAY on accept
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


@contextlib.asynccontextmanager
async def running(start, stop) -> AsyncIterator[None]:  # type: ignore[no-untyped-def]
    task = asyncio.create_task(start())
    try:
        yield
    finally:
        await stop()
        await asyncio.gather(task, return_exceptions=True)


def run_emulator(ready: Any, emails: list[str], bulk_emails: list[str], bulk_messages: int) -> None:
    """The child process: the emulator with the users' mailboxes, until terminated."""
    logging.basicConfig(level=logging.WARNING)
    raws = corpus()
    state = EmulatorState(seed=42)
    for email in emails:
        state.add_user(email, refresh_token=f"{email}-token").add_messages([NewMessage(raws[i]) for i in range(5)])
    for bulk_email in bulk_emails:
        bulk = state.add_user(bulk_email, refresh_token=f"{bulk_email}-token")
        bulk.add_messages(NewMessage(raws[i % len(raws)]) for i in range(bulk_messages))
    state.pubsub.broker.create_topic(TOPIC)
    with EmulatorServer(state) as server, PubSubGrpcServer(state.pubsub.broker) as grpc:
        ready.put((server.url, grpc.address))
        threading.Event().wait()


@contextlib.contextmanager
def emulator_process(emails: list[str], bulk_emails: list[str], bulk_messages: int) -> Iterator[tuple[str, str]]:
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(
        target=run_emulator, args=(ready, emails, bulk_emails, bulk_messages), daemon=True, name="emulator"
    )
    process.start()
    try:
        yield ready.get(timeout=120)
    finally:
        process.terminate()
        process.join(10)


async def scenario(mode: str, with_backfill: bool, args: argparse.Namespace, raws: list[bytes]) -> Result:
    emails = [f"rt{i}@bench.test" for i in range(args.users)]
    bulk_emails = [f"bulk{i}@bench.test" for i in range(args.backfill_accounts)] if with_backfill else []
    with tempfile.TemporaryDirectory() as tmp, emulator_process(emails, bulk_emails, args.backfill_messages) as urls:
        emulator_url, grpc_address = urls
        async with empty_database_url(args.backend, Path(tmp), postgres_url=args.postgres_url) as database_url:
            settings = load_settings(
                database_url=database_url,
                data_dir=Path(tmp),
                gmail_api_url=emulator_url,
                token_url=emulator_url + "/token",
                worker_concurrency=args.concurrency,
                worker_reserved_slots=args.reserved_slots,
                pubsub_topic=TOPIC,
                pubsub_subscriptions=[SUBSCRIPTION] if mode == "pull" else [],
                pubsub_emulator_host=grpc_address,
                pubsub_push_audience=AUDIENCE,
                pubsub_push_service_account=PUSH_ACCOUNT,
                pubsub_certs_url=emulator_url + "/oauth2/v1/certs",
                history_poll_seconds=0,  # measure notifications, not the safety net
            )
            async with Runtime.open(settings) as rt, httpx.AsyncClient(base_url=emulator_url, timeout=30) as admin:
                return await measure(rt, admin, emails, bulk_emails, mode, args, raws)


async def quota_units(admin: httpx.AsyncClient, emails: list[str]) -> int:
    units = (await admin.get("/_emulator/counters")).json()["quotaUnits"]
    return sum(units.get(email, 0) for email in emails)


async def add_account(rt: Runtime, email: str) -> int:
    return await create_account(
        rt.engine, email, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
        refresh_token=f"{email}-token",
    )


async def measure(
    rt: Runtime, admin: httpx.AsyncClient, emails: list[str], bulk_emails: list[str], mode: str,
    args: argparse.Namespace, raws: list[bytes],
) -> Result:
    account_ids = {email: await add_account(rt, email) for email in emails}
    for account_id in account_ids.values():
        await start_backfill(rt.services, account_id, recovery=False, reason="bench")
    await rt.worker().run_until_idle(120)

    app = FastAPI()
    router = api_router(rt)
    assert router is not None
    app.include_router(router)
    worker, listeners = rt.worker(), PullListeners(rt)
    async with serve(app) as url, running(worker.run, lambda: worker.stop(0)), running(listeners.run, listeners.stop):
        subscription = {"name": SUBSCRIPTION, "topic": TOPIC}
        if mode == "push":
            subscription.update(pushEndpoint=url + PUSH_PATH, serviceAccountEmail=PUSH_ACCOUNT, audience=AUDIENCE)
        (await admin.post("/_emulator/pubsub/subscriptions", json=subscription)).raise_for_status()
        for account_id in account_ids.values():
            await request_watch(rt.queue, account_id)
        while True:
            async with rt.engine.connect() as conn:
                watched = (await conn.execute(
                    sa.select(sa.func.count()).select_from(accounts).where(accounts.c.watch_expiration.is_not(None))
                )).scalar_one()
            if watched == len(emails):
                break
            await asyncio.sleep(0.05)
        bulk_ids = [await add_account(rt, bulk_email) for bulk_email in bulk_emails]
        for bulk_id in bulk_ids:
            await start_backfill(rt.services, bulk_id, recovery=False, reason="bench")
        if bulk_ids:
            await asyncio.sleep(2.0)  # let the backfills get going: listing done, ingests queued
        await asyncio.sleep(1.2)  # the watches' own notifications are out of the one-second window
        units_before = await quota_units(admin, emails)
        added: dict[str, float] = {}
        spacing = args.interval / len(emails)
        started = time.time()
        lag = LoopLag()
        for index in range(args.messages):
            await asyncio.sleep(max(0.0, started + index * spacing - time.time()))
            raw = raws[(index * 7) % len(raws)]
            at = time.time()
            response = await admin.post(
                f"/_emulator/users/{emails[index % len(emails)]}/messages",
                json={"raw": base64.urlsafe_b64encode(raw).decode()},
            )
            added[response.raise_for_status().json()["id"]] = at
        deadline = time.time() + 60
        seen: dict[str, float] = {}
        while len(seen) < len(added) and time.time() < deadline:
            await asyncio.sleep(0.2)
            async with rt.engine.connect() as conn:
                rows = await conn.execute(
                    sa.select(messages.c.id, sa.func.min(messages.c.updated_at))
                    .where(messages.c.id.in_(list(added)))
                    .group_by(messages.c.id)
                )
                seen = {row[0]: row[1] for row in rows}
        elapsed_minutes = (time.time() - started) / 60
        lag.stop()
        if args.explain:
            await explain_waits(rt, list(account_ids.values()), started)
            print(f"  {lag.describe()}")
        units = await quota_units(admin, emails) - units_before
        mirrored = total = None
        if bulk_ids:
            async with rt.engine.connect() as conn:
                mirrored = (await conn.execute(
                    sa.select(sa.func.count()).select_from(messages).where(messages.c.account_id.in_(bulk_ids))
                )).scalar_one()
            total = sum([(await get_account(rt.engine, bulk_id)).messages_total or 0 for bulk_id in bulk_ids])
    return Result(
        mode, bool(bulk_ids), [seen[i] - added[i] for i in seen], len(added) - len(seen),
        units / len(emails) / max(elapsed_minutes, 1e-9), mirrored, total,
    )


class LoopLag:
    """How late the event loop wakes a task that sleeps PERIOD: the longest stretches during which
    a callback held the loop (parsing, storing, ...) and every real-time job had to wait."""

    PERIOD = 0.01

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.PERIOD)
            self.lags.append(loop.time() - before - self.PERIOD)

    def stop(self) -> None:
        self._task.cancel()

    def describe(self) -> str:
        ordered = sorted(self.lags) or [0.0]
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        blocked = sum(lag for lag in ordered if lag > 0.05)
        return (f"event loop lag: p50={statistics.median(ordered) * 1000:.1f} ms p99={p99 * 1000:.0f} ms "
                f"max={ordered[-1] * 1000:.0f} ms; {sum(lag > 0.05 for lag in ordered)} stalls over 50 ms, "
                f"{blocked:.1f} s in all")


async def explain_waits(rt: Runtime, account_ids: list[int], since: float) -> None:
    """Where real-time jobs spent their time: waiting for a worker slot, and running."""
    query = (
        sa.select(jobs.c.type, jobs.c.priority, jobs.c.created_at, jobs.c.started_at, jobs.c.finished_at)
        .where(jobs.c.account_id.in_(account_ids), jobs.c.created_at >= since, jobs.c.state == "completed")
    )
    async with rt.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    for job_type in sorted({r.type for r in rows}):
        mine = [r for r in rows if r.type == job_type]
        waits = sorted(r.started_at - r.created_at for r in mine)
        runs = sorted(r.finished_at - r.started_at for r in mine)
        print(f"  {job_type:<20} n={len(mine):<4} wait p50={statistics.median(waits) * 1000:.0f} ms "
              f"max={waits[-1] * 1000:.0f} ms; run p50={statistics.median(runs) * 1000:.0f} ms "
              f"max={runs[-1] * 1000:.0f} ms")


def report(results: list[Result], args: argparse.Namespace) -> None:
    reserved = "default" if args.reserved_slots is None else args.reserved_slots
    print(f"\nadd-to-mirror latency, {args.messages} messages per scenario over {args.users} users "
          f"(each user at most one per {args.interval:.2f} s), {args.backend}, worker concurrency {args.concurrency} "
          f"(reserved slots: {reserved}), backfill of {args.backfill_accounts} x {args.backfill_messages} messages")
    header = f"{'mode':<6}{'backfill':<22}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'missing':>9}{'units/user/min':>16}"
    print(header)
    print("-" * len(header))
    for r in results:
        backfill = f"yes ({r.backfill_mirrored}/{r.backfill_total} done)" if r.backfill else "no"
        print(f"{r.mode:<6}{backfill:<22}{r.percentile(0.5) * 1000:>9.0f}{r.percentile(0.99) * 1000:>9.0f}"
              f"{max(r.latencies) * 1000:>9.0f}{r.missing:>9}"
              f"{r.realtime_units_per_minute:>9.0f} ({r.realtime_units_per_minute / QUOTA_UNITS_PER_USER_MINUTE:.0%})")
    print("\nmarkdown:")
    print("| mode | concurrent backfill | p50 | p99 | max | quota used per user |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.mode} | {'yes' if r.backfill else 'no'} | {r.percentile(0.5) * 1000:.0f} ms | "
              f"{r.percentile(0.99) * 1000:.0f} ms | {max(r.latencies) * 1000:.0f} ms | "
              f"{r.realtime_units_per_minute / QUOTA_UNITS_PER_USER_MINUTE:.0%} of 6,000 units/min |")
    ratio = statistics.median(r.percentile(0.99) for r in results if r.backfill) / statistics.median(
        r.percentile(0.99) for r in results if not r.backfill
    ) if any(r.backfill for r in results) and any(not r.backfill for r in results) else None
    if ratio is not None:
        print(f"\np99 with a backfill running / without: {ratio:.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--interval", type=float, default=1.1, help="seconds between two messages of one user")
    parser.add_argument("--backfill-messages", type=int, default=3000)
    parser.add_argument("--backfill-accounts", type=int, default=1, help="accounts backfilled at once")
    parser.add_argument("--concurrency", type=int, default=4, help="worker concurrency (the default setting)")
    parser.add_argument("--reserved-slots", type=int, default=None,
                        help="worker slots kept for real-time jobs (default: the setting's default)")
    parser.add_argument("--modes", default="push,pull")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_TEST_URL)
    parser.add_argument("--explain", action="store_true", help="also print where real-time jobs waited")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    raws = corpus()
    results = []
    for mode in args.modes.split(","):
        for with_backfill in (False, True):
            result = await scenario(mode, with_backfill, args, raws)
            print(f"{mode:<5} backfill={'yes' if with_backfill else 'no ':<4} "
                  f"p50={result.percentile(0.5) * 1000:.0f} ms p99={result.percentile(0.99) * 1000:.0f} ms "
                  f"missing={result.missing}", flush=True)
            results.append(result)
    report(results, args)


if __name__ == "__main__":
    asyncio.run(main())
