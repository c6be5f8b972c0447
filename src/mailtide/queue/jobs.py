"""What a job is, and what a handler may raise or use while it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Retryable(Exception):
    """The job failed for a transient reason; run it again later with backoff.

    `delay` (seconds) overrides the computed backoff, e.g. from a Retry-After header.
    """

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class Fatal(Exception):
    """The job can never succeed; fail it now without further attempts."""


@dataclass(frozen=True)
class JobSpec:
    """A job to enqueue."""

    type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    not_before: float | None = None  # epoch seconds; None = now
    idempotency_key: str | None = None
    lane: str | None = None
    account_id: int | None = None
    max_attempts: int = 10


@dataclass(frozen=True)
class Job:
    """A job as stored."""

    id: int
    type: str
    payload: dict[str, Any]
    priority: int
    state: str
    attempts: int
    max_attempts: int
    not_before: float
    idempotency_key: str | None
    lane: str | None
    account_id: int | None
    created_at: float
    started_at: float | None
    heartbeat_at: float | None
    finished_at: float | None
    worker_id: str | None
    last_error: str | None
    cancel_requested: bool


class JobContext(Protocol):
    """What a running handler can do besides its own work."""

    job: Job

    async def step(self, name: str, detail: dict[str, Any] | None = None) -> None:
        """Record a job step (visible in `mailtide jobs show`)."""

    async def cancel_requested(self) -> bool:
        """True when someone asked to cancel this job; the handler should stop early."""


Handler = Callable[[Job, JobContext], Awaitable[None]]
