"""`mailtide accounts backfill-options ACCOUNT`: what the next backfill of an account lists."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from mailtide.commands import err_console, settings_from_context

console = Console()


def backfill_options(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account email or id.")],
    newer_than: Annotated[
        str | None,
        typer.Option("--newer-than", help="Only mail newer than this Gmail window: 30d, 6m, 2y."),
    ] = None,
    all_mail: Annotated[bool, typer.Option("--all-mail", help="The whole mailbox (removes a window).")] = False,
    spam_trash: Annotated[
        bool | None, typer.Option("--spam-trash/--no-spam-trash", help="Mirror SPAM and TRASH too.")
    ] = None,
) -> None:
    """Show or set the backfill window and the SPAM/TRASH option (used by the next backfill)."""
    if newer_than and all_mail:
        err_console.print("[red]error:[/] give --newer-than or --all-mail, not both")
        raise typer.Exit(2)
    settings = settings_from_context(ctx)

    async def run() -> tuple[str, str | None, bool]:
        from mailtide.runtime import Runtime
        from mailtide.store.accounts import (
            AccountNotFound,
            InvalidBackfillWindow,
            find_account,
            set_backfill_options,
        )

        async with Runtime.open(settings) as rt:
            try:
                found = await find_account(rt.engine, account)
                if newer_than or all_mail or spam_trash is not None:
                    await set_backfill_options(
                        rt.engine,
                        found.id,
                        newer_than=None if all_mail else (newer_than or found.backfill_newer_than),
                        include_spam_trash=found.include_spam_trash if spam_trash is None else spam_trash,
                    )
                    found = await find_account(rt.engine, account)
            except (AccountNotFound, InvalidBackfillWindow) as exc:
                err_console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2) from exc
            return found.email, found.backfill_newer_than, found.include_spam_trash

    email, window, include = asyncio.run(run())
    console.print(
        f"{email}: backfill lists {f'mail newer than {window}' if window else 'the whole mailbox'}, "
        f"{'with' if include else 'without'} SPAM and TRASH"
    )
