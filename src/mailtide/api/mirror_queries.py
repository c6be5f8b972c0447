"""Read-only queries over the mirror for the API: message search with keyset pagination, one
message, one thread. Tombstones (deleted messages) are never shown."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import attachments, labels, messages, threads

_SUMMARY_COLUMNS = (
    messages.c.account_id,
    messages.c.id,
    messages.c.thread_id,
    messages.c.label_ids,
    messages.c.internal_date,
    messages.c.from_addr,
    messages.c.to_addrs,
    messages.c.subject,
    messages.c.snippet,
    messages.c.size_estimate,
)
_SORT_DATE = sa.func.coalesce(messages.c.internal_date, 0)


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class MessageFilter:
    account_id: int | None = None
    label: str | None = None  # a label id or name
    sender: str | None = None  # substring of From, case-insensitive
    subject: str | None = None  # substring of Subject, case-insensitive
    after_ms: int | None = None  # internalDate >= after
    before_ms: int | None = None  # internalDate < before


def encode_cursor(values: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, keys: tuple[str, ...]) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not one this API handed out") from None
    if not isinstance(data, dict) or set(data) != set(keys):
        raise BadCursor("cursor is not one this API handed out")
    return data


def _valid_message_cursor(c: dict[str, Any]) -> bool:
    return (
        isinstance(c["d"], int) and -(2**62) < c["d"] < 2**62
        and isinstance(c["a"], int) and 0 <= c["a"] < 2**31
        and isinstance(c["i"], str) and len(c["i"]) <= 64 and "\x00" not in c["i"]
    )


def _json_list_contains(column: sa.ColumnElement[Any], value: str) -> sa.ColumnElement[bool]:
    """A JSON list column holds `value`: matched on the stored text, portable across SQLite and PostgreSQL."""
    return sa.cast(column, sa.Text).contains(json.dumps(value), autoescape=True)


async def search_messages(
    engine: AsyncEngine, where: MessageFilter, *, limit: int, cursor: str | None
) -> tuple[list[sa.Row[Any]], str | None]:
    """Newest first (Gmail's internalDate), `limit` per page; returns the rows and the next cursor."""
    query = sa.select(*_SUMMARY_COLUMNS).where(messages.c.deleted.is_(False))
    if where.account_id is not None:
        query = query.where(messages.c.account_id == where.account_id)
    async with engine.connect() as conn:
        if where.label is not None:
            label_query = sa.select(labels.c.id).where(sa.or_(labels.c.id == where.label, labels.c.name == where.label))
            if where.account_id is not None:
                label_query = label_query.where(labels.c.account_id == where.account_id)
            label_ids = set((await conn.execute(label_query)).scalars()) or {where.label}
            query = query.where(sa.or_(*(_json_list_contains(messages.c.label_ids, lid) for lid in label_ids)))
        if where.sender:
            query = query.where(sa.func.lower(messages.c.from_addr).contains(where.sender.lower(), autoescape=True))
        if where.subject:
            query = query.where(sa.func.lower(messages.c.subject).contains(where.subject.lower(), autoescape=True))
        if where.after_ms is not None:
            query = query.where(messages.c.internal_date >= where.after_ms)
        if where.before_ms is not None:
            query = query.where(messages.c.internal_date < where.before_ms)
        if cursor is not None:
            c = decode_cursor(cursor, ("d", "a", "i"))
            if not _valid_message_cursor(c):
                raise BadCursor("cursor is not one this API handed out")
            sort_date = _SORT_DATE
            query = query.where(
                sa.or_(
                    sort_date < c["d"],
                    sa.and_(sort_date == c["d"], messages.c.account_id < c["a"]),
                    sa.and_(sort_date == c["d"], messages.c.account_id == c["a"], messages.c.id < c["i"]),
                )
            )
        query = query.order_by(_SORT_DATE.desc(), messages.c.account_id.desc(), messages.c.id.desc()).limit(limit + 1)
        rows = (await conn.execute(query)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor({"d": last.internal_date or 0, "a": last.account_id, "i": last.id})
    return rows, next_cursor


class Ambiguous(LookupError):
    pass


async def get_message(engine: AsyncEngine, message_id: str, account_id: int | None) -> sa.Row[Any] | None:
    """The live message with this id (in this account, or the only account that has it)."""
    query = sa.select(messages).where(messages.c.id == message_id, messages.c.deleted.is_(False))
    if account_id is not None:
        query = query.where(messages.c.account_id == account_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(query.limit(2))).all()
    if len(rows) > 1:
        raise Ambiguous(f"message {message_id} exists in several accounts: give account_id")
    return rows[0] if rows else None


async def get_attachments(engine: AsyncEngine, account_id: int, message_id: str) -> list[sa.Row[Any]]:
    async with engine.connect() as conn:
        return list(
            await conn.execute(
                sa.select(attachments)
                .where(attachments.c.account_id == account_id, attachments.c.message_id == message_id)
                .order_by(attachments.c.part_path)
            )
        )


async def get_thread(
    engine: AsyncEngine, thread_id: str, account_id: int | None
) -> tuple[sa.Row[Any], list[sa.Row[Any]]] | None:
    query = sa.select(threads).where(threads.c.id == thread_id)
    if account_id is not None:
        query = query.where(threads.c.account_id == account_id)
    async with engine.connect() as conn:
        found = (await conn.execute(query.limit(2))).all()
        if len(found) > 1:
            raise Ambiguous(f"thread {thread_id} exists in several accounts: give account_id")
        if not found:
            return None
        thread = found[0]
        members = (
            await conn.execute(
                sa.select(*_SUMMARY_COLUMNS)
                .where(messages.c.account_id == thread.account_id, messages.c.thread_id == thread_id)
                .where(messages.c.deleted.is_(False))
                .order_by(_SORT_DATE, messages.c.id)
            )
        ).all()
    return thread, list(members)
