"""ingest.gmail: fetch a batch of messages (format=raw, through Gmail batch requests), parse and store them.

Ids the mirror already holds (tombstones included) are skipped, so a retried job only fetches what is
still missing. Messages are parsed as their part of the batch reply arrives and written a few at a time
(one transaction per STORE_BATCH_MESSAGES or STORE_BATCH_BYTES of raw mail, whichever comes first), so
memory stays bounded however large the messages and the database sees few, short write transactions.
One bad message never fails the batch:
unparseable mail is stored raw with `parse_error` set, a 404 means the message is gone, and a fetch
that still fails after the client's own retries is never counted as done: the job is retried for
just those ids (or, when Gmail calls the request itself invalid, fails with their reasons).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import aclosing
from dataclasses import dataclass, field

from mailtide.gmail.errors import GmailError
from mailtide.gmail.models import Message
from mailtide.gmail.responses import MALFORMED
from mailtide.mail import ParsedMessage, parse_message
from mailtide.queue.jobs import Fatal, Job, JobContext, Retryable
from mailtide.store.messages import known_ids, upsert_messages
from mailtide.sync.errors import account_id_of, gmail_errors_as_job_errors, payload_value
from mailtide.sync.services import SyncServices

log = logging.getLogger(__name__)

# Parsing a large message takes long enough to stall the event loop; do those in a thread.
_PARSE_INLINE_MAX_BYTES = 128 * 1024
STORE_BATCH_MESSAGES = 25
STORE_BATCH_BYTES = 8 * 1024 * 1024


@dataclass
class _Outcome:
    stored: int = 0
    gone: int = 0
    failed: list[tuple[str, GmailError]] = field(default_factory=list)  # worth another attempt
    rejected: list[tuple[str, GmailError]] = field(default_factory=list)  # Gmail calls the request invalid

    def detail(self) -> dict[str, int]:
        detail = {"stored": self.stored, "gone": self.gone, "failed": len(self.failed)}
        if self.rejected:
            detail["rejected"] = len(self.rejected)
        return detail


async def handle_ingest(services: SyncServices, job: Job, ctx: JobContext) -> None:
    account_id = account_id_of(job.payload)
    ids = payload_value(job.payload, "ids", list)
    wanted = [str(i) for i in ids if str(i)]  # type: ignore[union-attr]
    have = await known_ids(services.engine, account_id, wanted)  # one query, not one per id
    missing = [i for i in wanted if i not in have]
    if not missing:
        await ctx.step("nothing-to-fetch", {"ids": len(wanted)})
        return

    outcome = _Outcome()
    writer = _StoreBuffer(services, account_id)
    async with gmail_errors_as_job_errors(services.engine, account_id):
        client = await services.gmail.for_account(account_id)
        try:
            async with aclosing(client.iter_messages(missing, format="raw")) as results:
                async for message_id, result in results:
                    if isinstance(result, Message):
                        await writer.add(result)
                    else:
                        _classify(account_id, message_id, result, outcome)
        finally:
            await writer.flush()  # what was fetched is kept, even when the job stops early
    outcome.stored = writer.stored

    await ctx.step("ingested", outcome.detail())
    if outcome.failed:
        delays = [e.retry_after for _, e in outcome.failed if e.retry_after]
        first_id, first = outcome.failed[0]
        raise Retryable(
            f"{len(outcome.failed)} of {len(missing)} fetches failed, first {first_id}: {first}",
            delay=max(delays) if delays else None,
        )
    if outcome.rejected:
        reasons = "; ".join(f"{mid}: {err.status} {err.reason} {err.message}" for mid, err in outcome.rejected[:5])
        raise Fatal(f"Gmail refused {len(outcome.rejected)} of {len(missing)} fetches: {reasons}")


def _classify(account_id: int, message_id: str, error: GmailError, outcome: _Outcome) -> None:
    if error.is_not_found:
        outcome.gone += 1
        log.info("ingest.gone account_id=%s message_id=%s", account_id, message_id)
    elif error.is_auth_revoked or error.is_access_denied or error.status == 401:
        raise error  # the whole account is affected: mapped once by gmail_errors_as_job_errors
    elif error.is_transient or error.reason == MALFORMED:
        outcome.failed.append((message_id, error))
        log.warning("ingest.fetch_failed account_id=%s message_id=%s error=%s", account_id, message_id, error)
    else:
        outcome.rejected.append((message_id, error))
        log.error("ingest.fetch_refused account_id=%s message_id=%s error=%s", account_id, message_id, error)


class _StoreBuffer:
    """Parsed messages waiting for their write; flushed in one transaction when the buffer is full."""

    def __init__(self, services: SyncServices, account_id: int) -> None:
        self._services = services
        self._account_id = account_id
        self._pending: list[tuple[Message, ParsedMessage]] = []
        self._bytes = 0
        self.stored = 0

    async def add(self, msg: Message) -> None:
        raw = msg.raw or b""
        if len(raw) > _PARSE_INLINE_MAX_BYTES:
            parsed = await asyncio.to_thread(parse_message, raw)
        else:
            parsed = parse_message(raw)
        self._pending.append((msg, parsed))
        self._bytes += len(raw)
        if len(self._pending) >= STORE_BATCH_MESSAGES or self._bytes >= STORE_BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        async with self._services.engine.begin() as conn:
            await upsert_messages(conn, self._account_id, self._pending)
        self.stored += len(self._pending)
        self._pending.clear()
        self._bytes = 0
