"""`mailtide jobs`: look into the job queue and act on single jobs (list, show, retry, cancel, stats)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from mailtide.commands import settings_from_context
from mailtide.config import Settings
from mailtide.db.schema import ACTIVE_STATES, CANCELED, COMPLETED, FAILED, QUEUED, RUNNING
from mailtide.queue.job_queue import JobQueue
from mailtide.queue.jobs import Job

app = typer.Typer(help="Inspect and manage the job queue.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

STATES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELED)
T = TypeVar("T")

StateOption = Annotated[str | None, typer.Option("--state", "-s", help=f"One of: {', '.join(STATES)}.")]
TypeOption = Annotated[str | None, typer.Option("--type", "-t", help="Job type, e.g. history.sync.gmail.")]
AccountOption = Annotated[str | None, typer.Option("--account", "-a", help="Account email or id.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@asynccontextmanager
async def _open_queue(settings: Settings) -> AsyncIterator[JobQueue]:
    from mailtide.db.engine import create_engine
    from mailtide.db.migrate import migrate

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        queue = JobQueue(engine)
        try:
            yield queue
        finally:
            await queue.close()
    finally:
        await engine.dispose()


def _run(ctx: typer.Context, action: Callable[[JobQueue], Awaitable[T]]) -> T:
    settings = settings_from_context(ctx)

    async def go() -> T:
        async with _open_queue(settings) as queue:
            return await action(queue)

    return asyncio.run(go())


async def _account_id(queue: JobQueue, account: str | None) -> int | None:
    if account is None:
        return None
    from mailtide.store.accounts import AccountNotFound, find_account

    try:
        return (await find_account(queue.engine, account)).id
    except AccountNotFound as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def _no_job(job_id: int) -> typer.Exit:
    """An unknown job id is a bad argument: exit status 2, like an unknown account."""
    return _fail(f"no job {job_id}", 2)


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = now - at
    if abs(seconds) < 90:
        text = f"{abs(seconds):.0f} s"
    elif abs(seconds) < 5400:
        text = f"{abs(seconds) / 60:.0f} min"
    elif abs(seconds) < 129_600:
        text = f"{abs(seconds) / 3600:.1f} h"
    else:
        text = f"{abs(seconds) / 86_400:.1f} d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _first_line(text: str | None, width: int = 80) -> str:
    if not text:
        return ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""  # for a traceback, the last line names the error
    return last if len(last) <= width else last[: width - 1] + "…"


def _when(job: Job, now: float) -> str:
    if job.state == QUEUED:
        return "due now" if job.not_before <= now else f"due {_ago(job.not_before, now)}"
    if job.state == RUNNING:
        return f"started {_ago(job.started_at, now)}"
    return f"finished {_ago(job.finished_at, now)}"


def _job_json(job: Job) -> dict[str, Any]:
    return asdict(job)


@app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: StateOption = None,
    type: TypeOption = None,
    account: AccountOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many (newest first).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Jobs matching the filters, newest first."""
    if state is not None and state not in STATES:
        raise _fail(f"--state must be one of {', '.join(STATES)}", 2)

    async def fetch(queue: JobQueue) -> list[Job]:
        return await queue.list_jobs(state=state, type=type, account_id=await _account_id(queue, account), limit=limit)

    found = _run(ctx, fetch)
    if as_json:
        console.print_json(json.dumps([_job_json(job) for job in found]))
        return
    now = time.time()
    table = Table(title=f"jobs ({len(found)} shown)")
    for column in ("id", "type", "state", "attempts", "prio", "lane", "account", "when", "last error"):
        table.add_column(column, overflow="fold")
    for job in found:
        table.add_row(
            str(job.id), job.type, job.state, f"{job.attempts}/{job.max_attempts}", str(job.priority),
            job.lane or "", "" if job.account_id is None else str(job.account_id), _when(job, now),
            _first_line(job.last_error),
        )
    console.print(table)


@app.command()
def show(
    ctx: typer.Context,
    job_id: Annotated[int, typer.Argument(help="The job id.")],
    as_json: JsonOption = False,
) -> None:
    """One job: its fields, payload, last error and recorded steps."""

    async def fetch(queue: JobQueue) -> tuple[Job | None, list[Any]]:
        job = await queue.get(job_id)
        return job, [] if job is None else await queue.steps(job_id)

    job, steps = _run(ctx, fetch)
    if job is None:
        raise _no_job(job_id)
    if as_json:
        console.print_json(json.dumps({**_job_json(job), "steps": [asdict(step) for step in steps]}))
        return
    now = time.time()
    fields = Table(show_header=False, title=f"job {job.id}")
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    rows = [
        ("type", job.type), ("state", job.state + (" (cancel requested)" if job.cancel_requested else "")),
        ("attempts", f"{job.attempts} of {job.max_attempts}"), ("priority", str(job.priority)),
        ("lane", job.lane or "-"), ("idempotency key", job.idempotency_key or "-"),
        ("account", "-" if job.account_id is None else str(job.account_id)),
        ("created", _ago(job.created_at, now)), ("due", _ago(job.not_before, now)),
        ("started", _ago(job.started_at, now)), ("heartbeat", _ago(job.heartbeat_at, now)),
        ("finished", _ago(job.finished_at, now)), ("worker", job.worker_id or "-"),
    ]
    for name, value in rows:
        fields.add_row(name, value)
    console.print(fields)
    console.print("[bold]payload[/]")
    console.print_json(json.dumps(job.payload))
    if job.last_error:
        console.print("[bold]last error[/]")
        console.print(job.last_error, markup=False, highlight=False)
    if steps:
        table = Table(title="steps")
        for column in ("attempt", "step", "when", "detail"):
            table.add_column(column, overflow="fold")
        for step in steps:
            detail = json.dumps(step.detail) if step.detail else ""
            table.add_row(str(step.attempt), step.name, _ago(step.at, now), detail)
        console.print(table)


@app.command()
def retry(
    ctx: typer.Context,
    job_id: Annotated[int | None, typer.Argument(help="The failed or canceled job to run again.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed job (filters apply).")] = False,
    type: TypeOption = None,
    account: AccountOption = None,
) -> None:
    """Put a failed or canceled job (or all failed ones) back in the queue, due now."""
    if (job_id is None) == (not failed):
        raise _fail("give a job id or --failed (not both)", 2)
    if job_id is not None:

        async def retry_one(queue: JobQueue) -> tuple[Job | None, Job | None]:
            retried = await queue.retry(job_id)
            return retried, retried or await queue.get(job_id)

        job, found = _run(ctx, retry_one)
        if found is None:
            raise _no_job(job_id)
        if job is None:
            raise _fail(f"job {job_id} is {found.state}: only failed or canceled jobs are retried")
        if job.id != job_id:
            console.print(f"job {job_id} not retried: job {job.id} ({job.state}) holds its idempotency key")
        else:
            console.print(f"job {job_id} queued again (attempt {job.attempts + 1} of up to {job.max_attempts})")
        return

    async def retry_all(queue: JobQueue) -> list[Job]:
        return await queue.retry_failed(type=type, account_id=await _account_id(queue, account))

    retried = _run(ctx, retry_all)
    console.print(f"{len(retried)} failed job(s) queued again")


@app.command()
def cancel(ctx: typer.Context, job_id: Annotated[int, typer.Argument(help="The job to cancel.")]) -> None:
    """Cancel a queued job now; ask a running one to stop (its handler sees it at its next check)."""
    job = _run(ctx, lambda queue: queue.cancel(job_id))
    if job is None:
        raise _no_job(job_id)
    if job.state == CANCELED:
        console.print(f"job {job_id} canceled")
    elif job.state == RUNNING:
        console.print(f"job {job_id} is running: cancellation requested, it stops at its next check")
    else:
        raise _fail(f"job {job_id} is {job.state}: nothing to cancel")


@app.command()
def stats(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Counts by state and type, the oldest waiting job, and throughput over the last minutes."""
    snapshot = _run(ctx, lambda queue: queue.stats())
    if as_json:
        console.print_json(json.dumps(asdict(snapshot)))
        return
    states = [state for state in STATES if state in snapshot.counts]
    if states:
        table = Table(title="jobs")
        table.add_column("type")
        for state in states:
            table.add_column(state, justify="right")
        for job_type in sorted({t for by_type in snapshot.counts.values() for t in by_type}):
            table.add_row(job_type, *(str(snapshot.counts[state].get(job_type, 0) or "") for state in states))
        table.add_row("[bold]total[/]", *(f"[bold]{snapshot.total(state)}[/]" for state in states))
        console.print(table)
    else:
        console.print("no jobs")
    wait = snapshot.oldest_due_wait_seconds
    console.print(
        f"queued: {snapshot.due} due now, {snapshot.scheduled} scheduled for later; "
        f"oldest due job waiting {'-' if wait is None else f'{wait:.1f} s'}; "
        f"active: {sum(snapshot.total(s) for s in ACTIVE_STATES)}"
    )
    throughput = Table(title="finished jobs")
    for column in ("last", "completed", "per minute", "failed"):
        throughput.add_column(column, justify="right")
    for minutes, by_state in sorted(snapshot.finished.items()):
        throughput.add_row(
            f"{minutes} min", str(by_state[COMPLETED]), f"{snapshot.completed_per_minute(minutes):.1f}",
            str(by_state[FAILED]),
        )
    console.print(throughput)
