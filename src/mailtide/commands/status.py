"""`mailtide status`: per-account progress and health, and the job queue."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mailtide.commands import settings_from_context
from mailtide.config import Settings
from mailtide.overview import AccountOverview, Overview, collect_overview, human_duration

console = Console()


def _ago(at: float | None, now: float) -> str:
    return "never" if at is None else f"{human_duration(now - at)} ago"


async def gather_overview(settings: Settings) -> Overview:
    from mailtide.runtime import Runtime

    async with Runtime.open(settings) as rt:
        return await collect_overview(rt.engine, settings)


def _realtime(account: AccountOverview, now: float) -> str:
    """The Gmail watch (time left, or failing) and when the last notification arrived."""
    if account.watch_error:
        watch = "[red]watch failing[/]"
    elif account.watch_expiration is not None:
        left = account.watch_expiration - now
        watch = f"watch {human_duration(left)} left" if left > 0 else "[red]watch expired[/]"
    else:
        watch = "no watch"
    if account.last_notification_at is None:
        return watch
    return f"{watch}, heard {_ago(account.last_notification_at, now)}"


def render_accounts(overview: Overview, out: Console) -> None:
    now = overview.taken_at
    table = Table(title="accounts")
    for col in ("id", "email", "status", "mirrored", "backfill", "last sync", "lag", "real time"):
        table.add_column(col, no_wrap=col in ("id", "email", "status"))
    table.add_column("last error", overflow="fold", ratio=1)
    for a in overview.accounts:
        progress = escape(a.summary(now))
        status = f"[red]{a.status}[/]" if a.action else a.status
        error = escape(a.last_error or "")
        if a.action:
            error = f"{error}\n[bold]{a.action}[/]".strip()
        if a.paused_jobs:
            error = f"{error}\n{a.paused_jobs} job(s) paused".strip()
        if a.watch_error:
            error = f"{error}\n{a.watch_error}".strip()
        table.add_row(str(a.id), a.email, status, str(a.messages_mirrored), progress, _ago(a.last_sync_at, now),
                      human_duration(a.lag_seconds), _realtime(a, now), error)
    out.print(table)


def render_queue(overview: Overview, out: Console) -> None:
    q = overview.queue
    table = Table(title="jobs")
    for col in ("state", "type", "count"):
        table.add_column(col)
    for state, by_type in sorted(q.counts.items()):
        for job_type, n in sorted(by_type.items()):
            table.add_row(state, job_type, str(n))
    out.print(table)
    totals = ", ".join(f"{state} {q.total(state)}" for state in sorted(q.counts)) or "empty"
    out.print(
        f"queue: {totals}; oldest queued job waiting {human_duration(q.oldest_queued_age_seconds)}; "
        f"{q.scheduled} scheduled for later; {q.paused} paused"
    )


def print_status(settings: Settings, *, queue: bool, out: Console | None = None) -> None:
    out = out or console
    overview = asyncio.run(gather_overview(settings))
    render_accounts(overview, out)
    if queue:
        render_queue(overview, out)


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the overview as JSON.")] = False,
) -> None:
    """Accounts (status, messages mirrored, backfill progress with ETA, last sync, lag, last error) and the queue."""
    settings = settings_from_context(ctx)
    if as_json:
        overview = asyncio.run(gather_overview(settings))
        data = asdict(overview)
        for account, view in zip(data["accounts"], overview.accounts, strict=True):
            account["action"] = view.action
            account["summary"] = view.summary(overview.taken_at)
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    print_status(settings, queue=True)
