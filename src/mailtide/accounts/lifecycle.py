"""Adding, re-authorising and removing accounts once the user consented.

The account's address comes from Gmail itself (getProfile with the new grant), which also proves
the grant works before anything is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from mailtide.accounts.consent import Grant, OAuthClient
from mailtide.accounts.scopes import check_granted
from mailtide.db.schema import ACTIVE_STATES, RUNNING
from mailtide.gmail import build_gmail_client
from mailtide.runtime import Runtime
from mailtide.store.accounts import Account, create_account, delete_account
from mailtide.sync import watch
from mailtide.sync.backfill import start_backfill
from mailtide.sync.reauth import Resumed, resume_account

log = logging.getLogger(__name__)

# How long a removal waits for the account's running jobs to see their cancellation and stop.
REMOVE_WAIT_SECONDS = 30.0


class WrongAccount(Exception):
    """The user consented with another Google account than the one being re-authorised."""


@dataclass(frozen=True)
class AddedAccount:
    id: int
    email: str
    backfill_queued: bool
    watch_registered: bool


async def profile_email(rt: Runtime, client: OAuthClient, grant: Grant) -> str:
    """The Gmail address the grant belongs to (one token refresh and one getProfile)."""
    gmail = build_gmail_client(
        rt.services.gmail.http, rt.settings,
        client_id=client.client_id, client_secret=client.client_secret, refresh_token=grant.refresh_token,
    )
    profile = await gmail.get_profile()
    return profile.email_address


async def add_account(rt: Runtime, client: OAuthClient, grant: Grant, *, backfill: bool = True) -> AddedAccount:
    scopes = check_granted(grant.scopes)
    email = await profile_email(rt, client, grant)
    account_id = await create_account(
        rt.engine, email, client_id=client.client_id, client_secret=client.client_secret,
        refresh_token=grant.refresh_token, scopes=" ".join(scopes), secrets=rt.secrets,
    )
    watched = await _register_watch(rt, account_id)
    queued = False
    if backfill:
        queued = await start_backfill(rt.services, account_id, recovery=False, reason="new account") is not None
    log.info("account.added account_id=%s email=%s scopes=%s", account_id, email, " ".join(scopes))
    return AddedAccount(account_id, email, queued, watched)


async def reauthorize(rt: Runtime, account: Account, client: OAuthClient, grant: Grant) -> Resumed:
    scopes = check_granted(grant.scopes)
    email = await profile_email(rt, client, grant)
    if email.lower() != account.email.lower():
        raise WrongAccount(f"you granted access to {email}, not to {account.email}; run it again and pick "
                           f"{account.email}")
    await create_account(
        rt.engine, account.email, client_id=client.client_id, client_secret=client.client_secret,
        refresh_token=grant.refresh_token, scopes=" ".join(scopes), secrets=rt.secrets,
    )
    resumed = await resume_account(rt.services, account.id)
    await _register_watch(rt, account.id)
    return resumed


async def remove_account(rt: Runtime, account: Account) -> None:
    """Stop the watch, cancel the account's jobs, delete its mirror and credential."""
    if rt.settings.pubsub_topic is not None:
        try:
            await watch.stop_watch(rt.services, account.id)
        except Exception as exc:  # a revoked grant or an unreachable Gmail must not prevent the removal
            log.warning("account.stop_watch_failed account_id=%s error=%s", account.id, exc)
    for job in await rt.queue.list_jobs(account_id=account.id, limit=100_000):
        if job.state in ACTIVE_STATES:
            await rt.queue.cancel(job.id)
    still_running = await _wait_until_stopped(rt, account.id, REMOVE_WAIT_SECONDS)
    if still_running:
        # Their late writes fail on the deleted account's foreign keys; nothing is left behind.
        log.warning("account.remove_with_running_jobs account_id=%s job_ids=%s", account.id, still_running)
    await delete_account(rt.engine, account.id)
    rt.services.gmail.forget(account.id)
    log.info("account.removed account_id=%s email=%s", account.id, account.email)


async def _wait_until_stopped(rt: Runtime, account_id: int, timeout: float) -> list[int]:  # noqa: ASYNC109
    """Wait for the account's running jobs (asked to cancel) to end; the ids still running at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        running = [job.id for job in await rt.queue.list_jobs(account_id=account_id, state=RUNNING)]
        if not running or time.monotonic() >= deadline:
            return running
        await asyncio.sleep(0.2)


async def _register_watch(rt: Runtime, account_id: int) -> bool:
    """Queue the account's first Gmail watch when Pub/Sub is configured (the watch job reports failures)."""
    if rt.settings.pubsub_topic is None:
        return False
    await watch.request_watch(rt.queue, account_id)
    return True
