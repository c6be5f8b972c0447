"""The shapes of the API's answers (they make the OpenAPI schema)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from mailtide.overview import AccountOverview
from mailtide.queue.jobs import Job
from mailtide.queue.records import JobStep
from mailtide.sync.reauth import is_paused


def to_datetime(epoch_seconds: float | None) -> datetime | None:
    return None if epoch_seconds is None else datetime.fromtimestamp(epoch_seconds, UTC)


def from_epoch_ms(epoch_ms: int | None) -> datetime | None:
    return None if epoch_ms is None else datetime.fromtimestamp(epoch_ms / 1000, UTC)


class Health(BaseModel):
    status: str = "ok"


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


class BackfillOut(BaseModel):
    state: str = Field(
        description="running | paused (until re-authorisation) | failed | canceled | ingesting (pages listed, "
        "ingest jobs still queued or running) | done | pending (waiting for a backfill with no job) | none"
    )
    job_id: int | None = Field(description="The latest backfill page or reconcile job (the failed one, if failed)")
    running: bool = Field(description="A backfill page or reconcile job is queued or running")
    listed: int = Field(description="Message ids listed so far by the current or last backfill")
    total: int | None = Field(description="Gmail's message count when the backfill started")
    mirrored: int
    progress: float | None = Field(description="mirrored / total, 0..1")
    eta_seconds: float | None = Field(
        description="Time left at the best rate the Gmail quota allows; none when nothing of the backfill is queued "
        "or running"
    )
    started_at: datetime | None
    finished_at: datetime | None


class IngestOut(BaseModel):
    jobs: int = Field(description="Ingest jobs of the account that are queued or running")
    messages: int = Field(description="Message ids those jobs carry (at most this many still to fetch)")


class WatchOut(BaseModel):
    expiration: datetime | None
    error: str | None
    last_notification_at: datetime | None


class AccountOut(BaseModel):
    id: int
    email: str
    status: str = Field(description="normal | needs_backfill | backfilling | needs_reauth")
    action: str | None = Field(description="What to do about the account, when something is needed")
    history_id: int | None
    messages_mirrored: int
    backfill: BackfillOut
    ingest: IngestOut
    summary: str = Field(description="The backfill and pending ingest work in a few words, as `mailtide status` "
                                     "shows them")
    last_sync_at: datetime | None
    lag_seconds: float = Field(description="How long the oldest pending real-time work has waited")
    last_error: str | None
    watch: WatchOut
    paused_jobs: int = Field(description="Jobs parked until the account is re-authorised")
    failed_jobs: int = Field(description="The account's failed jobs (kept for the failed-job retention time)")
    created_at: datetime

    @classmethod
    def of(cls, a: AccountOverview) -> AccountOut:
        b = a.backfill
        return cls(
            id=a.id,
            email=a.email,
            status=a.status,
            action=a.action,
            history_id=a.history_id,
            messages_mirrored=a.messages_mirrored,
            backfill=BackfillOut(
                state=b.state, job_id=b.job_id, running=b.running, listed=b.listed, total=b.total,
                mirrored=b.mirrored, progress=b.ratio,
                eta_seconds=b.eta_seconds, started_at=to_datetime(b.started_at),
                finished_at=to_datetime(b.finished_at),
            ),
            ingest=IngestOut(jobs=a.ingest.jobs, messages=a.ingest.messages),
            summary=a.summary(time.time()),
            last_sync_at=to_datetime(a.last_sync_at),
            lag_seconds=a.lag_seconds,
            last_error=a.last_error,
            watch=WatchOut(
                expiration=to_datetime(a.watch_expiration), error=a.watch_error,
                last_notification_at=to_datetime(a.last_notification_at),
            ),
            paused_jobs=a.paused_jobs,
            failed_jobs=a.failed_jobs,
            created_at=to_datetime(a.created_at),  # type: ignore[arg-type]
        )


class AccountList(BaseModel):
    accounts: list[AccountOut]


class JobOut(BaseModel):
    id: int
    type: str
    state: str
    paused: bool = Field(description="Queued but parked until its account is re-authorised")
    priority: int
    attempts: int
    max_attempts: int
    account_id: int | None
    lane: str | None
    idempotency_key: str | None
    payload: dict[str, Any]
    created_at: datetime
    not_before: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    last_error: str | None
    cancel_requested: bool

    @classmethod
    def of(cls, job: Job) -> JobOut:
        paused = is_paused(job.state, job.not_before)
        return cls(
            id=job.id, type=job.type, state=job.state, paused=paused, priority=job.priority, attempts=job.attempts,
            max_attempts=job.max_attempts, account_id=job.account_id, lane=job.lane,
            idempotency_key=job.idempotency_key, payload=job.payload, created_at=to_datetime(job.created_at),
            not_before=None if paused else to_datetime(job.not_before), started_at=to_datetime(job.started_at),
            finished_at=to_datetime(job.finished_at), last_error=job.last_error,
            cancel_requested=job.cancel_requested,
        )  # type: ignore[arg-type]


class JobStepOut(BaseModel):
    attempt: int
    name: str
    detail: dict[str, Any] | None
    at: datetime

    @classmethod
    def of(cls, step: JobStep) -> JobStepOut:
        return cls(attempt=step.attempt, name=step.name, detail=step.detail, at=to_datetime(step.at))  # type: ignore[arg-type]


class JobDetail(JobOut):
    steps: list[JobStepOut]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class QueuedWork(BaseModel):
    job: JobOut
    message: str


class MessageSummary(BaseModel):
    account_id: int
    id: str
    thread_id: str
    label_ids: list[str]
    date: datetime | None = Field(description="Gmail's internalDate")
    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str | None
    subject: str | None
    snippet: str | None
    size_estimate: int | None

    model_config = {"populate_by_name": True}


class MessagePage(BaseModel):
    messages: list[MessageSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class AttachmentOut(BaseModel):
    part_path: str
    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    inline: bool


class MessageDetail(MessageSummary):
    history_id: int
    cc: str | None
    bcc: str | None
    message_id_header: str | None
    date_header: str | None
    headers: list[list[str]]
    body_text: str | None
    body_html: str | None
    raw_size: int | None
    raw_sha256: str | None
    parse_error: str | None
    attachments: list[AttachmentOut]


class ThreadOut(BaseModel):
    account_id: int
    id: str
    subject: str | None
    snippet: str | None
    message_count: int
    label_ids: list[str]
    last_message_at: datetime | None
    messages: list[MessageSummary]
