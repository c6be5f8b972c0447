"""Compare a mirror with the mailbox it mirrors and report drift by kind.

Two entry points. `compare` takes facts gathered elsewhere (tests and the demo hold the emulator's
own view of the mailbox). `verify_account` asks the server itself through the Gmail API, as
`mailtide verify` does: ids and thread ids from messages.list (includeSpamTrash), label sets by
listing each label's ids (5 quota units per 500 ids), and raw-byte hashes from messages.get
format=raw (20 units each) for a random sample, or for every message with `full`. It also checks
the mirror's own thread rows against its messages.

Run it on an idle account: a change made on the server while it runs shows up as drift until the
next sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import messages, threads
from mailtide.gmail.client import GmailClient
from mailtide.gmail.errors import GmailError
from mailtide.store.accounts import get_account
from mailtide.sync.listing import Scope, label_membership, list_ids

DEFAULT_SAMPLE = 20
# messages.get calls in flight at once (the client caps concurrency per user as well); also bounds
# how many raw messages are held in memory together.
_FETCH_CHUNK = 25


@dataclass(frozen=True)
class MessageFacts:
    thread_id: str
    label_ids: tuple[str, ...]
    raw_sha256: str | None


@dataclass
class Drift:
    missing: list[str] = field(default_factory=list)  # on the server, not in the mirror
    extra: list[str] = field(default_factory=list)  # in the mirror, not on the server
    thread_mismatch: list[str] = field(default_factory=list)
    label_mismatch: list[str] = field(default_factory=list)
    content_mismatch: list[str] = field(default_factory=list)
    thread_rows: list[str] = field(default_factory=list)  # thread ids whose row disagrees with its messages

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.by_kind().values())

    def by_kind(self) -> dict[str, list[str]]:
        return {
            "missing": self.missing,
            "extra": self.extra,
            "thread": self.thread_mismatch,
            "labels": self.label_mismatch,
            "content": self.content_mismatch,
            "thread rows": self.thread_rows,
        }


def compare(server: dict[str, MessageFacts], mirror: dict[str, MessageFacts]) -> Drift:
    drift = Drift()
    drift.missing = sorted(set(server) - set(mirror))
    drift.extra = sorted(set(mirror) - set(server))
    for mid in sorted(set(server) & set(mirror)):
        want, have = server[mid], mirror[mid]
        if want.thread_id != have.thread_id:
            drift.thread_mismatch.append(mid)
        if want.label_ids != have.label_ids:
            drift.label_mismatch.append(mid)
        if want.raw_sha256 is not None and have.raw_sha256 is not None and want.raw_sha256 != have.raw_sha256:
            drift.content_mismatch.append(mid)
    return drift


async def mirror_facts(engine: AsyncEngine, account_id: int) -> dict[str, MessageFacts]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.id, messages.c.thread_id, messages.c.label_ids, messages.c.raw_sha256)
            .where(messages.c.account_id == account_id)
            .where(messages.c.deleted.is_(False))
        )
        return {r.id: MessageFacts(r.thread_id, tuple(sorted(r.label_ids)), r.raw_sha256) for r in rows}


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


async def thread_row_drift(engine: AsyncEngine, account_id: int) -> list[str]:
    """Thread ids whose stored row does not match its live messages (count, label union, newest
    date), threads with messages but no row, and rows left without messages."""
    expected: dict[str, tuple[int, set[str], int | None]] = {}
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.thread_id, messages.c.label_ids, messages.c.internal_date)
            .where(messages.c.account_id == account_id)
            .where(messages.c.deleted.is_(False))
        )
        for row in rows:
            count, labels, newest = expected.get(row.thread_id, (0, set(), None))
            dates = [d for d in (newest, row.internal_date) if d is not None]
            expected[row.thread_id] = (count + 1, labels | set(row.label_ids), max(dates) if dates else None)
        stored = {
            r.id: (r.message_count, set(r.label_ids), r.last_message_at)
            for r in await conn.execute(
                sa.select(threads.c.id, threads.c.message_count, threads.c.label_ids, threads.c.last_message_at)
                .where(threads.c.account_id == account_id)
            )
        }
    return sorted(tid for tid in set(expected) | set(stored) if expected.get(tid) != stored.get(tid))


@dataclass
class VerifyReport:
    account_id: int
    email: str
    status: str
    drift: Drift
    on_server: int  # messages.list, whole mailbox with SPAM and TRASH
    in_scope: int  # what the account's backfill options ask to mirror
    mirrored: int  # live messages in the mirror
    labels_listed: int
    content_checked: int  # messages whose raw bytes were fetched and hashed

    @property
    def converged(self) -> bool:
        return self.drift.total == 0


async def verify_account(
    engine: AsyncEngine,
    client: GmailClient,
    account_id: int,
    *,
    full: bool = False,
    sample: int = DEFAULT_SAMPLE,
    seed: int | None = None,
) -> VerifyReport:
    """Compare the account's mirror with Gmail through the API (see the module doc for the cost).

    Raises GmailError when the server cannot be read, InvalidBackfillWindow for a bad stored window.
    Messages outside the account's scope (older than its window, or in SPAM/TRASH when those are
    excluded) are not required in the mirror, but a mirrored one must still exist on the server."""
    account = await get_account(engine, account_id)
    scope = Scope.of(account)
    on_server = await list_ids(client)
    in_scope = set(on_server)
    if not scope.is_everything:
        in_scope = set(await list_ids(client, query=scope.query, include_spam_trash=scope.include_spam_trash))
    labels = await client.list_labels()
    listable = {label.id for label in labels}
    membership = await label_membership(client, labels)
    mirror = await mirror_facts(engine, account_id)

    drift = Drift()
    drift.missing = sorted(in_scope - set(mirror))
    extra = set(mirror) - set(on_server)
    common = sorted(set(mirror) & set(on_server))
    threads_off: set[str] = set()
    labels_off: set[str] = set()
    for mid in common:
        have = mirror[mid]
        if on_server[mid] != have.thread_id:
            threads_off.add(mid)
        # Labels labels.list does not return cannot be listed; the raw check below compares those.
        if sorted(membership.get(mid, ())) != [lid for lid in have.label_ids if lid in listable]:
            labels_off.add(mid)

    chosen = common if full else random.Random(seed).sample(common, min(max(sample, 0), len(common)))
    content_off: set[str] = set()
    for start in range(0, len(chosen), _FETCH_CHUNK):
        fetched = await asyncio.gather(*(_fetch_raw(client, mid) for mid in chosen[start : start + _FETCH_CHUNK]))
        for mid, server_message in zip(chosen[start : start + _FETCH_CHUNK], fetched, strict=True):
            if server_message is None:  # deleted since it was listed
                extra.add(mid)
                continue
            thread_id, label_ids, raw_sha256 = server_message
            have = mirror[mid]
            if raw_sha256 != have.raw_sha256:
                content_off.add(mid)
            if thread_id != have.thread_id:
                threads_off.add(mid)
            if label_ids != have.label_ids:
                labels_off.add(mid)

    drift.extra = sorted(extra)
    drift.thread_mismatch = sorted(threads_off - extra)
    drift.label_mismatch = sorted(labels_off - extra)
    drift.content_mismatch = sorted(content_off)
    drift.thread_rows = await thread_row_drift(engine, account_id)
    return VerifyReport(
        account_id=account.id,
        email=account.email,
        status=account.status,
        drift=drift,
        on_server=len(on_server),
        in_scope=len(in_scope),
        mirrored=len(mirror),
        labels_listed=len(labels),
        content_checked=len(chosen),
    )


async def _fetch_raw(client: GmailClient, message_id: str) -> tuple[str, tuple[str, ...], str] | None:
    """(thread id, sorted label ids, sha256 of the raw bytes), or None when the message is gone."""
    try:
        message = await client.get_message(message_id, format="raw")
    except GmailError as exc:
        if exc.is_not_found:
            return None
        raise
    return message.thread_id, tuple(sorted(set(message.label_ids))), sha256_hex(message.raw or b"")
