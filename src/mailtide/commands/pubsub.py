"""`mailtide pubsub watch|stop ACCOUNT`: set up or stop an account's Gmail watch now (the service
renews watches on its own; this is for checking the Pub/Sub configuration, or before removing an account)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.console import Console

from mailtide.commands import err_console, settings_from_context

app = typer.Typer(help="Gmail push notifications through Pub/Sub.", no_args_is_help=True)
console = Console()
AccountArg = Annotated[str, typer.Argument(help="Account email or id.")]


@app.command()
def watch(ctx: typer.Context, account: AccountArg) -> None:
    """Call users.watch for the account now and store the expiration."""
    settings = settings_from_context(ctx)
    if settings.pubsub_topic is None:
        err_console.print("[red]error:[/] pubsub_topic (MAILTIDE_PUBSUB_TOPIC) is not configured")
        raise typer.Exit(2)

    async def run() -> float:
        from mailtide.gmail.errors import GmailError
        from mailtide.runtime import Runtime
        from mailtide.store.accounts import AccountNotFound, find_account
        from mailtide.sync.watch import renew_watch

        async with Runtime.open(settings) as rt:
            try:
                found = await find_account(rt.engine, account)
                return (await renew_watch(rt.services, found.id)).expiration / 1000
            except (AccountNotFound, GmailError) as exc:
                err_console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2 if isinstance(exc, AccountNotFound) else 1) from exc

    expiration = asyncio.run(run())
    console.print(f"watching {account} on {settings.pubsub_topic}: notifications for "
                  f"{(expiration - time.time()) / 86400:.1f} days (renewed daily by `mailtide serve`)")


@app.command()
def stop(ctx: typer.Context, account: AccountArg) -> None:
    """Call users.stop for the account: Gmail stops publishing its notifications."""
    settings = settings_from_context(ctx)

    async def run() -> None:
        from mailtide.gmail.errors import GmailError
        from mailtide.runtime import Runtime
        from mailtide.store.accounts import AccountNotFound, find_account
        from mailtide.sync.watch import stop_watch

        async with Runtime.open(settings) as rt:
            try:
                await stop_watch(rt.services, (await find_account(rt.engine, account)).id)
            except (AccountNotFound, GmailError) as exc:
                err_console.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2 if isinstance(exc, AccountNotFound) else 1) from exc

    asyncio.run(run())
    console.print(f"stopped the watch of {account}")
