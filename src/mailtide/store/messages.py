"""Mirrored messages and threads, written under the versioned-write rule.

Every write carries a Gmail history id and applies only when it is not older than the stored version,
so a slow ingest never overwrites a newer label delta and replaying history twice is harmless.
A deletion leaves a tombstone that no later write can bring back (Gmail never reuses message ids).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.db.schema import attachments, messages, threads
from mailtide.gmail.models import Message
from mailtide.mail import Attachment, ParsedMessage
from mailtide.mail.charsets import clean_text
from mailtide.store.labels import ensure_labels
from mailtide.store.sql import chunks, now, numbered_rows, upsert_sql

# Parameter lists stay well under SQLite's limit on bound variables.
_ID_CHUNK = 500
# Messages per multi-row upsert statement (times 24 columns: 600 parameters).
_UPSERT_ROWS = 25
_KEY = ("account_id", "id")
# What storing a fetched message writes (see _message_row), under the versioned-write rule: a row is
# written only over an older or equal version that is not a tombstone.
_MESSAGE_COLUMNS = (
    *_KEY, "thread_id", "label_ids", "history_id", "internal_date", "size_estimate", "snippet",
    "message_id_header", "subject", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "date_header", "headers",
    "body_text", "body_html", "raw_compressed", "raw_sha256", "raw_size", "parse_error", "deleted", "updated_at",
)  # fmt: skip
_NEWER_AND_LIVE = "messages.history_id <= excluded.history_id AND NOT messages.deleted"
# A tombstone for an id the mirror never had; an existing row (live or not) is left as it is.
_TOMBSTONE_COLUMNS = (*_KEY, "thread_id", "label_ids", "history_id", "deleted", "updated_at")
_INSERT_TOMBSTONE = upsert_sql(messages, _TOMBSTONE_COLUMNS)
_THREAD_COLUMNS = (*_KEY, "subject", "snippet", "message_count", "last_message_at", "label_ids", "updated_at")
_UPSERT_THREAD = upsert_sql(threads, _THREAD_COLUMNS, update=_THREAD_COLUMNS[len(_KEY) :])
# Every lock in one round trip: unnest yields the keys in array order and the aggregate takes one lock
# per row in that order.
_LOCK_KEYS = sa.text("SELECT count(pg_advisory_xact_lock(key)) FROM unnest(:keys) AS key").bindparams(
    sa.bindparam("keys", type_=postgresql.ARRAY(sa.BigInteger))
)
# Column widths of the attachments table (PostgreSQL enforces them).
_PART_PATH_MAX = attachments.c.part_path.type.length or 64
_CONTENT_TYPE_MAX = attachments.c.content_type.type.length or 255


class LabelChangeResult(Enum):
    APPLIED = "applied"
    STALE = "stale"  # the stored version is already as new as the change
    MISSING = "missing"  # the mirror does not have the message yet
    DELETED = "deleted"  # the message is a tombstone


@dataclass(frozen=True)
class MirroredMessage:
    id: str
    thread_id: str
    label_ids: list[str]
    history_id: int
    deleted: bool


def compress_raw(raw: bytes) -> bytes:
    return zlib.compress(raw, 6)


def decompress_raw(data: bytes) -> bytes:
    return zlib.decompress(data)


async def known_ids(engine: AsyncEngine, account_id: int, ids: Iterable[str]) -> set[str]:
    """Ids the mirror already holds, tombstones included (neither needs fetching)."""
    found: set[str] = set()
    async with engine.connect() as conn:
        for part in chunks(list(ids), _ID_CHUNK):
            rows = await conn.execute(
                sa.select(messages.c.id).where(messages.c.account_id == account_id).where(messages.c.id.in_(part))
            )
            found.update(r.id for r in rows)
    return found


@functools.cache
def upsert_messages_statement(rows: int) -> sa.Executable:
    """The versioned upsert of `rows` messages in one statement (built once per row count); RETURNING
    gives the ids written."""
    return upsert_sql(
        messages,
        _MESSAGE_COLUMNS,
        update=_MESSAGE_COLUMNS[len(_KEY) :],
        where=_NEWER_AND_LIVE,
        returning=["id"],
        rows=rows,
    )


async def upsert_message(conn: AsyncConnection, account_id: int, msg: Message, parsed: ParsedMessage) -> bool:
    """Insert or update a fetched message unless the mirror holds a newer version or a tombstone."""
    return msg.id in await upsert_messages(conn, account_id, [(msg, parsed)])


async def upsert_messages(
    conn: AsyncConnection, account_id: int, fetched: Sequence[tuple[Message, ParsedMessage]]
) -> set[str]:
    """Insert or update fetched messages, each unless the mirror holds a newer version of it or a
    tombstone; then their attachments and threads. Returns the ids written.

    A few statements for the whole batch instead of a few per message. An id given twice is
    written once, with its newest version (what writing them one after the other would leave).
    Rows go in id order, so concurrent batches lock common rows in the same order."""
    newest = _newest_per_id(fetched)
    if not newest:
        return set()
    await ensure_labels(conn, account_id, {lid for msg, _ in newest.values() for lid in msg.label_ids})
    rows = [_message_row(account_id, *newest[mid]) for mid in sorted(newest)]
    written: set[str] = set()
    for part in chunks(rows, _UPSERT_ROWS):
        result = await conn.execute(upsert_messages_statement(len(part)), numbered_rows(part))
        written.update(result.scalars())
    if written:
        await replace_attachments(conn, account_id, {mid: newest[mid][1].attachments for mid in sorted(written)})
        await refresh_threads(conn, account_id, {newest[mid][0].thread_id for mid in written})
    return written


def _newest_per_id(fetched: Iterable[tuple[Message, ParsedMessage]]) -> dict[str, tuple[Message, ParsedMessage]]:
    newest: dict[str, tuple[Message, ParsedMessage]] = {}
    for msg, parsed in fetched:
        kept = newest.get(msg.id)
        if kept is None or msg.history_id >= kept[0].history_id:
            newest[msg.id] = (msg, parsed)
    return newest


def _message_row(account_id: int, msg: Message, parsed: ParsedMessage) -> dict[str, Any]:
    raw = msg.raw or b""
    return {
        "account_id": account_id,
        "id": msg.id,
        "thread_id": msg.thread_id,
        "label_ids": sorted(set(msg.label_ids)),
        "history_id": msg.history_id,
        "internal_date": msg.internal_date,
        "size_estimate": msg.size_estimate,
        "snippet": clean_text(msg.snippet),  # API text too may hold NUL, which PostgreSQL refuses
        "message_id_header": parsed.message_id_header,
        "subject": parsed.subject,
        "from_addr": parsed.from_addr,
        "to_addrs": parsed.to_addrs,
        "cc_addrs": parsed.cc_addrs,
        "bcc_addrs": parsed.bcc_addrs,
        "date_header": parsed.date_header,
        "headers": [list(h) for h in parsed.headers],
        "body_text": parsed.body_text,
        "body_html": parsed.body_html,
        "raw_compressed": compress_raw(raw),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
        "raw_size": len(raw),
        "parse_error": parsed.parse_error,
        "deleted": False,
        "updated_at": now(),
    }


async def replace_attachments(conn: AsyncConnection, account_id: int, found: dict[str, Iterable[Attachment]]) -> int:
    """Make each message's attachment rows equal to what the parser found (`found`: message id ->
    attachments); returns rows written.

    A part path too long for the column (only absurd nesting produces one) is left out."""
    await delete_attachments(conn, account_id, list(found))
    rows = [
        {
            "account_id": account_id,
            "message_id": message_id,
            "part_path": item.part_path,
            "filename": item.filename,
            "content_type": item.content_type[:_CONTENT_TYPE_MAX],
            "size": item.size,
            "content_id": item.content_id,
            "inline": item.inline,
        }
        for message_id, parts in found.items()
        for item in {a.part_path: a for a in parts}.values()
        if len(item.part_path) <= _PART_PATH_MAX
    ]
    if rows:
        await conn.execute(attachments.insert(), rows)
    return len(rows)


async def delete_attachments(conn: AsyncConnection, account_id: int, message_ids: list[str]) -> None:
    for part in chunks(message_ids, _ID_CHUNK):
        await conn.execute(
            attachments.delete()
            .where(attachments.c.account_id == account_id)
            .where(attachments.c.message_id.in_(part))
        )


async def mark_deleted(
    conn: AsyncConnection,
    account_id: int,
    message_ids: Iterable[str],
    version: int,
    *,
    tombstone_unknown: bool,
) -> int:
    """Tombstone messages (raw and parsed content dropped).

    With `tombstone_unknown` (a history messagesDeleted record, which is authoritative), ids the mirror
    never had get a tombstone too, so an ingest of the same id still in flight cannot bring it back.
    A 404 from messages.get is not that certain (Gmail can announce a message before it can be
    fetched), so the ingest path passes False."""
    ids = sorted(set(message_ids))
    if not ids:
        return 0
    changed_threads: set[str] = set()
    count = 0
    for part in chunks(ids, _ID_CHUNK):
        rows = await conn.execute(
            sa.select(messages.c.id, messages.c.thread_id, messages.c.deleted)
            .where(messages.c.account_id == account_id)
            .where(messages.c.id.in_(part))
        )
        present = {r.id: r for r in rows}
        live = [i for i, r in present.items() if not r.deleted]
        changed_threads.update(present[i].thread_id for i in live)
        if live:
            await conn.execute(
                messages.update()
                .where(messages.c.account_id == account_id)
                .where(messages.c.id.in_(live))
                .values(
                    deleted=True,
                    history_id=sa.func.max(messages.c.history_id, version)
                    if conn.dialect.name == "sqlite"
                    else sa.func.greatest(messages.c.history_id, version),
                    raw_compressed=None,
                    body_text=None,
                    body_html=None,
                    headers=None,
                    label_ids=[],
                    updated_at=now(),
                )
            )
            await delete_attachments(conn, account_id, live)
            count += len(live)
        absent = [i for i in part if i not in present]
        if absent and tombstone_unknown:
            await conn.execute(
                _INSERT_TOMBSTONE,
                [
                    {
                        "account_id": account_id,
                        "id": i,
                        "thread_id": "",
                        "label_ids": [],
                        "history_id": version,
                        "deleted": True,
                        "updated_at": now(),
                    }
                    for i in absent
                ],
            )
    await refresh_threads(conn, account_id, changed_threads)
    return count


async def apply_label_change(
    conn: AsyncConnection,
    account_id: int,
    message_id: str,
    *,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
    version: int,
) -> LabelChangeResult:
    """Apply one labelsAdded/labelsRemoved record if it is newer than what the mirror holds."""
    row = (
        await conn.execute(
            sa.select(messages.c.label_ids, messages.c.history_id, messages.c.deleted, messages.c.thread_id)
            .where(messages.c.account_id == account_id)
            .where(messages.c.id == message_id)
        )
    ).first()
    if row is None:
        return LabelChangeResult.MISSING
    if row.deleted:
        return LabelChangeResult.DELETED
    if row.history_id >= version:
        return LabelChangeResult.STALE
    new_labels = sorted((set(row.label_ids) | set(add)) - set(remove))
    await ensure_labels(conn, account_id, add)
    await set_labels(conn, account_id, message_id, new_labels, version, expected_version=row.history_id)
    await refresh_threads(conn, account_id, [row.thread_id])
    return LabelChangeResult.APPLIED


async def set_labels(
    conn: AsyncConnection,
    account_id: int,
    message_id: str,
    label_ids: list[str],
    version: int,
    *,
    expected_version: int,
) -> bool:
    """Replace a message's labels, guarded on the version read before (optimistic concurrency)."""
    result = await conn.execute(
        messages.update()
        .where(messages.c.account_id == account_id)
        .where(messages.c.id == message_id)
        .where(messages.c.history_id == expected_version)
        .where(messages.c.deleted.is_(False))
        .values(label_ids=sorted(set(label_ids)), history_id=version, updated_at=now())
    )
    return result.rowcount > 0


async def live_messages(engine: AsyncEngine, account_id: int) -> dict[str, MirroredMessage]:
    """Every message the mirror holds that is not a tombstone."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(messages.c.id, messages.c.thread_id, messages.c.label_ids, messages.c.history_id)
            .where(messages.c.account_id == account_id)
            .where(messages.c.deleted.is_(False))
        )
        return {r.id: MirroredMessage(r.id, r.thread_id, list(r.label_ids), r.history_id, False) for r in rows}


async def count_messages(engine: AsyncEngine, account_id: int) -> int:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(messages)
                .where(messages.c.account_id == account_id)
                .where(messages.c.deleted.is_(False))
            )
        ).scalar_one()


async def has_mirrored_messages(conn: AsyncConnection, account_id: int) -> bool:
    """Whether the mirror holds any live message of the account."""
    query = sa.select(messages.c.id).where(messages.c.account_id == account_id).where(messages.c.deleted.is_(False))
    return (await conn.execute(query.limit(1))).first() is not None


async def _lock_threads(conn: AsyncConnection, account_id: int, thread_ids: list[str]) -> None:
    """PostgreSQL: take the threads' transaction-scoped advisory locks, in the order given."""
    if conn.dialect.name != "postgresql" or not thread_ids:
        return
    keys = []
    for thread_id in thread_ids:
        digest = hashlib.blake2b(f"thread:{account_id}:{thread_id}".encode(), digest_size=8).digest()
        keys.append(int.from_bytes(digest, "big", signed=True))
    await conn.execute(_LOCK_KEYS, {"keys": keys})


async def refresh_threads(conn: AsyncConnection, account_id: int, thread_ids: Iterable[str]) -> None:
    """Recompute thread rows from their live messages; a thread with none left disappears.

    Two transactions changing messages of one thread must not both recompute from their own view
    (the last write would miss the other's message): on PostgreSQL the recomputation holds a
    per-thread lock until commit, so the second one reads after the first committed. SQLite
    transactions are serialised already. Threads are locked in sorted order, all before reading."""
    for part in chunks(sorted(set(thread_ids) - {""}), _ID_CHUNK):
        await _lock_threads(conn, account_id, part)
        rows = await conn.execute(
            sa.select(
                messages.c.thread_id,
                messages.c.subject,
                messages.c.snippet,
                messages.c.internal_date,
                messages.c.label_ids,
            )
            .where(messages.c.account_id == account_id)
            .where(messages.c.thread_id.in_(part))
            .where(messages.c.deleted.is_(False))
            .order_by(messages.c.thread_id, messages.c.internal_date, messages.c.id)
        )
        updated_at = now()
        upserts = [
            _thread_row(account_id, thread_id, list(members), updated_at)
            for thread_id, members in itertools.groupby(rows, key=lambda r: r.thread_id)
        ]
        if upserts:
            await conn.execute(_UPSERT_THREAD, upserts)
        emptied = sorted(set(part) - {row["id"] for row in upserts})
        if emptied:
            await conn.execute(
                threads.delete().where(threads.c.account_id == account_id).where(threads.c.id.in_(emptied))
            )


def _thread_row(account_id: int, thread_id: str, members: list[sa.Row], updated_at: float) -> dict[str, Any]:
    """A thread's row from its live messages, oldest first."""
    return {
        "account_id": account_id,
        "id": thread_id,
        "subject": members[0].subject,
        "snippet": members[-1].snippet,
        "message_count": len(members),
        "last_message_at": members[-1].internal_date,
        "label_ids": sorted({lid for r in members for lid in r.label_ids}),
        "updated_at": updated_at,
    }
