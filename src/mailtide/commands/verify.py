"""`mailtide verify [ACCOUNT] [--full] [--sample N]`: compare mirrors with Gmail, exit 1 on drift."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mailtide.commands import err_console, settings_from_context
from mailtide.config import Settings
from mailtide.verify import DEFAULT_SAMPLE, VerifyReport

EXIT_DRIFT = 1
EXIT_ERROR = 2
EXAMPLES_PER_KIND = 5

console = Console()


def verify(
    ctx: typer.Context,
    account: Annotated[str | None, typer.Argument(help="Account email or id; all accounts when omitted.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Hash the raw bytes of every message (20 units each).")] = False,
    sample: Annotated[
        int, typer.Option("--sample", min=0, help="Messages whose raw bytes are fetched and hashed.")
    ] = DEFAULT_SAMPLE,
    seed: Annotated[int | None, typer.Option(help="Seed of the sample (reproducible runs).")] = None,
) -> None:
    """Compare the mirror with Gmail through the API: ids, thread ids, label sets, raw-byte hashes.

    Exit status 0 without drift, 1 with drift, 2 when an account could not be checked."""
    settings = settings_from_context(ctx)
    raise typer.Exit(asyncio.run(run_verify(settings, account, full=full, sample=sample, seed=seed)))


async def run_verify(
    settings: Settings,
    account: str | None,
    *,
    full: bool,
    sample: int,
    seed: int | None = None,
    out: Console | None = None,
) -> int:
    """Verify one account (or all) and print the drift; returns the exit status."""
    from mailtide.gmail.errors import GmailError
    from mailtide.runtime import Runtime
    from mailtide.store.accounts import AccountNotFound, InvalidBackfillWindow, find_account, list_accounts
    from mailtide.verify import verify_account

    out = out or console
    reports: list[VerifyReport] = []
    status = 0
    async with Runtime.open(settings) as rt:
        try:
            targets = [await find_account(rt.engine, account)] if account else await list_accounts(rt.engine)
        except AccountNotFound as exc:
            err_console.print(f"[red]error:[/] {exc}")
            return EXIT_ERROR
        if not targets:
            err_console.print("[red]error:[/] no accounts to verify")
            return EXIT_ERROR
        for target in targets:
            try:
                client = await rt.services.gmail.for_account(target.id)
                reports.append(
                    await verify_account(rt.engine, client, target.id, full=full, sample=sample, seed=seed)
                )
            except (GmailError, InvalidBackfillWindow) as exc:
                err_console.print(f"[red]error:[/] {target.email} could not be verified: {exc}")
                status = EXIT_ERROR
    if reports:
        print_reports(out, reports)
    if status:
        return status
    return EXIT_DRIFT if any(not r.converged for r in reports) else 0


def drift_table(report: VerifyReport) -> Table:
    """One account: a row per kind of drift, with the count and a few example ids."""
    table = Table(title=f"{report.email} ({report.status}) vs Gmail", title_justify="left")
    table.add_column("drift")
    table.add_column("count", justify="right")
    table.add_column("examples")
    for kind, ids in report.drift.by_kind().items():
        table.add_row(kind, f"[red]{len(ids)}[/]" if ids else "0", ", ".join(ids[:EXAMPLES_PER_KIND]))
    return table


def print_reports(out: Console, reports: list[VerifyReport]) -> None:
    for report in reports:
        out.print(drift_table(report))
        out.print(
            f"on server {report.on_server}, in scope {report.in_scope}, mirrored {report.mirrored}, "
            f"labels {report.labels_listed}, raw bytes hashed {report.content_checked}"
        )
        if report.converged:
            out.print(f"[green]no drift[/]: {report.email}")
        else:
            out.print(f"[red]DRIFT[/]: {report.email}, {report.drift.total} differences")
            if report.status != "normal":
                out.print(f"  {report.email} is {report.status}: drift is expected until its sync finishes")
