"""Backfill benchmark: how close mailtide rides Gmail's quota, and what a message costs when nothing limits it.

    .venv/bin/python bench/sync_bench.py                      # 2,000 messages, both runs, SQLite
    .venv/bin/python bench/sync_bench.py --messages 500 --target-seconds 20
    .venv/bin/python bench/sync_bench.py --database postgresql://postgres@127.0.0.1:5432/test

(a) quota: the `gmail-2026` profile (6,000 units per user per minute, messages.get = 20), enforced by the
    emulator and ridden by the client, with the quota clock sped up so the run takes about
    --target-seconds. The quota-bound ideal is (units spent - one minute's allowance) / units per second:
    the allowance is there at the start, then the refill rate is all there is. Goal: elapsed / ideal <= 1.05.
(b) unlimited: no quota at all; messages per second and CPU seconds per 1,000 messages of the mailtide
    process (the emulator runs in a separate process and is not counted; with PostgreSQL, neither is the
    database server).

Messages come from ../shared/corpus/mailbox (SpamAssassin public corpus) when present, else from the
bundled demo_data. Prints its figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from mailtide.config import load_settings
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account
from mailtide.store.messages import count_messages
from mailtide.sync.backfill import start_backfill

REPO = Path(__file__).resolve().parents[1]
SHARED_CORPUS = REPO.parent / "shared" / "corpus" / "mailbox" / "spamassassin-publiccorpus"
DEMO_DATA = REPO / "src" / "mailtide" / "demo_data" / "spamassassin"
CORPUS_FILE = re.compile(r"^\d{5}\.[0-9a-f]+$")
EMAIL = "bench@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "bench-client", "bench-secret", "bench-refresh-token"
GET_COST = 20
ALLOWANCE = 6_000  # gmail-2026 units per user per minute


def corpus_files(count: int) -> tuple[list[Path], str]:
    root = SHARED_CORPUS if SHARED_CORPUS.is_dir() else DEMO_DATA
    files = sorted(p for p in root.rglob("*") if p.is_file() and CORPUS_FILE.match(p.name))
    return files[:count], str(root)


# ------------------------------------------------------------------ the emulator, in its own process
def _serve(files: list[str], profile_name: str, time_scale: float, urls: multiprocessing.Queue, stop) -> None:
    from mailtide.emulator.mailbox import NewMessage
    from mailtide.emulator.server import EmulatorServer
    from mailtide.emulator.state import EmulatorState
    from mailtide.gmail.quota import quota_profile

    state = EmulatorState(seed=1, quota_profile=quota_profile(profile_name, time_scale=time_scale))
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    items = []
    for name in files:
        raw = Path(name).read_bytes()
        if raw.startswith(b"From "):  # an mbox envelope line; Gmail never has it
            raw = raw.split(b"\n", 1)[1]
        items.append(NewMessage(raw, label_ids=["INBOX"]))
    mailbox.add_messages(items)
    with EmulatorServer(state) as server:
        urls.put((server.url, len(mailbox.message_ids())))
        stop.wait()


class EmulatorProcess:
    def __init__(self, files: list[Path], profile_name: str, time_scale: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._urls = context.Queue()
        self._stop = context.Event()
        self._process = context.Process(
            target=_serve, args=([str(f) for f in files], profile_name, time_scale, self._urls, self._stop)
        )

    def __enter__(self) -> tuple[str, int]:
        self._process.start()
        return self._urls.get(timeout=300)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()


# ------------------------------------------------------------------ one backfill
@dataclass
class Run:
    messages: int
    elapsed: float
    cpu: float
    units: int
    rejected: int
    responses_429: int
    batches: int


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


async def backfill(url: str, database_url: str, *, profile: str, time_scale: float, limit: float) -> Run:
    settings = load_settings(
        database_url=database_url,
        gmail_api_url=url,
        token_url=f"{url}/token",
        poll_seconds=0.2,
        quota_profile=profile,
        quota_time_scale=time_scale,
    )
    async with Runtime.open(settings) as rt:
        account_id = await create_account(
            rt.engine, EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        await start_backfill(rt.services, account_id, recovery=False, reason="benchmark")
        await rt.worker().run_until_idle(limit)
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
        mirrored = await count_messages(rt.engine, account_id)
    async with httpx.AsyncClient() as http:
        counters = (await http.get(f"{url}/_emulator/counters")).json()
    methods = counters["methods"]
    return Run(
        messages=mirrored,
        elapsed=elapsed,
        cpu=cpu,
        units=sum(counters["quotaUnits"].values()),
        rejected=sum(sum(m.get("rejected", {}).values()) for m in methods.values()),
        responses_429=sum(m["responses"].get("429", 0) for m in methods.values()),
        batches=methods.get("batch", {}).get("requests", 0),
    )


def database_for(choice: str, tmp: Path, name: str) -> str:
    if choice == "sqlite":
        return f"sqlite:///{tmp / f'{name}.db'}"
    return choice


# ------------------------------------------------------------------ the two runs
def quota_run(files: list[Path], args: argparse.Namespace, tmp: Path) -> None:
    # Units one backfill spends: a get per message, a list per 500 ids, profile, labels, one history page.
    expected_units = len(files) * GET_COST + 5 * (len(files) // 500 + 1) + 1 + 1 + 2
    scale = args.time_scale or max(1.0, (expected_units - ALLOWANCE) / (ALLOWANCE / 60) / args.target_seconds)
    print(f"(a) gmail-2026, quota clock x{scale:.2f} (a quota minute lasts {60 / scale:.1f} s)")
    with EmulatorProcess(files, "gmail-2026", scale) as (url, served):
        run = asyncio.run(
            backfill(
                url,
                database_for(args.database, tmp, "quota"),
                profile="gmail-2026",
                time_scale=scale,
                limit=args.target_seconds * 5 + 60,
            )
        )
    rate = ALLOWANCE / (60 / scale)
    ideal = max(0.0, run.units - ALLOWANCE) / rate
    print(f"    messages mirrored       {run.messages} of {served}")
    print(f"    quota units spent       {run.units:,} ({run.batches} batch requests)")
    print(f"    quota-bound ideal       {ideal:.1f} s  (= ({run.units:,} - {ALLOWANCE:,}) / {rate:,.0f} units/s)")
    print(f"    elapsed                 {run.elapsed:.1f} s")
    print(f"    elapsed / ideal         {run.elapsed / ideal:.3f}  (goal <= 1.05)" if ideal else "    ideal is 0")
    print(f"    429s received           {run.responses_429} (requests refused by the quota: {run.rejected})")


def unlimited_run(files: list[Path], args: argparse.Namespace, tmp: Path) -> None:
    print("(b) unlimited profile")
    with EmulatorProcess(files, "unlimited", 1.0) as (url, served):
        run = asyncio.run(
            backfill(
                url, database_for(args.database, tmp, "unlimited"), profile="unlimited", time_scale=1.0, limit=600
            )
        )
    print(f"    messages mirrored       {run.messages} of {served}")
    print(f"    elapsed                 {run.elapsed:.1f} s")
    print(f"    messages per second     {run.messages / run.elapsed:.0f}")
    print(f"    CPU s per 1,000 msgs    {run.cpu / run.messages * 1000:.2f}  (mailtide process: {run.cpu:.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="mailbox size (default 2000)")
    parser.add_argument("--target-seconds", type=float, default=60.0, help="length of the quota run (default 60)")
    parser.add_argument("--time-scale", type=float, default=None, help="quota clock speed-up (default: from target)")
    parser.add_argument("--database", default="sqlite", help="'sqlite' (a temporary file) or a PostgreSQL URL")
    parser.add_argument("--skip-quota", action="store_true")
    parser.add_argument("--skip-unlimited", action="store_true")
    args = parser.parse_args()
    files, source = corpus_files(args.messages)
    print(f"sync_bench: {len(files)} messages from {source}; database {args.database}; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="mailtide-bench-") as tmp:
        if not args.skip_quota:
            quota_run(files, args, Path(tmp))
        if not args.skip_unlimited:
            unlimited_run(files, args, Path(tmp))


if __name__ == "__main__":
    main()
