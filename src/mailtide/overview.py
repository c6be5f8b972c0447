"""The state of the mirror at a glance: per-account progress and health, and the queue.

One read-only snapshot shared by `mailtide status`, the HTTP API and the /metrics scrape, so the
three always agree. A handful of aggregate queries, whatever the number of messages or jobs.

Definitions:
- backfill state: what the account's latest backfill page or reconcile job says: running (queued or
  running), paused (parked until re-authorisation), failed or canceled (with the job's id); else
  ingesting while the ingest jobs it asked for are still queued or running, done once it handed
  over, pending when the account waits for a backfill that has no job (not started, or pruned).
- ingest backlog: ingest jobs of the account that are queued or running, and the message ids they
  carry (an upper bound: a retried job may have stored some of them already).
- backfill ETA: messages still to fetch / the rate the configured Gmail quota profile allows for
  messages.get (units per user per minute / units per get): the best case, "at the current quota";
  none with the `unlimited` profile, and none while nothing of the backfill is queued or running.
- sync lag: how long the oldest pending real-time work of the account (a history sync, or an
  ingest it asked for) has been waiting to run; 0 when there is none. Parked jobs do not count.
- oldest queued: how long the longest-waiting due job has been waiting (since it was enqueued
  or became due, whichever is later).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.config import Settings
from mailtide.db.schema import (
    ACTIVE_STATES,
    CANCELED,
    FAILED,
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
from mailtide.sync.reauth import PAUSED_THRESHOLD, is_paused

# The 2026 quota (GMAIL_FACTS.md), when no settings are at hand.
DEFAULT_UNITS_PER_USER_MINUTE = 6_000
DEFAULT_MESSAGES_GET_UNITS = 20


# Backfill states (see Definitions above)
BACKFILL_RUNNING = "running"
BACKFILL_PAUSED = "paused"
BACKFILL_FAILED = "failed"
BACKFILL_CANCELED = "canceled"
BACKFILL_INGESTING = "ingesting"
BACKFILL_DONE = "done"
BACKFILL_PENDING = "pending"
BACKFILL_NONE = "none"


@dataclass(frozen=True)
class IngestBacklog:
    """Ingest jobs of an account that are queued or running, and the message ids they carry."""

    jobs: int = 0
    messages: int = 0
    backfill_jobs: int = 0  # of them, those a backfill (or a reconcile) asked for
    backfill_messages: int = 0


@dataclass(frozen=True)
class BackfillProgress:
    state: str
    job_id: int | None  # the latest backfill page or reconcile job
    running: bool  # a backfill page or reconcile job is queued (not parked) or running
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
    ingest: IngestBacklog = field(default_factory=IngestBacklog)
    failed_jobs: int = 0  # kept for failed_retention_seconds; a failed ingest means mail not mirrored


    @property
    def action(self) -> str | None:
        """What the user should do, if anything."""
        if self.status == STATUS_NEEDS_REAUTH:
            return f"run `mailtide accounts reauth {self.email}` to grant access again"
        if self.backfill.state == BACKFILL_FAILED:
            job_id = self.backfill.job_id
            return f"the backfill failed: see `mailtide jobs show {job_id}`; `mailtide jobs retry {job_id}` resumes it"
        if self.failed_jobs:
            return (f"{self.failed_jobs} job(s) failed: see `mailtide jobs list --state failed --account {self.id}`; "
                    f"`mailtide jobs retry --failed --account {self.id}` runs them again")
        return None

    def summary(self, now: float) -> str:
        """The backfill and the pending ingest work in a few words (`mailtide status`, the API)."""
        b = self.backfill
        percent = f"{(b.ratio or 0) * 100:.0f}% of {b.total}" if b.total else f"{b.listed} ids listed"
        if b.state == BACKFILL_RUNNING:
            backfill = f"{percent}, ETA {human_duration(b.eta_seconds)}" if b.total else f"listing ({percent})"
        elif b.state in (BACKFILL_FAILED, BACKFILL_CANCELED):
            backfill = f"{b.state} at {percent} (job {b.job_id})"
        elif b.state == BACKFILL_PAUSED:
            backfill = f"paused at {percent} until re-authorisation"
        elif b.state == BACKFILL_PENDING:
            backfill = "not started" if self.status == STATUS_NEEDS_BACKFILL else "stopped (no backfill job)"
        elif b.state == BACKFILL_DONE and b.finished_at is not None and not self.ingest.jobs:
            backfill = f"done {human_duration(now - b.finished_at)} ago"
        else:
            backfill = ""
        if not self.ingest.jobs or b.state == BACKFILL_RUNNING:
            return backfill or "-"
        ingesting = f"ingesting: {self.ingest.messages} messages in {self.ingest.jobs} job(s)"
        if b.state == BACKFILL_INGESTING and b.eta_seconds is not None:
            ingesting += f", ETA {human_duration(b.eta_seconds)}"
        return "; ".join(part for part in (backfill, ingesting) if part)


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


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    return f"{seconds / 86400:.1f} d"


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
        failed_by_account = {
            row[0]: row[1]
            for row in await conn.execute(
                sa.select(jobs.c.account_id, sa.func.count()).where(jobs.c.state == FAILED).group_by(jobs.c.account_id)
            )
        }
        latest_backfill = {row.account_id: row for row in await conn.execute(_latest_backfill_jobs(account_id))}
        ingest = await _ingest_backlogs(conn, account_id)
    queue = QueueOverview(
        counts=counts,
        paused=sum(paused_by_account.values()),
        scheduled=scheduled,
        oldest_queued_age_seconds=None if oldest is None else max(0.0, now - oldest),
    )
    overviews = [
        _account_overview(row, mirrored.get(row.id, 0), paused_by_account.get(row.id, 0), lag_since.get(row.id),
                          latest_backfill.get(row.id), ingest.get(row.id, IngestBacklog()), rate, now,
                          failed_by_account.get(row.id, 0))
        for row in account_rows
    ]
    return Overview(overviews, queue, now)


def _latest_backfill_jobs(account_id: int | None) -> sa.Select:
    """Per account, its newest backfill page or reconcile job (a backfill's pages are enqueued in order)."""
    newest = sa.select(sa.func.max(jobs.c.id)).where(jobs.c.type.in_([jobtypes.BACKFILL, jobtypes.RECONCILE]))
    if account_id is not None:
        newest = newest.where(jobs.c.account_id == account_id)
    newest = newest.group_by(jobs.c.account_id)
    return sa.select(jobs.c.account_id, jobs.c.id, jobs.c.state, jobs.c.not_before).where(jobs.c.id.in_(newest))


def _ids_in_payload(dialect: str) -> sa.ColumnElement[int]:
    """How many message ids an ingest job's payload carries."""
    if dialect == "postgresql":
        return sa.func.json_array_length(jobs.c.payload.op("->")(sa.literal_column("'ids'")))
    return sa.func.json_array_length(jobs.c.payload, "$.ids")


async def _ingest_backlogs(conn: AsyncConnection, account_id: int | None) -> dict[int, IngestBacklog]:
    for_backfill = jobs.c.priority < jobtypes.PRIORITY_REALTIME_INGEST
    query = (
        sa.select(jobs.c.account_id, for_backfill.label("for_backfill"), sa.func.count(),
                  sa.func.coalesce(sa.func.sum(_ids_in_payload(conn.dialect.name)), 0))
        .where(jobs.c.type == jobtypes.INGEST, jobs.c.state.in_(ACTIVE_STATES))
        .group_by(jobs.c.account_id, for_backfill)
    )
    if account_id is not None:
        query = query.where(jobs.c.account_id == account_id)
    counts: dict[int, dict[bool, tuple[int, int]]] = {}
    for row_account, backfill_flag, job_count, message_count in await conn.execute(query):
        counts.setdefault(row_account, {})[bool(backfill_flag)] = (job_count, int(message_count))
    backlogs = {}
    for row_account, by_kind in counts.items():
        backfill_jobs, backfill_messages = by_kind.get(True, (0, 0))
        realtime_jobs, realtime_messages = by_kind.get(False, (0, 0))
        backlogs[row_account] = IngestBacklog(
            jobs=backfill_jobs + realtime_jobs, messages=backfill_messages + realtime_messages,
            backfill_jobs=backfill_jobs, backfill_messages=backfill_messages,
        )
    return backlogs


def _backfill_state(status: str, latest: sa.Row | None, ingest: IngestBacklog, finished_at: float | None) -> str:
    if latest is not None and latest.state in ACTIVE_STATES:
        return BACKFILL_PAUSED if is_paused(latest.state, latest.not_before) else BACKFILL_RUNNING
    if latest is not None and latest.state == FAILED:
        return BACKFILL_FAILED
    if latest is not None and latest.state == CANCELED:
        return BACKFILL_CANCELED
    if status in (STATUS_BACKFILLING, STATUS_NEEDS_BACKFILL):
        return BACKFILL_PENDING
    if ingest.backfill_jobs:
        return BACKFILL_INGESTING
    return BACKFILL_DONE if finished_at is not None else BACKFILL_NONE


def _account_overview(row: sa.Row, mirrored: int, paused: int, lag_since: float | None, latest_backfill: sa.Row | None,
                      ingest: IngestBacklog, rate: float | None, now: float, failed_jobs: int) -> AccountOverview:
    state = _backfill_state(row.status, latest_backfill, ingest, row.backfill_finished_at)
    total = row.messages_total
    ratio = eta = None
    if total:
        ratio = min(1.0, mirrored / total)
    elif total == 0:
        ratio = 1.0
    if rate and state == BACKFILL_RUNNING and total:
        eta = max(0, total - mirrored) / rate
    elif rate and state == BACKFILL_INGESTING:
        eta = ingest.backfill_messages / rate
    return AccountOverview(
        id=row.id,
        email=row.email,
        status=row.status,
        history_id=row.history_id,
        messages_mirrored=mirrored,
        messages_total=total,
        backfill=BackfillProgress(
            state=state,
            job_id=None if latest_backfill is None else latest_backfill.id,
            running=state == BACKFILL_RUNNING,
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
        ingest=ingest,
        failed_jobs=failed_jobs,
    )
