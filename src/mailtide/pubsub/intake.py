"""From a notification to a durable history sync: the one path push and pull share.

A valid notification for a known account enqueues a coalesced history sync (one queued per account)
and returns only once that enqueue committed, so the caller may acknowledge. The history sync reads
from the *stored* cursor, never from the notification's history id; that id only lets a duplicate or
late notification, already covered by the cursor, skip the enqueue. Malformed payloads and unknown
addresses are logged and reported as outcomes to acknowledge; database errors propagate, so the
caller answers "try again" (push 503, pull nack).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import STATUS_NORMAL, accounts
from mailtide.pubsub.notification import GmailNotification, MalformedNotification, parse_notification
from mailtide.queue.job_queue import JobQueue
from mailtide.sync.jobtypes import request_history_sync

logger = logging.getLogger(__name__)

ARRIVAL_WRITE_INTERVAL_SECONDS = 1.0


class Outcome(StrEnum):
    ENQUEUED = "enqueued"  # a history sync is queued (or was already)
    UP_TO_DATE = "up_to_date"  # the stored cursor already covers this history id
    UNKNOWN_ACCOUNT = "unknown_account"
    MALFORMED = "malformed"


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    account_id: int | None = None
    job_id: int | None = None
    detail: str | None = None


@dataclass(frozen=True)
class _AccountCursor:
    id: int
    status: str
    history_id: int | None


class NotificationIntake:
    def __init__(self, engine: AsyncEngine, queue: JobQueue) -> None:
        self.engine = engine
        self.queue = queue
        self.outcomes: Counter[str] = Counter()  # by Outcome, for status and metrics
        self._arrival_written: dict[int, float] = {}  # account id -> monotonic time of the last write
        self._in_flight: dict[str, tuple[int, asyncio.Future[IntakeResult]]] = {}  # address -> (history id, result)

    async def accept_data(self, data: bytes, *, source: str, message_id: str | None = None) -> IntakeResult:
        """Decoded Pub/Sub message data (JSON bytes) -> outcome."""
        try:
            notification = parse_notification(data)
        except MalformedNotification as exc:
            return self.malformed(exc, source=source, message_id=message_id, data=data)
        return await self.accept(notification, source=source, message_id=message_id)

    def malformed(
        self, reason: Exception | str, *, source: str, message_id: str | None = None, data: bytes = b""
    ) -> IntakeResult:
        """Log and count a message that can never become a sync (the caller acknowledges it)."""
        logger.warning(
            "pubsub.notification.malformed source=%s message_id=%s reason=%s data=%r",
            source, message_id, reason, data[:200],
        )
        return self._count(IntakeResult(Outcome.MALFORMED, detail=str(reason)))

    async def accept(
        self, notification: GmailNotification, *, source: str, message_id: str | None = None
    ) -> IntakeResult:
        """Single flight per address: a notification whose history id is not newer than one being
        handled right now waits for that one and shares its result (a burst costs one round trip)."""
        key = notification.email.lower()
        in_flight = self._in_flight.get(key)
        if in_flight is not None and notification.history_id <= in_flight[0]:
            result = await asyncio.shield(in_flight[1])  # its failure is ours too: the caller retries
            return self._count(result)
        entry = (notification.history_id, asyncio.get_running_loop().create_future())
        entry[1].add_done_callback(lambda done: done.cancelled() or done.exception())  # no "never retrieved"
        self._in_flight[key] = entry
        try:
            result = await self._accept_now(notification, source=source, message_id=message_id)
        except asyncio.CancelledError:
            entry[1].cancel()
            raise
        except Exception as exc:
            entry[1].set_exception(exc)
            raise
        else:
            entry[1].set_result(result)
        finally:
            if self._in_flight.get(key) is entry:
                del self._in_flight[key]
        return self._count(result)

    async def _accept_now(
        self, notification: GmailNotification, *, source: str, message_id: str | None
    ) -> IntakeResult:
        account = await self._find_account(notification.email)
        if account is None:
            logger.warning(
                "pubsub.notification.unknown_account source=%s message_id=%s email=%s history_id=%s",
                source, message_id, notification.email, notification.history_id,
            )
            return IntakeResult(Outcome.UNKNOWN_ACCOUNT, detail=notification.email)
        covered = (
            account.status == STATUS_NORMAL
            and account.history_id is not None
            and account.history_id >= notification.history_id
        )
        job_id = None
        if not covered:
            job_id = (await request_history_sync(self.queue, account.id)).id
        await self._record_arrival(account.id)
        outcome = Outcome.UP_TO_DATE if covered else Outcome.ENQUEUED
        logger.info(
            "pubsub.notification.accepted source=%s message_id=%s account_id=%s history_id=%s outcome=%s job_id=%s",
            source, message_id, account.id, notification.history_id, outcome, job_id,
        )
        return IntakeResult(outcome, account.id, job_id)

    async def _find_account(self, email: str) -> _AccountCursor | None:
        query = sa.select(accounts.c.id, accounts.c.status, accounts.c.history_id).where(
            sa.func.lower(accounts.c.email) == email.lower()
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _AccountCursor(row.id, row.status, row.history_id)

    async def _record_arrival(self, account_id: int) -> None:
        # At most one write per account per second: a burst of notifications must not become a burst of writes.
        now = time.monotonic()
        if now - self._arrival_written.get(account_id, float("-inf")) < ARRIVAL_WRITE_INTERVAL_SECONDS:
            return
        self._arrival_written[account_id] = now
        async with self.engine.begin() as conn:
            await conn.execute(
                accounts.update().where(accounts.c.id == account_id).values(last_notification_at=time.time())
            )

    def _count(self, result: IntakeResult) -> IntakeResult:
        self.outcomes[result.outcome] += 1
        return result
