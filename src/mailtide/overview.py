"""The state of the mirror at a glance: per-account progress and health, and the queue.

One read-only snapshot shared by `mailtide status`, the HTTP API and the /metrics scrape, so the
three always agree. A handful of aggregate queries, whatever the number of messages or jobs.

Definitions:
- backfill ETA: messages still to fetch / the rate the configured Gmail quota profile allows for
  messages.get (units per user per minute / units per get): the best case, "at the current quota";
  none with the `unlimited` profile.
- sync lag: how long the oldest pending real-time work of the account (a history sync, or an
  ingest it asked for) has been waiting to run; 0 when there is none. Parked jobs do not count.
- oldest queued: how long the longest-waiting due job has been waiting (since it was enqueued
  or became due, whichever is later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.config import Settings
from mailtide.db.schema import (
    ACTIVE_STATES,
    QUEUED,
    RUNNING,
    STATUS_BACKFILLING,
    STATUS_NEEDS_BACKFILL,
    STATUS_NEEDS_REAUTH,
    accounts,
    jobs,
    messages,
)
from mailtide.sync import jobtypes
from mailtide.sync.reauth import PAUSED_THRESHOLD

# The 2026 quota (GMAIL_FACTS.md), when no settings are at hand.
DEFAULT_UNITS_PER_USER_MINUTE = 6_000
DEFAULT_MESSAGES_GET_UNITS = 20


@dataclass(frozen=True)
class BackfillProgress:
    running: bool
    listed: int
    total: int | None  # Gmail's messagesTotal at the start of the backfill
    mirrored: int
    ratio: float | None
    eta_seconds: float | None
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class AccountOverview:
    id: int
    email: str
    status: str
    history_id: int | None
    messages_mirrored: int
    messages_total: int | None
    backfill: BackfillProgress
    last_sync_at: float | None
    lag_seconds: float
    last_error: str | None
    watch_expiration: float | None
    watch_error: str | None
    last_notification_at: float | None
    paused_jobs: int
    created_at: float

    @property
    def action(self) -> str | None:
        """What the user should do, if anything."""
        if self.status == STATUS_NEEDS_REAUTH:
            return f"run `mailtide accounts reauth {self.email}` to grant access again"
        return None


@dataclass(frozen=True)
class QueueOverview:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # {state: {type: n}}
    paused: int = 0  # queued jobs parked until an account is re-authorised
    scheduled: int = 0  # queued jobs not due yet (backoff, schedules), parked ones excluded
    oldest_queued_age_seconds: float | None = None

    def total(self, state: str) -> int:
        return sum(self.counts.get(state, {}).values())


@dataclass(frozen=True)
class Overview:
    accounts: list[AccountOverview]
    queue: QueueOverview
    taken_at: float


def messages_per_second_at_quota(settings: Settings | None) -> float | None:
    """The fastest messages.get rate the per-user quota allows (None: the profile sets no limit)."""
    if settings is None:
        return DEFAULT_UNITS_PER_USER_MINUTE / DEFAULT_MESSAGES_GET_UNITS / 60.0
    from mailtide.gmail import settings_quota_profile

    profile = settings_quota_profile(settings)
    per_second = profile.user_units_per_second
    return None if per_second is None else per_second / max(1, profile.cost("messages.get"))


def _waiting_since() -> sa.ColumnElement[float]:
    return sa.case((jobs.c.not_before > jobs.c.created_at, jobs.c.not_before), else_=jobs.c.created_at)


async def collect_overview(engine: AsyncEngine, settings: Settings | None = None, *,
                           account_id: int | None = None) -> Overview:
    now = time.time()
    rate = messages_per_second_at_quota(settings)
    account_query = sa.select(accounts).order_by(accounts.c.id)
    mirrored_query = (
        sa.select(messages.c.account_id, sa.func.count())
        .where(messages.c.deleted.is_(False))
        .group_by(messages.c.account_id)
    )
    if account_id is not None:
        account_query = account_query.where(accounts.c.id == account_id)
        mirrored_query = mirrored_query.where(messages.c.account_id == account_id)
    due = sa.and_(jobs.c.state == QUEUED, jobs.c.not_before <= now)
    realtime = sa.or_(
        jobs.c.type == jobtypes.HISTORY_SYNC,
        sa.and_(jobs.c.type == jobtypes.INGEST, jobs.c.priority >= jobtypes.PRIORITY_REALTIME_INGEST),
    )
    async with engine.connect() as conn:
        account_rows = (await conn.execute(account_query)).all()
        mirrored = {row[0]: row[1] for row in await conn.execute(mirrored_query)}
        counts: dict[str, dict[str, int]] = {}
        for state, job_type, number in await conn.execute(
            sa.select(jobs.c.state, jobs.c.type, sa.func.count()).group_by(jobs.c.state, jobs.c.type)
        ):
            counts.setdefault(state, {})[job_type] = number
        paused_by_account = {
            row[0]: row[1]
            for row in await conn.execute(
                sa.select(jobs.c.account_id, sa.func.count())
                .where(jobs.c.state == QUEUED, jobs.c.not_before >= PAUSED_THRESHOLD)
                .group_by(jobs.c.account_id)
            )
        }
        scheduled = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    jobs.c.state == QUEUED, jobs.c.not_before > now, jobs.c.not_before < PAUSED_THRESHOLD
                )
            )
        ).scalar_one()
        oldest = (await conn.execute(sa.select(sa.func.min(_waiting_since())).where(due))).scalar_one()
        lag_since = {
            row[0]: row[1]
            for row in await conn.execute(
                sa.select(jobs.c.account_id, sa.func.min(_waiting_since()))
                .where(realtime)
                .where(sa.or_(due, jobs.c.state == RUNNING))
                .group_by(jobs.c.account_id)
            )
        }
        backfilling = {
            row[0]
            for row in await conn.execute(
                sa.select(jobs.c.account_id)
                .where(jobs.c.type.in_([jobtypes.BACKFILL, jobtypes.RECONCILE]))
                .where(jobs.c.state.in_(ACTIVE_STATES))
                .group_by(jobs.c.account_id)
            )
        }
    queue = QueueOverview(
        counts=counts,
        paused=sum(paused_by_account.values()),
        scheduled=scheduled,
        oldest_queued_age_seconds=None if oldest is None else max(0.0, now - oldest),
    )
    overviews = [
        _account_overview(row, mirrored.get(row.id, 0), paused_by_account.get(row.id, 0),
                          lag_since.get(row.id), row.id in backfilling, rate, now)
        for row in account_rows
    ]
    return Overview(overviews, queue, now)


def _account_overview(row: sa.Row, mirrored: int, paused: int, lag_since: float | None, backfill_active: bool,
                      rate: float | None, now: float) -> AccountOverview:
    running = backfill_active or row.status in (STATUS_BACKFILLING, STATUS_NEEDS_BACKFILL)
    total = row.messages_total
    ratio = eta = None
    if total:
        ratio = min(1.0, mirrored / total)
        if running and rate:
            eta = max(0, total - mirrored) / rate
    elif total == 0:
        ratio = 1.0
    return AccountOverview(
        id=row.id,
        email=row.email,
        status=row.status,
        history_id=row.history_id,
        messages_mirrored=mirrored,
        messages_total=total,
        backfill=BackfillProgress(
            running=running,
            listed=row.backfill_listed or 0,
            total=total,
            mirrored=mirrored,
            ratio=ratio,
            eta_seconds=eta,
            started_at=row.backfill_started_at,
            finished_at=row.backfill_finished_at,
        ),
        last_sync_at=row.last_sync_at,
        lag_seconds=0.0 if lag_since is None else max(0.0, now - lag_since),
        last_error=row.last_error,
        watch_expiration=row.watch_expiration,
        watch_error=row.watch_error,
        last_notification_at=row.last_notification_at,
        paused_jobs=paused,
        created_at=row.created_at,
    )
