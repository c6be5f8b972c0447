"""`mailtide demo`: the emulator plus a real mailbox, synced end to end through the job queue.

The story it tells: a backfill of a real mailbox while mail keeps arriving, being deleted and
relabelled; history sync taking over; Gmail's history expiring and the recovery converging; and a
final comparison of the mirror with the emulator's mailbox, message by message.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailtide.config import Settings, load_settings
from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox
from mailtide.gmail.quota import quota_profile
from mailtide.runtime import Runtime
from mailtide.store.accounts import create_account, get_account
from mailtide.store.messages import count_messages
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill
from mailtide.verify import Drift, MessageFacts, VerifyReport, compare, mirror_facts, verify_account

DEMO_DATA = Path(__file__).parent / "demo_data"
DEMO_EMAIL = "demo@mailtide.test"
CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN = "mailtide-demo", "demo-secret", "demo-refresh-token"
# Bundled ham files held back from the initial mailbox and "delivered" while the demo runs.
LIVE_ARRIVALS = 20
SETTLE_TIMEOUT_SECONDS = 120
# Gmail's 2026 quota (6,000 units per user per minute, 20 per messages.get), enforced by the emulator and
# ridden by the client, with the quota clock 30x faster so the whole story takes seconds, not minutes.
DEMO_QUOTA_PROFILE = "gmail-2026"
DEMO_QUOTA_TIME_SCALE = 30.0


@dataclass
class DemoSources:
    """What to load: the bundled mailbox by default, or the user's own mbox / .eml directory."""

    mbox: Path | None = None
    eml_dir: Path | None = None


@dataclass
class DemoResult:
    drift: Drift
    messages: int
    threads: int
    labels: int
    elapsed: float
    retries: int
    failed_jobs: int
    changes: dict[str, int] = field(default_factory=dict)
    verify: VerifyReport | None = None  # `mailtide verify --full`: the same comparison through the Gmail API

    @property
    def converged(self) -> bool:
        verified = self.verify is None or self.verify.converged
        return self.drift.total == 0 and self.failed_jobs == 0 and verified


def _strip_envelope(raw: bytes) -> bytes:
    """Single-message files of the bundled corpus start with an mbox `From ` line; Gmail never has it."""
    if raw.startswith(b"From "):
        return raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    return raw


def build_mailbox(state: EmulatorState, sources: DemoSources) -> tuple[Mailbox, list[bytes]]:
    """Create the demo user and load its mailbox; return it with the messages to deliver live."""
    mailbox = state.add_user(DEMO_EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    if sources.mbox or sources.eml_dir:
        for path in (sources.mbox, sources.eml_dir):
            if path is not None:
                mailbox.load_path(path, label_ids=["INBOX", "UNREAD"])
        return mailbox, []
    ham = sorted((DEMO_DATA / "spamassassin" / "ham").iterdir())
    initial, arrivals = ham[:-LIVE_ARRIVALS], ham[-LIVE_ARRIVALS:]
    with tempfile.TemporaryDirectory() as tmp:
        # Load the initial ham set from a folder holding only those files.
        for f in initial:
            (Path(tmp) / f.name).write_bytes(f.read_bytes())
        mailbox.load_path(Path(tmp), label_ids=["INBOX", "UNREAD"])
    mailbox.load_path(DEMO_DATA / "spamassassin" / "spam", label_ids=["SPAM", "UNREAD"])
    mailbox.load_path(DEMO_DATA / "takeout" / "takeout.mbox")
    return mailbox, [_strip_envelope(f.read_bytes()) for f in arrivals]


class DemoInputError(ValueError):
    """The mailbox given to the demo cannot make a demo."""


class LiveChanges:
    """Random but reproducible changes to the emulator's mailbox, as a user's other mail clients make them."""

    def __init__(self, mailbox: Mailbox, arrivals: list[bytes], seed: int) -> None:
        self.mailbox = mailbox
        self.arrivals = list(arrivals)
        self.rng = random.Random(seed)
        self.counts = {"added": 0, "deleted": 0, "relabelled": 0}
        self.project_label = mailbox.create_label("mailtide-demo/followup")

    def describe(self, *, since: dict[str, int]) -> str:
        return ", ".join(f"{self.counts[k] - since.get(k, 0)} {k}" for k in self.counts)

    def round(self, *, adds: int, deletes: int, relabels: int) -> None:
        for _ in range(adds):
            if not self.arrivals:
                break
            self.mailbox.add_message(self.arrivals.pop(0), label_ids=["INBOX", "UNREAD"])
            self.counts["added"] += 1
        ids = sorted(self.mailbox.message_ids())
        # Never delete more than a tenth of a (small, user-supplied) mailbox: something must stay to compare.
        for mid in self.rng.sample(ids, min(deletes, len(ids) // 10)):
            self.mailbox.delete_message(mid)
            self.counts["deleted"] += 1
        ids = sorted(self.mailbox.message_ids())
        for mid in self.rng.sample(ids, min(relabels, len(ids))):
            labels = set(self.mailbox.message_label_ids(mid))
            if "INBOX" in labels:  # archive, star, file under a user label
                self.mailbox.modify_labels(mid, add=["STARRED", self.project_label], remove=["INBOX", "UNREAD"])
            else:  # move back to the inbox, marked unread
                self.mailbox.modify_labels(mid, add=["INBOX", "UNREAD"], remove=["STARRED"])
            self.counts["relabelled"] += 1


def server_facts(mailbox: Mailbox) -> dict[str, MessageFacts]:
    return {
        row["id"]: MessageFacts(row["threadId"], tuple(sorted(row["labelIds"])), row["sha256"])
        for row in mailbox.snapshot()["messages"]
    }


async def run_demo(
    sources: DemoSources,
    *,
    database_url: str | None = None,
    concurrency: int = 4,
    seed: int = 7,
    console: Console | None = None,
) -> DemoResult:
    console = console or Console()
    started = time.monotonic()
    quota = quota_profile(DEMO_QUOTA_PROFILE, time_scale=DEMO_QUOTA_TIME_SCALE)
    state = EmulatorState(seed=seed, quota_profile=quota)
    mailbox, arrivals = build_mailbox(state, sources)
    changes = LiveChanges(mailbox, arrivals, seed)
    total_at_start = len(mailbox.message_ids())
    if total_at_start == 0:
        raise DemoInputError("no messages found in the given mailbox: nothing to demo")
    console.print(f"[bold]mailtide demo[/]: {total_at_start} real messages in the emulator's mailbox for {DEMO_EMAIL}")

    with tempfile.TemporaryDirectory(prefix="mailtide-demo-") as tmp, EmulatorServer(state) as server:
        settings = load_settings(
            database_url=database_url or f"sqlite:///{Path(tmp) / 'mirror.db'}",
            gmail_api_url=server.url,
            token_url=f"{server.url}/token",
            worker_concurrency=concurrency,
            poll_seconds=0.2,
            list_page_size=100,  # Gmail's default page size: the bundled mailbox takes several pages
            quota_profile=DEMO_QUOTA_PROFILE,
            quota_time_scale=DEMO_QUOTA_TIME_SCALE,
        )
        console.print(f"emulator at {server.url}; mirror in {settings.database_url.removeprefix('sqlite:///')}")
        console.print(f"quota enforced and ridden: {quota.describe()}")
        return await _sync_story(settings, mailbox, changes, console, started)


async def _sync_story(
    settings: Settings, mailbox: Mailbox, changes: LiveChanges, console: Console, started: float
) -> DemoResult:
    async with Runtime.open(settings) as rt:
        account_id = await create_account(
            rt.engine, DEMO_EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN
        )
        await start_backfill(rt.services, account_id, recovery=False, reason="new account")
        retries = 0

        console.rule("1. backfill, while mail keeps changing")
        retries += await _backfill_with_progress(rt, account_id, changes, console)

        console.rule("2. live changes, picked up from the mailbox history")
        changes.round(adds=5, deletes=5, relabels=15)
        await jobtypes.request_history_sync(rt.queue, account_id)  # what a Pub/Sub notification does
        retries += await _settle(rt)
        account = await get_account(rt.engine, account_id)
        console.print(f"history cursor now at {account.history_id}; status {account.status}")

        console.rule("3. Gmail's history expires; recovery")
        changes.round(adds=5, deletes=8, relabels=20)
        mailbox.expire_history()
        changes.round(adds=2, deletes=2, relabels=5)
        await jobtypes.request_history_sync(rt.queue, account_id)
        retries += await _settle(rt)
        account = await get_account(rt.engine, account_id)
        console.print(f"recovered: status {account.status}, cursor {account.history_id}")

        server = server_facts(mailbox)
        client = await rt.services.gmail.for_account(account_id)
        verified = await verify_account(rt.engine, client, account_id, full=True)
        counts = await rt.queue.counts()
        result = DemoResult(
            drift=compare(server, await mirror_facts(rt.engine, account_id)),
            messages=len(server),
            threads=len({f.thread_id for f in server.values()}),
            labels=len(mailbox.labels()),
            elapsed=time.monotonic() - started,
            retries=retries,
            failed_jobs=sum(counts.get("failed", {}).values()),
            changes=dict(changes.counts),
            verify=verified,
        )
        _print_summary(console, result)
        return result


async def _backfill_with_progress(rt: Runtime, account_id: int, changes: LiveChanges, console: Console) -> int:
    """Run the worker until the backfill is done, drawing progress; change the mailbox a third of the way."""
    worker = rt.worker()
    run = asyncio.create_task(worker.run_until_idle(SETTLE_TIMEOUT_SECONDS))
    changed = False
    with Progress(
        TextColumn("backfill"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("backfill", total=None)
        while not run.done():
            account = await get_account(rt.engine, account_id)
            mirrored = await count_messages(rt.engine, account_id)
            # New mail arriving meanwhile can take the count past Gmail's total at the start.
            total = max(account.messages_total or 0, mirrored) or None
            progress.update(task, total=total, completed=mirrored)
            if not changed and account.messages_total and mirrored >= account.messages_total // 3:
                before = dict(changes.counts)
                changes.round(adds=8, deletes=5, relabels=15)
                changed = True
                progress.console.print(
                    f"  meanwhile on Gmail, at {mirrored} mirrored: {changes.describe(since=before)}"
                )
            await asyncio.sleep(0.1)
        # Done: the total is what the mailbox holds now (mail was deleted and added meanwhile).
        final = await count_messages(rt.engine, account_id)
        progress.update(task, total=final, completed=final)
    await run
    return worker.stats.retried


async def _settle(rt: Runtime) -> int:
    """Run a worker until the queue has nothing left to do; returns how many jobs it retried."""
    worker = rt.worker()
    await worker.run_until_idle(SETTLE_TIMEOUT_SECONDS)
    return worker.stats.retried


def _print_summary(console: Console, result: DemoResult) -> None:
    console.rule("summary")
    table = Table(show_header=False)
    table.add_row("messages mirrored", str(result.messages))
    table.add_row("threads", str(result.threads))
    table.add_row("labels", str(result.labels))
    table.add_row("changes made while syncing", ", ".join(f"{v} {k}" for k, v in result.changes.items()))
    table.add_row("elapsed", f"{result.elapsed:.1f} s")
    table.add_row("messages per second", f"{result.messages / result.elapsed:.0f}")
    table.add_row("job retries", str(result.retries))
    table.add_row("failed jobs", str(result.failed_jobs))
    console.print(table)
    if result.verify is not None:
        from mailtide.commands.verify import print_reports

        print_reports(console, [result.verify])
    if result.converged:
        console.print(
            "[bold green]converged[/]: the mirror equals the emulator's mailbox "
            "(message ids, thread ids, label sets, raw bytes)"
        )
    else:
        console.print("[bold red]DRIFT[/]: the mirror differs from the emulator's mailbox")
        for kind, ids in result.drift.by_kind().items():
            if ids:
                console.print(f"  {kind}: {len(ids)} e.g. {', '.join(ids[:5])}")
