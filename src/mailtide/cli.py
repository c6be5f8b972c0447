"""The `mailtide` command."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape

from mailtide.commands import accounts as accounts_commands
from mailtide.commands import config as config_commands
from mailtide.commands import jobs as jobs_commands
from mailtide.commands import pubsub as pubsub_commands
from mailtide.commands.backfill_options import backfill_options as backfill_options_command
from mailtide.commands.emulator import emulator as emulator_command
from mailtide.commands.serve import serve as serve_command
from mailtide.commands.status import print_status
from mailtide.commands.status import status as status_command
from mailtide.commands.verify import verify as verify_command
from mailtide.config import ConfigError, Settings, load_settings
from mailtide.db.schema import QUEUED
from mailtide.observability.logs import setup_logging
from mailtide.queue.job_queue import JobQueue

if TYPE_CHECKING:
    from mailtide.runtime import Runtime

app = typer.Typer(help="mailtide: a complete, queryable local mirror of Gmail mailboxes.", no_args_is_help=True)
accounts_app = accounts_commands.app
app.add_typer(accounts_app, name="accounts")
app.add_typer(config_commands.app, name="config")
app.add_typer(jobs_commands.app, name="jobs")
app.add_typer(pubsub_commands.app, name="pubsub")
app.command("serve")(serve_command)
app.command("status")(status_command)
app.command("verify")(verify_command)
app.command("emulator")(emulator_command)
accounts_app.command("backfill-options")(backfill_options_command)
console = Console()
err_console = Console(stderr=True)
# `mailtide sync` waits for a retry due within this many seconds; a longer backoff is reported instead.
RETRY_WAIT_SECONDS = 10.0


def _database_url(db: str | None) -> str | None:
    """`--db` takes a URL or a plain path to a SQLite file."""
    if db is None or "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def _setup_logging(verbose: bool, log_format: Literal["console", "json"] | None = None) -> None:
    setup_logging(logging.INFO if verbose else logging.WARNING, log_format or "console", console=err_console)


def _settings(ctx: typer.Context, **overrides: object) -> Settings:
    opts = ctx.obj or {}
    try:
        return load_settings(opts.get("config"), database_url=_database_url(opts.get("db")), **overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML configuration file.")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL, or a path to a SQLite file.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    log_format: Annotated[
        Literal["console", "json"] | None, typer.Option(help="Log lines for people (console) or machines (json).")
    ] = None,
) -> None:
    _setup_logging(verbose, log_format)
    ctx.obj = {"config": config, "db": db, "verbose": verbose, "log_format": log_format}


@app.command()
def demo(
    ctx: typer.Context,
    mbox: Annotated[Path | None, typer.Option(help="Demo this mbox file instead of the bundled mailbox.")] = None,
    eml_dir: Annotated[Path | None, typer.Option(help="Demo a directory of .eml files.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Worker concurrency.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the emulator and the live changes.")] = 7,
) -> None:
    """Sync a real mailbox from the bundled emulator end to end and check the mirror converged."""
    from mailtide.demo import DemoInputError, DemoSources, run_demo

    for path in (mbox, eml_dir):
        if path is not None and not path.exists():
            err_console.print(f"[red]error:[/] {path} does not exist")
            raise typer.Exit(2)
    db = (ctx.obj or {}).get("db")
    try:
        result = asyncio.run(
            run_demo(
                DemoSources(mbox=mbox, eml_dir=eml_dir),
                database_url=_database_url(db),
                concurrency=concurrency,
                seed=seed,
                console=console,
            )
        )
    except DemoInputError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    raise typer.Exit(0 if result.converged else 1)


@app.command()
def migrate(ctx: typer.Context) -> None:
    """Create or upgrade the database schema (also done automatically at start)."""
    from mailtide.db.migrate import upgrade_database

    settings = _settings(ctx)
    upgrade_database(settings.database_url)
    console.print(f"database {settings.database_url} is up to date")


@app.command()
def sync(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account email or id.")],
    backfill: Annotated[
        bool, typer.Option("--backfill", help="Start a full backfill instead of a history sync.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
) -> None:
    """Sync one account now and wait until the queue is idle."""
    settings = _settings(ctx)

    async def run() -> str | None:
        """Why the account is not fully synced afterwards, or None."""
        from mailtide.db.schema import STATUS_NEEDS_REAUTH
        from mailtide.queue.stranded import find_stranded
        from mailtide.store.accounts import AccountNotFound, find_account, get_account
        from mailtide.sync import jobtypes
        from mailtide.sync.backfill import start_backfill

        started = time.time()
        async with _runtime(settings) as rt:
            try:
                acct = await find_account(rt.engine, account)
            except AccountNotFound as exc:
                err_console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2) from exc
            if acct.status == STATUS_NEEDS_REAUTH:
                return _needs_reauth(acct.email, acct.last_error)  # its jobs are parked: running them cannot help
            if backfill or acct.history_id is None:
                await start_backfill(rt.services, acct.id, recovery=acct.history_id is not None, reason="requested")
            else:
                await jobtypes.request_history_sync(rt.queue, acct.id)
            # run_until_idle runs the worker itself and stops it once nothing is due or running.
            worker = rt.worker()
            stranded = await find_stranded(rt.queue, heartbeat_seconds=worker.heartbeat_seconds,
                                           rescue_after=worker.stale_after_seconds)
            if stranded:
                err_console.print(escape(stranded.describe()))
            deadline = started + timeout
            try:
                await worker.run_until_idle(timeout)
                await _run_retries(rt, acct.id, deadline)
            except TimeoutError:
                err_console.print(f"[red]error:[/] the sync did not finish within {timeout:.0f} s")
            acct = await get_account(rt.engine, acct.id)
            if acct.status == STATUS_NEEDS_REAUTH:
                return _needs_reauth(acct.email, acct.last_error)
            return await _unfinished_jobs(rt.queue, acct.id, since=started)

    unfinished = asyncio.run(run())
    print_status(settings, queue=True)
    if unfinished:
        err_console.print(f"[red]sync incomplete:[/] {escape(unfinished)}")
        raise typer.Exit(1)


async def _run_retries(rt: Runtime, account_id: int, deadline: float) -> None:
    """Jobs of the account waiting out a short retry backoff (a transient Gmail error, a job rescued
    from a killed worker) are part of this sync, though run_until_idle counts them as idle: wait
    for each and run it, rather than stop and ask for another `mailtide sync`. Longer waits (and
    jobs parked until re-authorisation) are reported as unfinished instead."""
    while waiting := await rt.queue.list_jobs(state=QUEUED, account_id=account_id):
        job = min(waiting, key=lambda j: j.not_before)
        wait = job.not_before - time.time()
        if wait > RETRY_WAIT_SECONDS or job.not_before >= deadline:
            return
        reason = _last_line(job.last_error, "scheduled")
        err_console.print(f"retrying {job.type} (job {job.id}) in {max(0.0, wait):.0f} s: {escape(reason)}")
        await asyncio.sleep(max(0.0, wait))
        await rt.worker().run_until_idle(max(0.1, deadline - time.time()))


def _last_line(error: str | None, default: str) -> str:
    """The line of a recorded error that says what went wrong (a traceback's last)."""
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else default


def _needs_reauth(email: str, last_error: str | None) -> str:
    return (
        f"account {email} needs re-authorisation: run `mailtide accounts reauth {email}` "
        f"(or `mailtide accounts add-token {email} --replace ...` with a new refresh token); "
        f"its jobs wait until then. Reason: {_last_line(last_error, 'no reason recorded')}"
    )


async def _unfinished_jobs(queue: JobQueue, account_id: int, *, since: float) -> str | None:
    """Why the account is not fully synced: jobs waiting out a retry backoff, or jobs that failed during this run."""
    waiting = await queue.list_jobs(state="queued", account_id=account_id)
    failed = [j for j in await queue.list_jobs(state="failed", account_id=account_id) if (j.finished_at or 0) >= since]
    if not waiting and not failed:
        return None
    example = next((j for j in waiting + failed if j.last_error), None)
    reason = _last_line(example.last_error if example else None, "no error recorded")
    return (
        f"{len(waiting)} job(s) waiting to retry, {len(failed)} failed; last error: {reason} "
        "(run `mailtide sync` again later, or see `mailtide jobs list`)"
    )


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="Jobs run at once.")] = None,
) -> None:
    """Run a worker until SIGINT/SIGTERM; in-flight jobs finish or are released on shutdown."""
    settings = _settings(ctx, worker_concurrency=concurrency)

    async def run() -> None:
        async with _runtime(settings) as rt:
            w = rt.worker(periodic=True)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, w.request_stop)
            console.print(f"worker running (concurrency {settings.worker_concurrency}); Ctrl-C stops")
            await w.run()
            await w.stop(grace_seconds=settings.shutdown_grace_seconds)

    asyncio.run(run())


def _runtime(settings: Settings):
    from mailtide.runtime import Runtime

    return Runtime.open(settings)


def run() -> None:
    """The console script: expected operational failures become one clear line, not a traceback."""
    from sqlalchemy.exc import DBAPIError

    try:
        app(prog_name="mailtide")
    except DBAPIError as exc:
        err_console.print(f"[red]error:[/] database: {exc.orig or exc}")
        raise SystemExit(1) from None
    except OSError as exc:  # unreachable database server, port in use, unreadable file ...
        err_console.print(f"[red]error:[/] {exc}")
        raise SystemExit(1) from None
    except Exception as exc:
        failure = _expected_failure(exc)
        if failure is None:
            raise
        message, code = failure
        err_console.print(f"[red]error:[/] {message}")
        raise SystemExit(code) from None


def _expected_failure(exc: Exception) -> tuple[str, int] | None:
    """The line and exit status for a failure that is the setup's, not a bug; None for a bug."""
    import asyncpg

    from mailtide.db.engine import InvalidDatabaseURL

    if isinstance(exc, ConfigError):  # settings built inside a command (demo), not by _settings
        return str(exc), 2
    if isinstance(exc, InvalidDatabaseURL):
        return f"database_url: {exc}", 2
    if isinstance(exc, asyncpg.PostgresError):
        # Refused at connect (unknown database or role, bad password, too many clients): asyncpg
        # raises these itself, unwrapped by SQLAlchemy; errors of statements arrive as DBAPIError.
        return f"database: {exc}", 1
    return None
