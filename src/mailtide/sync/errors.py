"""Maps Gmail errors to job outcomes, once, at the edge where the cause is known."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.gmail.errors import GmailError
from mailtide.queue.jobs import Fatal, Retryable
from mailtide.store.accounts import update_account
from mailtide.sync.reauth import mark_grant_refused, mark_needs_reauth, pause_delay

log = logging.getLogger(__name__)


@asynccontextmanager
async def gmail_errors_as_job_errors(engine: AsyncEngine, account_id: int) -> AsyncIterator[None]:
    """Transient Gmail errors -> Retryable; a revoked grant flags the account and parks the job; others -> Fatal."""
    try:
        yield
    except GmailError as exc:
        if exc.is_auth_revoked:
            # Park, do not fail: the job runs again once `accounts reauth` resumes the account (sync/reauth.py).
            reason = await mark_grant_refused(engine, account_id, exc.message)
            raise Retryable(reason, delay=pause_delay()) from exc
        if exc.is_transient:
            raise Retryable(str(exc), delay=exc.retry_after) from exc
        if exc.is_access_denied:
            # Fatal for this job; the account waits (its other jobs parked) until someone fixes the grant.
            reason = access_denied_reason(str(account_id), exc)
            await mark_needs_reauth(engine, account_id, reason)
            raise Fatal(reason) from exc
        reason = f"Gmail refused a request ({exc.status} {exc.reason}): {exc.message}"
        await update_account(engine, account_id, last_error=reason)
        raise Fatal(reason) from exc


def access_denied_reason(email_or_id: str, exc: GmailError) -> str:
    """What a 403 forbidden / insufficientPermissions / domainPolicy means, and what to do about it."""
    if exc.reason == "domainPolicy":
        fix = "the Google Workspace administrator has disabled Gmail API access for this domain; ask them to allow it"
    else:
        fix = "the grant lacks a Gmail scope mailtide needs (gmail.readonly); authorise again with it"
    return (
        f"Gmail refused access (403 {exc.reason}: {exc.message}): {fix}, then run "
        f"`mailtide accounts reauth {email_or_id}`"
    )


def payload_value(job_payload: dict[str, object], key: str, kind: type) -> object:
    """A required payload field of the given type; a malformed payload can never succeed -> Fatal."""
    value = job_payload.get(key)
    if kind is int and isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise Fatal(f"malformed job payload: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def account_id_of(job_payload: dict[str, object]) -> int:
    return payload_value(job_payload, "account_id", int)  # type: ignore[return-value]
