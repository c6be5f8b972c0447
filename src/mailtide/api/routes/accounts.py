"""Accounts: state and progress; ask for a sync or a backfill."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from mailtide.api.context import MAX_INT32, Ctx
from mailtide.api.errors import ERROR_RESPONSES, ApiError, conflict, not_found
from mailtide.api.models import AccountList, AccountOut, JobOut, QueuedWork
from mailtide.db.schema import STATUS_NEEDS_REAUTH
from mailtide.overview import AccountOverview, collect_overview
from mailtide.store.accounts import AccountNotFound, get_account
from mailtide.sync import jobtypes
from mailtide.sync.backfill import start_backfill

router = APIRouter(prefix="/api/accounts", tags=["accounts"], responses=ERROR_RESPONSES)
AccountId = Annotated[int, Path(ge=1, le=MAX_INT32, description="The account's id")]
_CONFLICT = {409: ERROR_RESPONSES[404] | {"description": "The account cannot do that now"}}


async def _overview(ctx: Ctx, account_id: int) -> AccountOverview:
    found = (await collect_overview(ctx.runtime.engine, ctx.settings, account_id=account_id)).accounts
    if not found:
        raise not_found(f"no account with id {account_id}")
    return found[0]


async def _usable(ctx: Ctx, account_id: int) -> None:
    try:
        account = await get_account(ctx.runtime.engine, account_id)
    except AccountNotFound:
        raise not_found(f"no account with id {account_id}") from None
    if account.status == STATUS_NEEDS_REAUTH:
        raise conflict("needs_reauth", f"account {account.email} needs re-authorisation: "
                                       f"run `mailtide accounts reauth {account.email}`")


@router.get("", response_model=AccountList, summary="Every account with its sync state")
async def list_accounts(ctx: Ctx) -> AccountList:
    overview = await collect_overview(ctx.runtime.engine, ctx.settings)
    return AccountList(accounts=[AccountOut.of(a) for a in overview.accounts])


@router.get("/{account_id}", response_model=AccountOut, summary="One account: status, history id, backfill progress")
async def account(ctx: Ctx, account_id: AccountId) -> AccountOut:
    return AccountOut.of(await _overview(ctx, account_id))


@router.post("/{account_id}/sync", response_model=QueuedWork, status_code=202, responses=_CONFLICT,
             summary="Sync now: a history sync, or the first backfill when there is no history id yet")
async def sync(ctx: Ctx, account_id: AccountId) -> QueuedWork:
    await _usable(ctx, account_id)
    account = await get_account(ctx.runtime.engine, account_id)
    if account.history_id is None:
        return await backfill(ctx, account_id)
    job = await jobtypes.request_history_sync(ctx.runtime.queue, account_id)
    return QueuedWork(job=JobOut.of(job), message="history sync queued")


@router.post("/{account_id}/backfill", response_model=QueuedWork, status_code=202, responses=_CONFLICT,
             summary="Start a full backfill (a recovery backfill when the account was synced before)")
async def backfill(ctx: Ctx, account_id: AccountId) -> QueuedWork:
    await _usable(ctx, account_id)
    account = await get_account(ctx.runtime.engine, account_id)
    job = await start_backfill(
        ctx.runtime.services, account_id, recovery=account.history_id is not None, reason="requested over the API"
    )
    if job is None:
        raise ApiError(409, "backfill_active", f"a backfill of account {account_id} is already queued or running")
    return QueuedWork(job=JobOut.of(job), message="backfill queued")
