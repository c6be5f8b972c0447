"""`mailtide accounts`: add (OAuth consent in the browser), add-token, list, reauth, remove."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from mailtide.commands import err_console, settings_from_context
from mailtide.config import Settings

if TYPE_CHECKING:  # the OAuth and runtime modules load on demand: `mailtide --help` stays fast
    from mailtide.accounts.consent import Grant, OAuthClient
    from mailtide.accounts.lifecycle import AddedAccount
    from mailtide.runtime import Runtime
    from mailtide.store.accounts import Account, AccountCredential
    from mailtide.sync.reauth import Resumed

app = typer.Typer(help="Manage mirrored accounts.", no_args_is_help=True)
console = Console()

ScopeOption = Annotated[
    str | None,
    typer.Option("--scope", help="readonly (default) or modify. gmail.metadata is never requested."),
]
ClientIdOption = Annotated[str | None, typer.Option(help="OAuth client id (default: the oauth_client_id setting).")]
ClientSecretOption = Annotated[
    str | None, typer.Option(help="OAuth client secret (default: the oauth_client_secret setting).")
]
ClientFileOption = Annotated[
    Path | None, typer.Option(help="The client_secret_*.json downloaded from the Google Cloud console.")
]
BrowserOption = Annotated[bool, typer.Option("--browser/--no-browser", help="Open the consent page in a browser.")]
TimeoutOption = Annotated[float, typer.Option(min=1, help="Give up waiting for consent after this many seconds.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def _runtime(settings: Settings) -> AbstractAsyncContextManager[Runtime]:
    from mailtide.runtime import Runtime

    return Runtime.open(settings)


def _client_from_file(path: Path) -> tuple[str, str]:
    try:
        data = json.loads(path.read_text())
        section = data.get("installed") or data.get("web")
        return str(section["client_id"]), str(section.get("client_secret", ""))
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _fail(f"{path} is not a Google OAuth client file ({type(exc).__name__}: {exc})") from None


def _oauth_client(settings: Settings, client_id: str | None, client_secret: str | None, client_file: Path | None,
                  *, fallback: tuple[str, str] | None = None) -> OAuthClient:
    from mailtide.accounts.consent import OAuthClient

    if client_file is not None:
        client_id, client_secret = _client_from_file(client_file)
    client_id = client_id or settings.oauth_client_id or (fallback[0] if fallback else None)
    if not client_id:
        raise _fail("no OAuth client: set oauth_client_id (MAILTIDE_OAUTH_CLIENT_ID), or give --client-id "
                    "or --client-secrets-file (see docs/configuration.md)")
    if client_secret is None:
        stored = settings.oauth_client_secret.get_secret_value() if settings.oauth_client_secret else None
        client_secret = stored if stored is not None else (fallback[1] if fallback else "")
    return OAuthClient(client_id, client_secret or "", settings.oauth_auth_url, settings.token_url)


def _announce(url: str) -> None:
    # Plain echo, never wrapped: the URL must stay copyable (and parseable by tests).
    typer.echo("Open this address in a browser to let mailtide read your Gmail:", err=False)
    typer.echo(url)


def _consent(client: OAuthClient, scope: str, *, login_hint: str | None, browser: bool, timeout: float) -> Grant:
    from mailtide.accounts.consent import ConsentFailed, run_consent
    from mailtide.accounts.scopes import ScopeProblem, scopes_for

    try:
        return run_consent(client, scopes_for(scope), announce=_announce, login_hint=login_hint,
                           open_browser=browser, timeout_seconds=timeout)
    except (ConsentFailed, ScopeProblem) as exc:
        raise _fail(f"authorisation failed: {exc}", 1) from None


@app.command("add")
def add(
    ctx: typer.Context,
    scope: ScopeOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
    client_secrets_file: ClientFileOption = None,
    browser: BrowserOption = True,
    timeout: TimeoutOption = 300,
    backfill: Annotated[bool, typer.Option(help="Enqueue the first backfill.")] = True,
) -> None:
    """Add a Gmail account: grant access in the browser (OAuth, PKCE), then the mirror starts filling."""
    from mailtide.accounts.lifecycle import add_account
    from mailtide.accounts.scopes import ScopeProblem
    from mailtide.gmail import GmailError

    settings = settings_from_context(ctx)
    client = _oauth_client(settings, client_id, client_secret, client_secrets_file)
    grant = _consent(client, scope or "readonly", login_hint=None, browser=browser, timeout=timeout)

    async def store() -> AddedAccount:
        async with _runtime(settings) as rt:
            return await add_account(rt, client, grant, backfill=backfill)

    try:
        added = asyncio.run(store())
    except (GmailError, ScopeProblem) as exc:
        raise _fail(f"the new grant does not work: {exc}", 1) from None
    notes = [note for note, done in (("backfill queued", added.backfill_queued),
                                     ("watch queued", added.watch_registered)) if done]
    console.print(f"account {added.email} added (id {added.id}){'; ' + ', '.join(notes) if notes else ''}. "
                  "`mailtide serve` (or `mailtide worker`) syncs it.")


@app.command("reauth")
def reauth(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account email or id.")],
    scope: ScopeOption = None,
    client_id: ClientIdOption = None,
    client_secret: ClientSecretOption = None,
    client_secrets_file: ClientFileOption = None,
    browser: BrowserOption = True,
    timeout: TimeoutOption = 300,
) -> None:
    """Grant access again after Google refused the stored token; the account's paused jobs resume."""
    from mailtide.accounts.lifecycle import WrongAccount, reauthorize
    from mailtide.accounts.scopes import ScopeProblem, choice_of
    from mailtide.gmail import GmailError
    from mailtide.secrets import SecretUnreadable
    from mailtide.store.accounts import AccountNotFound, find_account, load_account_credential

    settings = settings_from_context(ctx)

    async def lookup() -> tuple[Account, AccountCredential | None]:
        async with _runtime(settings) as rt:
            found = await find_account(rt.engine, account)
            try:
                stored = await load_account_credential(rt.engine, found.id, secrets=rt.secrets)
            except (AccountNotFound, SecretUnreadable):
                stored = None
            return found, stored

    try:
        found, stored = asyncio.run(lookup())
    except AccountNotFound as exc:
        raise _fail(str(exc)) from None
    fallback = (stored.credential.client_id, stored.credential.client_secret or "") if stored else None
    client = _oauth_client(settings, client_id, client_secret, client_secrets_file, fallback=fallback)
    chosen_scope = scope or choice_of(stored.scopes if stored else None)
    grant = _consent(client, chosen_scope, login_hint=found.email, browser=browser, timeout=timeout)

    async def store() -> Resumed:
        async with _runtime(settings) as rt:
            return await reauthorize(rt, found, client, grant)

    try:
        resumed = asyncio.run(store())
    except (GmailError, ScopeProblem, WrongAccount) as exc:
        raise _fail(str(exc), 1) from None
    console.print(f"account {found.email} re-authorised: {resumed.describe()}.")


@app.command("add-token")
def add_token(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The Gmail address.")],
    client_id: Annotated[str, typer.Option(help="OAuth client id.")],
    refresh_token: Annotated[str, typer.Option(help="OAuth refresh token for the account.")],
    client_secret: Annotated[str, typer.Option(help="OAuth client secret.")] = "",
    backfill: Annotated[bool, typer.Option(help="Enqueue the first backfill (new accounts only).")] = True,
    replace: Annotated[
        bool, typer.Option("--replace", help="If the account exists: replace its credential and resume its sync.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check with Gmail that the token works and is EMAIL's.")
    ] = True,
) -> None:
    """Add an account from an existing OAuth refresh token (stored encrypted)."""
    from mailtide.accounts.consent import Grant, OAuthClient
    from mailtide.accounts.lifecycle import profile_email
    from mailtide.gmail import GmailError

    settings = settings_from_context(ctx)

    async def add() -> str:
        from mailtide.store.accounts import AccountNotFound, create_account, find_account
        from mailtide.sync.backfill import start_backfill
        from mailtide.sync.reauth import resume_account

        async with _runtime(settings) as rt:
            try:
                existing: Account | None = await find_account(rt.engine, email)
            except AccountNotFound:
                existing = None
            if existing is not None and not replace:
                # Silently swapping the credential of a mirrored account would hide a typo'd address.
                raise _fail(f"account {email} already exists (id {existing.id}); give --replace to replace "
                            "its credential, or run `mailtide accounts reauth`")
            if verify:
                client = OAuthClient(client_id, client_secret, settings.oauth_auth_url, settings.token_url)
                try:
                    owner = await profile_email(rt, client, Grant(refresh_token, ()))
                except GmailError as exc:
                    raise _fail(f"the token does not work: {exc} (--no-verify adds it anyway)", 1) from None
                if owner.lower() != email.lower():
                    raise _fail(f"the token belongs to {owner}, not to {email}")
            account_id = await create_account(
                rt.engine, email, client_id=client_id, client_secret=client_secret or None,
                refresh_token=refresh_token, secrets=rt.secrets,
            )
            if existing is not None:
                resumed = await resume_account(rt.services, account_id)
                return f"account {email} (id {account_id}): credential replaced; {resumed.describe()}"
            queued = backfill and await start_backfill(rt.services, account_id, recovery=False, reason="new account")
            return f"account {email} added (id {account_id}){'; backfill queued' if queued else ''}"

    console.print(asyncio.run(add()))


@app.command("list")
def list_accounts(ctx: typer.Context) -> None:
    """List accounts and their sync state."""
    from mailtide.commands.status import print_status

    print_status(settings_from_context(ctx), queue=False)


@app.command("remove")
def remove(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account email or id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop syncing an account: stop its Gmail watch, cancel its jobs, delete its mirror and credential."""
    from mailtide.accounts.lifecycle import remove_account
    from mailtide.store.accounts import AccountNotFound, find_account
    from mailtide.store.messages import count_messages

    settings = settings_from_context(ctx)

    async def lookup() -> tuple[Account, int]:
        async with _runtime(settings) as rt:
            found = await find_account(rt.engine, account)
            return found, await count_messages(rt.engine, found.id)

    try:
        found, mirrored = asyncio.run(lookup())
    except AccountNotFound as exc:
        raise _fail(str(exc)) from None
    if not yes:
        typer.confirm(f"Remove {found.email} and delete its mirror ({mirrored} messages)?", abort=True)

    async def delete() -> None:
        async with _runtime(settings) as rt:
            await remove_account(rt, found)

    asyncio.run(delete())
    console.print(f"account {found.email} removed ({mirrored} mirrored messages deleted)")
