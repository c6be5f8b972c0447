"""Storing messages: versioned batch writes, tombstones, attachments and threads, and statements that
SQLAlchemy compiles once (on SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.db.schema import attachments, labels, messages, threads
from mailtide.gmail.models import Label, Message
from mailtide.mail import ParsedMessage, parse_message
from mailtide.store.accounts import create_account
from mailtide.store.labels import replace_labels
from mailtide.store.messages import (
    LabelChangeResult,
    apply_label_change,
    mark_deleted,
    refresh_threads,
    upsert_message,
    upsert_messages,
)

SQL_LOG = "sqlalchemy.engine.Engine"


def fetched(
    message_id: str,
    *,
    thread_id: str = "t1",
    version: int = 100,
    date: int = 1_000,
    label_ids: tuple[str, ...] = ("INBOX",),
    subject: str = "hello",
    files: tuple[str, ...] = (),
) -> tuple[Message, ParsedMessage]:
    """A message as messages.get returns it, with its parse."""
    mail = EmailMessage()
    mail["Subject"] = subject
    mail["From"] = "a@example.com"
    mail["Message-ID"] = f"<{message_id}@example.com>"
    mail.set_content(f"body of {message_id} ({subject})")
    for name in files:
        mail.add_attachment(b"data", maintype="application", subtype="octet-stream", filename=name)
    raw = mail.as_bytes()
    msg = Message(
        id=message_id,
        threadId=thread_id,
        labelIds=list(label_ids),
        snippet=subject,
        historyId=version,
        internalDate=date,
        sizeEstimate=len(raw),
        raw=raw,
    )
    return msg, parse_message(raw)


@pytest.fixture
async def account_id(engine: AsyncEngine) -> int:
    return await create_account(engine, "store@mailtide.test", client_id="c", client_secret="s", refresh_token="r")


async def message_row(engine: AsyncEngine, account_id: int, message_id: str) -> sa.Row:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(messages).where(messages.c.account_id == account_id, messages.c.id == message_id)
            )
        ).one()


async def thread_rows(engine: AsyncEngine, account_id: int) -> dict[str, sa.Row]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(threads).where(threads.c.account_id == account_id))
        return {r.id: r for r in rows}


async def attachment_names(engine: AsyncEngine, account_id: int, message_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(attachments.c.filename)
            .where(attachments.c.account_id == account_id, attachments.c.message_id == message_id)
            .order_by(attachments.c.part_path)
        )
        return [r.filename for r in rows]


async def test_a_batch_writes_only_versions_newer_than_the_mirror(engine: AsyncEngine, account_id: int) -> None:
    async with engine.begin() as conn:
        first = await upsert_messages(
            conn,
            account_id,
            [fetched("m1", version=100, files=("a.bin",)), fetched("m2", version=100, files=("b.bin",))],
        )
    assert first == {"m1", "m2"}

    async with engine.begin() as conn:
        second = await upsert_messages(
            conn,
            account_id,
            [
                fetched("m1", version=99, subject="older", files=("stale.bin",)),  # older than stored: skipped
                fetched("m2", version=100, subject="same version", files=("c.bin",)),  # as new: written
                fetched("m3", version=50, label_ids=("INBOX", "Label_9")),  # new message
            ],
        )
    assert second == {"m2", "m3"}
    assert (await message_row(engine, account_id, "m1")).subject == "hello"
    assert await attachment_names(engine, account_id, "m1") == ["a.bin"]
    assert (await message_row(engine, account_id, "m2")).subject == "same version"
    assert await attachment_names(engine, account_id, "m2") == ["c.bin"]
    async with engine.connect() as conn:
        placeholder = (await conn.execute(sa.select(labels.c.placeholder).where(labels.c.id == "Label_9"))).scalar_one()
    assert placeholder is True


async def test_a_tombstone_is_never_revived(engine: AsyncEngine, account_id: int) -> None:
    async with engine.begin() as conn:
        assert await upsert_message(conn, account_id, *fetched("m1", version=100, files=("a.bin",)))
        await mark_deleted(conn, account_id, ["m1", "never-seen"], 200, tombstone_unknown=True)
    async with engine.begin() as conn:
        written = await upsert_messages(
            conn, account_id, [fetched("m1", version=300), fetched("never-seen", version=300)]
        )
    assert written == set()
    for message_id in ("m1", "never-seen"):
        row = await message_row(engine, account_id, message_id)
        assert row.deleted is True
        assert row.raw_compressed is None
        assert await attachment_names(engine, account_id, message_id) == []
    assert await thread_rows(engine, account_id) == {}


async def test_an_id_given_twice_keeps_its_newest_version(engine: AsyncEngine, account_id: int) -> None:
    async with engine.begin() as conn:
        written = await upsert_messages(
            conn,
            account_id,
            [
                fetched("m1", version=120, subject="newest"),
                fetched("m1", version=110, subject="older"),
                fetched("m2", version=100, subject="first"),
                fetched("m2", version=100, subject="second"),  # same version: the later one, as written in turn
            ],
        )
    assert written == {"m1", "m2"}
    row = await message_row(engine, account_id, "m1")
    assert (row.subject, row.history_id) == ("newest", 120)
    assert (await message_row(engine, account_id, "m2")).subject == "second"


async def test_threads_follow_their_live_messages(engine: AsyncEngine, account_id: int) -> None:
    batch = [
        fetched("old", thread_id="t1", date=1_000, subject="first", label_ids=("INBOX",)),
        fetched("new", thread_id="t1", date=2_000, subject="re: first", label_ids=("IMPORTANT",)),
        fetched("solo", thread_id="t2", date=1_500, subject="alone"),
    ]
    # More messages than one upsert statement takes, each in a thread of its own.
    batch += [fetched(f"x{i}", thread_id=f"x{i}", version=100 + i) for i in range(40)]
    async with engine.begin() as conn:
        assert len(await upsert_messages(conn, account_id, batch)) == 43

    found = await thread_rows(engine, account_id)
    assert len(found) == 42
    t1 = found["t1"]
    assert (t1.subject, t1.snippet, t1.message_count, t1.last_message_at) == ("first", "re: first", 2, 2_000)
    assert sorted(t1.label_ids) == ["IMPORTANT", "INBOX"]

    async with engine.begin() as conn:
        await mark_deleted(conn, account_id, ["new", "solo"], 500, tombstone_unknown=False)
    found = await thread_rows(engine, account_id)
    assert "t2" not in found
    assert (found["t1"].message_count, found["t1"].snippet, found["t1"].label_ids) == (1, "first", ["INBOX"])


async def test_storing_runs_only_statements_sqlalchemy_has_cached(
    engine: AsyncEngine, account_id: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Each write on the store's hot paths must have a statement-cache key: one without ("[no key]"
    in SQLAlchemy's log, as dialect INSERT ... ON CONFLICT statements have) is compiled again at
    every execution, which made storing a message cost ~11 ms of CPU. The second round of the same
    work must find every statement compiled already."""

    async def one_round(prefix: str, version: int) -> None:
        async with engine.begin() as conn:
            batch = [
                fetched(f"{prefix}{i}", thread_id=f"{prefix}t", version=version, files=("f.bin",)) for i in range(3)
            ]
            assert len(await upsert_messages(conn, account_id, batch)) == 3
            result = await apply_label_change(
                conn, account_id, f"{prefix}0", add=[f"Label_{prefix}"], version=version + 1
            )
            assert result is LabelChangeResult.APPLIED
            await mark_deleted(conn, account_id, [f"{prefix}1", f"{prefix}-gone"], version + 2, tombstone_unknown=True)
            await refresh_threads(conn, account_id, [f"{prefix}t"])
        await replace_labels(engine, account_id, [Label(id="INBOX", name="INBOX", type="system")])

    await one_round("a", 100)  # compiles what it needs
    caplog.set_level(logging.INFO, logger=SQL_LOG)
    await one_round("b", 200)

    statuses = _cache_statuses(caplog.records)
    assert statuses, "no SQL was logged"
    assert [(status, sql) for status, sql in statuses if status != "cached since"] == []


def _cache_statuses(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(cache status, statement) for every statement SQLAlchemy logged: it logs the SQL, then its
    parameters prefixed by "[cached since ...]", "[generated in ...]", "[no key ...]" and the like."""
    found = []
    statement = ""
    for record in records:
        if record.name != SQL_LOG:
            continue
        text = record.getMessage()
        status = _CACHE_STATUS.match(text)
        if status and statement:
            found.append((status.group(1), statement))
            statement = ""
        elif text not in ("BEGIN (implicit)", "COMMIT", "ROLLBACK"):
            statement = " ".join(text.split())[:120]
    return found


_CACHE_STATUS = re.compile(r"\[(cached since|generated in|no key|raw sql|dialect \S+ does not support caching)")
