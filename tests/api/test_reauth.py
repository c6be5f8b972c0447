"""A revoked grant (invalid_grant): the account is flagged, its jobs park instead of retrying,
status/API/metrics say what to do, and a new grant resumes everything without losing mail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from api_support import CLIENT_ID, CLIENT_SECRET, EMAIL, Api, assert_error

from mailtide.accounts.consent import Grant, OAuthClient
from mailtide.accounts.lifecycle import WrongAccount, reauthorize
from mailtide.accounts.scopes import GMAIL_READONLY
from mailtide.db.schema import jobs
from mailtide.store.accounts import get_account
from mailtide.sync import jobtypes

NEW_MAIL = b"From: dave@example.org\r\nTo: carol@mailtide.test\r\nSubject: while you were away\r\n\r\nhello\r\n"


def oauth_client(api: Api) -> OAuthClient:
    url = api.emulator.server.url
    return OAuthClient(CLIENT_ID, CLIENT_SECRET, f"{url}/o/oauth2/auth", f"{url}/token")


async def job_states(api: Api) -> list[tuple[str, str, int]]:
    async with api.rt.engine.connect() as conn:
        rows = await conn.execute(sa.select(jobs.c.type, jobs.c.state, jobs.c.attempts).order_by(jobs.c.id))
        return [tuple(r) for r in rows]


async def test_revoked_grant_parks_jobs_until_reauth(api: Api) -> None:
    emulator = api.emulator
    await api.backfill()
    emulator.state.revoke_refresh_token(EMAIL)
    emulator.state.expire_access_tokens()
    new_id = emulator.mailbox.add_message(NEW_MAIL)

    await jobtypes.request_history_sync(api.rt.queue, api.account_id)
    await api.settle()  # returns: parked jobs are not due, so the queue counts as idle

    account = (await api.http.get(f"/api/accounts/{api.account_id}")).json()
    assert account["status"] == "needs_reauth"
    assert "re-authorisation needed" in account["last_error"]
    assert account["action"] == f"run `mailtide accounts reauth {EMAIL}` to grant access again"
    assert account["paused_jobs"] == 1
    [parked] = (await api.http.get("/api/jobs", params={"state": "queued"})).json()["jobs"]
    assert parked["type"] == jobtypes.HISTORY_SYNC and parked["paused"] and parked["attempts"] == 1
    assert_error(await api.http.post(f"/api/accounts/{api.account_id}/sync"), 409, "needs_reauth")
    metrics = (await api.http.get("/metrics")).text
    assert f'mailtide_account_info{{account="{api.account_id}",email="{EMAIL}",status="needs_reauth"}} 1.0' in metrics

    # Work arriving meanwhile (a notification, a poll) parks too, without asking the token endpoint again.
    token_calls = emulator.state.counters.requests("oauth.token")
    await jobtypes.request_labels_sync(api.rt.queue, api.account_id)
    await api.settle()
    assert emulator.state.counters.requests("oauth.token") == token_calls
    assert (await api.http.get(f"/api/accounts/{api.account_id}")).json()["paused_jobs"] == 2
    assert not [s for s in await job_states(api) if s[1] == "failed"]  # nothing retried to death

    grant = Grant(refresh_token=emulator.state.new_refresh_token(EMAIL), scopes=(GMAIL_READONLY,))
    resumed = await reauthorize(api.rt, await get_account(api.rt.engine, api.account_id), oauth_client(api), grant)
    assert resumed.status == "normal" and resumed.unparked == 2
    await api.settle()

    account = (await api.http.get(f"/api/accounts/{api.account_id}")).json()
    assert account["status"] == "normal" and account["last_error"] is None and account["paused_jobs"] == 0
    ids = {m["id"] for m in (await api.http.get("/api/messages", params={"limit": 500})).json()["messages"]}
    assert new_id in ids and ids == emulator.message_ids()
    assert {state for _, state, _ in await job_states(api)} == {"completed"}


async def test_reauth_with_another_google_account_is_refused(api: Api) -> None:
    other = "mallory@mailtide.test"
    api.emulator.state.add_user(other, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    grant = Grant(refresh_token=api.emulator.state.new_refresh_token(other), scopes=(GMAIL_READONLY,))
    account = await get_account(api.rt.engine, api.account_id)
    with pytest.raises(WrongAccount, match=other):
        await reauthorize(api.rt, account, oauth_client(api), grant)
