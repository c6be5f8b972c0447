"""Quota cost of recovering from a history gap, and of `mailtide verify`, against mailbox size.

For each size: mirror a mailbox from the emulator, expire Gmail's history, delete 5 %, relabel 10 %
and add 5 % of the messages, let the recovery run, then verify through the API. Prints the quota
units the recovery spent against what refetching every message would cost (messages.get, 20 units
each under the 2026 quota profile), and what a listing-only verify and a 20-message sample cost.
Times are wall-clock with the client's quota limiter off (under the 2026 quota a backfill cannot
exceed 5 messages a second).

    .venv/bin/python bench/recovery_bench.py                    # 500 and 2000 messages
    .venv/bin/python bench/recovery_bench.py --sizes 300 5000
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import tempfile
import time
from pathlib import Path

from mailtide.config import load_settings
from mailtide.emulator.mailbox import NewMessage
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill
from mailtide.verify import verify_account

HAM = Path(__file__).parents[1] / "src" / "mailtide" / "demo_data" / "spamassassin" / "ham"
EMAIL, CLIENT_ID, SECRET, REFRESH = "bench@mailtide.test", "bench-client", "bench-secret", "bench-refresh"


def raw_messages(count: int) -> list[bytes]:
    """`count` real messages (the bundled ham, reused with a distinct Message-ID when it runs out)."""
    sources = [p.read_bytes().split(b"\n", 1)[1] for p in sorted(HAM.iterdir())]
    found = []
    for index in range(count):
        raw = sources[index % len(sources)]
        if index >= len(sources):
            raw = f"Message-ID: <bench-{index}@mailtide.test>\n".encode() + raw
        found.append(raw)
    return found


async def run(size: int, seed: int) -> None:
    state = EmulatorState(seed=seed)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=SECRET, refresh_token=REFRESH)
    mailbox.add_messages(NewMessage(raw, label_ids=["INBOX"]) for raw in raw_messages(size))
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(state) as server:
        settings = load_settings(
            database_url=f"sqlite:///{Path(tmp) / 'mirror.db'}",
            gmail_api_url=server.url,
            token_url=f"{server.url}/token",
            data_dir=Path(tmp),
            poll_seconds=0.05,
            # The figures are quota units (charged by the emulator at 2026 costs), not time: the
            # client's limiter would only make the run wait for the quota minute to roll over.
            quota_profile="unlimited",
        )
        async with Runtime.open(settings) as rt:
            account_id = await create_account(
                rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=SECRET, refresh_token=REFRESH
            )
            started = time.perf_counter()
            await start_backfill(rt.services, account_id, recovery=False, reason="bench")
            await rt.worker().run_until_idle(3600)
            backfill_seconds = time.perf_counter() - started

            ids = sorted(mailbox.message_ids())
            for mid in rng.sample(ids, size * 5 // 100):
                mailbox.delete_message(mid)
            for mid in rng.sample(sorted(mailbox.message_ids()), size * 10 // 100):
                mailbox.modify_labels(mid, add=["STARRED"], remove=["INBOX"])
            for raw in raw_messages(size + size * 5 // 100)[size:]:
                mailbox.add_message(raw)
            mailbox.expire_history()

            units = state.counters.quota_units(EMAIL)
            started = time.perf_counter()
            await jobtypes.request_history_sync(rt.queue, account_id)
            await rt.worker().run_until_idle(3600)
            recovery_seconds = time.perf_counter() - started
            recovery_units = state.counters.quota_units(EMAIL) - units
            refetch_units = len(mailbox.message_ids()) * state.cost_of("messages.get")

            client = await rt.services.gmail.for_account(account_id)
            units = state.counters.quota_units(EMAIL)
            listed = await verify_account(rt.engine, client, account_id, sample=0)
            listing_units = state.counters.quota_units(EMAIL) - units
            units = state.counters.quota_units(EMAIL)
            sampled = await verify_account(rt.engine, client, account_id, sample=20, seed=seed)
            sample_units = state.counters.quota_units(EMAIL) - units

    drift = listed.drift.total + sampled.drift.total
    print(
        f"{size:>7} {backfill_seconds:>9.1f} {recovery_seconds:>9.1f} {recovery_units:>9} {refetch_units:>9} "
        f"{recovery_units / refetch_units:>6.3f} {listing_units:>9} {sample_units:>9} {drift:>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(f"{'messages':>7} {'backfill':>9} {'recovery':>9} {'rec.units':>9} {'refetch':>9} {'ratio':>6} "
          f"{'verify.ls':>9} {'verify.20':>9} {'drift':>6}")
    print(f"{'':>7} {'s':>9} {'s':>9} {'':>9} {'units':>9} {'':>6} {'units':>9} {'units':>9} {'':>6}")
    for size in args.sizes:
        asyncio.run(run(size, args.seed))


if __name__ == "__main__":
    main()
