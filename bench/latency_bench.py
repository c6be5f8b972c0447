"""Add-to-mirror latency of real-time sync: from a message added on the emulator to it being in the mirror.

Four scenarios: push and pull, each with and without a concurrent backfill of another, large account
(real-time work must overtake it). Everything is real and on loopback: the emulator's Gmail REST API
and Pub/Sub (gRPC for pull, signed OIDC pushes to mailtide's push endpoint served by uvicorn), the
google-cloud-pubsub client, the worker, the database. Latency = the message row's first write time
in the mirror minus the time it was added on the emulator (same clock).

Messages arrive round-robin over --users mailboxes, each user at most one per --interval seconds,
because Gmail sends at most one notification per second per user (faster arrivals are folded into
the next notification and wait for it: that wait is Gmail's, not mailtide's; --interval 0.25 shows it).

    .venv/bin/python bench/latency_bench.py                       # 200 messages per scenario (~5 min)
    .venv/bin/python bench/latency_bench.py --messages 40 --backfill-messages 1500   # a quick look
    .venv/bin/python bench/latency_bench.py --backend postgresql  # PostgreSQL at 127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from mailtide.config import load_settings
from mailtide.db.schema import messages
from mailtide.db.testing import DEFAULT_POSTGRES_TEST_URL, empty_database_url
from mailtide.emulator.mailbox import NewMessage
from mailtide.emulator.pubsub.broker import PushTarget
from mailtide.emulator.pubsub.grpc_server import PubSubGrpcServer
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.pubsub.push import PUSH_PATH, api_router
from mailtide.pubsub.service import RealtimeService
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


async def scenario(mode: str, with_backfill: bool, args: argparse.Namespace, raws: list[bytes]) -> Result:
    state = EmulatorState(seed=42)
    emails = [f"rt{i}@bench.test" for i in range(args.users)]
    for email in emails:
        mailbox = state.add_user(email, refresh_token=f"{email}-token")
        mailbox.add_messages([NewMessage(raws[i]) for i in range(5)])
    bulk_email = "bulk@bench.test"
    if with_backfill:
        bulk = state.add_user(bulk_email, refresh_token="bulk-token")
        bulk.add_messages(NewMessage(raws[i % len(raws)]) for i in range(args.backfill_messages))
    broker = state.pubsub.broker
    broker.create_topic(TOPIC)
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(state) as emulator, PubSubGrpcServer(broker) as grpc:
        async with empty_database_url(args.backend, Path(tmp), postgres_url=args.postgres_url) as database_url:
            settings = load_settings(
                database_url=database_url,
                data_dir=Path(tmp),
                gmail_api_url=emulator.url,
                token_url=emulator.token_url,
                worker_concurrency=args.concurrency,
                pubsub_topic=TOPIC,
                pubsub_subscriptions=[SUBSCRIPTION] if mode == "pull" else [],
                pubsub_emulator_host=grpc.address,
                pubsub_push_audience=AUDIENCE,
                pubsub_push_service_account=PUSH_ACCOUNT,
                pubsub_certs_url=emulator.url + "/oauth2/v1/certs",
                poll_fallback_seconds=3600,  # measure notifications, not the safety net
            )
            async with Runtime.open(settings) as rt:
                return await measure(rt, state, emails, bulk_email if with_backfill else None, mode, args, raws)


async def measure(
    rt: Runtime, state: EmulatorState, emails: list[str], bulk_email: str | None, mode: str,
    args: argparse.Namespace, raws: list[bytes],
) -> Result:
    account_ids = {}
    for email in emails:
        creds = state.credentials(email)
        account_ids[email] = await create_account(
            rt.engine, email, client_id=creds.client_id, client_secret=creds.client_secret,
            refresh_token=creds.refresh_token or "",
        )
        await start_backfill(rt.services, account_ids[email], recovery=False, reason="bench")
    await rt.worker().run_until_idle(120)

    app = FastAPI()
    router = api_router(rt)
    assert router is not None
    app.include_router(router)
    worker, realtime = rt.worker(), RealtimeService(rt)
    async with serve(app) as url, running(worker.run, lambda: worker.stop(0)), running(realtime.run, realtime.stop):
        if mode == "push":
            state.pubsub.broker.create_subscription(
                SUBSCRIPTION, TOPIC, push=PushTarget(url + PUSH_PATH, PUSH_ACCOUNT, AUDIENCE)
            )
        else:
            state.pubsub.broker.create_subscription(SUBSCRIPTION, TOPIC)
        for account_id in account_ids.values():
            await request_watch(rt.queue, account_id)
        while any(state.pubsub.notifier.watch_of(email) is None for email in emails):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        bulk_id = None
        if bulk_email is not None:
            creds = state.credentials(bulk_email)
            bulk_id = await create_account(rt.engine, bulk_email, client_id=creds.client_id,
                                           client_secret=creds.client_secret, refresh_token=creds.refresh_token or "")
            await start_backfill(rt.services, bulk_id, recovery=False, reason="bench")
            await asyncio.sleep(2.0)  # let the backfill get going: listing done, ingests queued
        await asyncio.sleep(1.2)  # the watches' own notifications are out of the one-second window
        units_before = sum(state.counters.quota_units(email) for email in emails)
        added: dict[str, float] = {}
        spacing = args.interval / len(emails)
        started = time.time()
        for index in range(args.messages):
            await asyncio.sleep(max(0.0, started + index * spacing - time.time()))
            mailbox = state.mailbox(emails[index % len(emails)])
            raw = raws[(index * 7) % len(raws)]
            at = time.time()
            added[await asyncio.to_thread(mailbox.add_message, raw)] = at
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
        units = sum(state.counters.quota_units(email) for email in emails) - units_before
        mirrored = total = None
        if bulk_id is not None:
            async with rt.engine.connect() as conn:
                mirrored = (await conn.execute(
                    sa.select(sa.func.count()).select_from(messages).where(messages.c.account_id == bulk_id)
                )).scalar_one()
            total = (await get_account(rt.engine, bulk_id)).messages_total
    return Result(
        mode, bulk_email is not None, [seen[i] - added[i] for i in seen], len(added) - len(seen),
        units / len(emails) / max(elapsed_minutes, 1e-9), mirrored, total,
    )


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nadd-to-mirror latency, {args.messages} messages per scenario over {args.users} users "
          f"(each user at most one per {args.interval:.2f} s), {args.backend}, worker concurrency {args.concurrency}")
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
    parser.add_argument("--concurrency", type=int, default=4, help="worker concurrency (the default setting)")
    parser.add_argument("--modes", default="push,pull")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_TEST_URL)
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
