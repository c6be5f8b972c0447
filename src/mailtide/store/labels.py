"""Labels of an account."""

from __future__ import annotations

import json
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.db.schema import labels, messages
from mailtide.gmail.models import Label
from mailtide.mail.charsets import clean_text
from mailtide.store.sql import now, upsert_sql

_LISTED_COLUMNS = (
    "account_id", "id", "name", "type", "message_list_visibility", "label_list_visibility", "placeholder", "updated_at"
)
# labels.list's answer overwrites what is stored, placeholders included (their rows say placeholder=False).
_UPSERT_LISTED = upsert_sql(labels, _LISTED_COLUMNS, update=_LISTED_COLUMNS[2:])
_PLACEHOLDER_COLUMNS = ("account_id", "id", "name", "type", "placeholder", "updated_at")
_INSERT_PLACEHOLDER = upsert_sql(labels, _PLACEHOLDER_COLUMNS)


async def replace_labels(engine: AsyncEngine, account_id: int, listed: list[Label]) -> None:
    """Make the stored labels equal to labels.list's answer, plus placeholders for the unlisted ids
    that mirrored messages carry."""
    async with engine.begin() as conn:
        if listed:
            await conn.execute(
                _UPSERT_LISTED,
                [
                    {
                        "account_id": account_id,
                        "id": label.id,
                        "name": clean_text(label.name),
                        "type": label.type,
                        "message_list_visibility": label.message_list_visibility,
                        "label_list_visibility": label.label_list_visibility,
                        "placeholder": False,
                        "updated_at": now(),
                    }
                    for label in listed
                ],
            )
        unlisted = (
            await conn.execute(
                sa.select(labels.c.id, labels.c.placeholder)
                .where(labels.c.account_id == account_id)
                .where(labels.c.id.not_in([label.id for label in listed]))
            )
        ).all()
        for label_id, placeholder in unlisted:
            # A label labels.list does not return stays while mirrored messages carry it (a hidden
            # label, or one deleted without being taken off its messages), as a placeholder keeping
            # its last known name; once no message carries it, it goes.
            if await _carried_by_a_message(conn, account_id, label_id):
                if not placeholder:
                    await conn.execute(
                        labels.update()
                        .where(labels.c.account_id == account_id, labels.c.id == label_id)
                        .values(placeholder=True, updated_at=now())
                    )
            else:
                await conn.execute(labels.delete().where(labels.c.account_id == account_id, labels.c.id == label_id))


async def _carried_by_a_message(conn: AsyncConnection, account_id: int, label_id: str) -> bool:
    # label_ids is a JSON list of strings; a text match on the quoted id finds it on both backends.
    quoted = json.dumps(label_id)
    pattern = "%" + quoted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    row = (
        await conn.execute(
            sa.select(messages.c.id)
            .where(messages.c.account_id == account_id)
            .where(messages.c.deleted.is_(False))
            .where(sa.cast(messages.c.label_ids, sa.Text).like(pattern, escape="\\"))
            .limit(1)
        )
    ).first()
    return row is not None


async def ensure_labels(conn: AsyncConnection, account_id: int, label_ids: Iterable[str]) -> None:
    """Create placeholder rows for label ids a message carries that labels.list did not return."""
    wanted = set(label_ids)
    if not wanted:
        return
    await conn.execute(
        _INSERT_PLACEHOLDER,
        [
            {"account_id": account_id, "id": lid, "name": lid, "type": "user", "placeholder": True, "updated_at": now()}
            for lid in sorted(wanted)
        ],
    )


async def label_ids(engine: AsyncEngine, account_id: int) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(labels.c.id).where(labels.c.account_id == account_id))
        return [r.id for r in rows]
