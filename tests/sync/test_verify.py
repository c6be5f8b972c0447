"""`verify` through the Gmail API: silent on a converged mirror, and it names every kind of drift."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from fidelity_kit import assert_no_drift, backfill, dated_emulator, harness_via, verify_via_api
from rich.console import Console
from sync_harness import Harness

from mailtide.commands.verify import run_verify
from mailtide.config import load_settings
from mailtide.db.schema import messages, threads
from mailtide.sync import jobtypes
from mailtide.verify import verify_account


async def test_verify_names_each_kind_of_drift(database_url: str) -> None:
    with dated_emulator(10) as emulator:
        async with harness_via(emulator, database_url) as h:
            await backfill(h)
            report = await assert_no_drift(h)
            assert (report.on_server, report.mirrored, report.content_checked) == (10, 10, 10)

            ids = sorted(emulator.mailbox.message_ids())
            async with h.rt.engine.begin() as conn:
                mine = (messages.c.account_id == h.account_id)
                await conn.execute(messages.update().where(mine, messages.c.id == ids[0]).values(deleted=True))
                await conn.execute(messages.update().where(mine, messages.c.id == ids[1]).values(thread_id="0" * 16))
                await conn.execute(messages.update().where(mine, messages.c.id == ids[2]).values(label_ids=["SPAM"]))
                await conn.execute(messages.update().where(mine, messages.c.id == ids[3]).values(raw_sha256="0" * 64))
                await conn.execute(
                    messages.insert().values(
                        account_id=h.account_id, id="f" * 16, thread_id="f" * 16, label_ids=["INBOX"],
                        history_id=1, raw_sha256="0" * 64, updated_at=0.0,
                    )
                )
                thread_of_4 = emulator.mailbox.get_message(ids[4]).thread_id
                await conn.execute(
                    threads.update().where(threads.c.account_id == h.account_id, threads.c.id == thread_of_4)
                    .values(message_count=99)
                )

            drift = (await verify_via_api(h)).drift
            assert drift.missing == [ids[0]]
            assert drift.extra == ["f" * 16]
            assert drift.thread_mismatch == [ids[1]]
            assert drift.label_mismatch == [ids[2]]
            assert drift.content_mismatch == [ids[3]]
            # Rows that disagree with their messages: the corrupted count, the thread that lost
            # ids[1] (and its new thread without a row), the extra message's thread, ids[0]'s thread.
            assert thread_of_4 in drift.thread_rows and "0" * 16 in drift.thread_rows
            assert "f" * 16 in drift.thread_rows

            # Without hashing, content drift goes unseen; the rest is found by listing alone.
            sampled = await verify_via_api(h, full=False)
            assert sampled.content_checked == 9  # the default sample (20) covers all 9 listed and mirrored
            client = await h.rt.services.gmail.for_account(h.account_id)
            listed_only = await verify_account(h.rt.engine, client, h.account_id, sample=0)
            assert listed_only.content_checked == 0 and listed_only.drift.content_mismatch == []
            assert listed_only.drift.label_mismatch == [ids[2]]


async def test_a_label_labels_list_hides_is_caught_by_the_raw_check(database_url: str) -> None:
    """Label membership by listing cannot see a label labels.list does not return; the raw fetch does."""
    with dated_emulator(6) as emulator:
        async with harness_via(emulator, database_url) as h:
            await backfill(h)
            mailbox = emulator.mailbox
            hidden = mailbox.create_label("hidden")
            target = sorted(mailbox.message_ids())[0]
            mailbox.modify_labels(target, add=[hidden])
            mailbox.delete_label(hidden, keep_on_messages=True)  # not synced yet: the mirror lacks it
            client = await h.rt.services.gmail.for_account(h.account_id)
            assert (await verify_account(h.rt.engine, client, h.account_id, sample=0)).converged
            assert (await verify_via_api(h)).drift.label_mismatch == [target]


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mailtide", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_verify_command_and_its_exit_status(tmp_path: Path) -> None:
    """The command through the console entry point once (exit 0); drift and an unknown account
    through the same function in-process (exit 1 and 2)."""
    database_url = f"sqlite:///{tmp_path / 'mirror.db'}"
    with dated_emulator(5) as emulator:
        env = {
            **os.environ,
            "MAILTIDE_GMAIL_API_URL": emulator.server.url,
            "MAILTIDE_TOKEN_URL": f"{emulator.server.url}/token",
            "MAILTIDE_DATA_DIR": str(tmp_path),
            "COLUMNS": "120",
        }
        async with harness_via(emulator, database_url) as h:
            await backfill(h)
        status, out = await run_cli("--db", database_url, "verify", "--full", env=env)
        assert status == 0, out
        assert "no drift" in out and "alice@mailtide.test" in out

        settings = load_settings(
            database_url=database_url,
            gmail_api_url=emulator.server.url,
            token_url=f"{emulator.server.url}/token",
            data_dir=tmp_path,
        )
        emulator.mailbox.delete_message(sorted(emulator.mailbox.message_ids())[0])  # not synced
        console = Console(file=io.StringIO(), width=120)
        assert await run_verify(settings, "alice@mailtide.test", full=False, sample=5, out=console) == 1
        printed = console.file.getvalue()  # type: ignore[attr-defined]
        assert "DRIFT" in printed and "extra" in printed
        assert await run_verify(settings, "nobody@mailtide.test", full=False, sample=5, out=console) == 2


async def test_thread_rows_follow_adds_relabels_and_deletes(database_url: str) -> None:
    """Thread rows (count, label union, newest date, snippet) follow their messages; a thread whose
    last message is deleted disappears."""
    with dated_emulator(3) as emulator:
        async with harness_via(emulator, database_url) as h:
            await backfill(h)
            mailbox = emulator.mailbox
            first = mailbox.add_message(note("plans"), internal_date_ms=1_000_000)
            thread_id = mailbox.get_message(first).thread_id
            reply = mailbox.add_message(note("Re: plans"), internal_date_ms=2_000_000, thread_id=thread_id)
            alone = mailbox.add_message(note("something else"), label_ids=["INBOX"])
            alone_thread = mailbox.get_message(alone).thread_id
            await sync_history(h)
            assert await thread_row(h, thread_id) == (2, ["INBOX", "UNREAD"], 2_000_000)

            mailbox.modify_labels(reply, add=["STARRED"], remove=["UNREAD"])
            mailbox.delete_message(first)
            mailbox.delete_message(alone)
            await sync_history(h)
            assert await thread_row(h, thread_id) == (1, ["INBOX", "STARRED"], 2_000_000)
            assert await thread_row(h, alone_thread) is None
            await assert_no_drift(h)  # includes the thread-row check


def note(subject: str) -> bytes:
    headers = f"From: Ann <ann@example.org>\r\nTo: alice@mailtide.test\r\nSubject: {subject}\r\n"
    return f"{headers}\r\nabout {subject}\r\n".encode()


async def sync_history(h: Harness) -> None:
    await jobtypes.request_history_sync(h.rt.queue, h.account_id)
    await h.settle()


async def thread_row(h: Harness, thread_id: str) -> tuple[int, list[str], int] | None:
    async with h.rt.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(threads.c.message_count, threads.c.label_ids, threads.c.last_message_at)
                .where(threads.c.account_id == h.account_id, threads.c.id == thread_id)
            )
        ).first()
    return None if row is None else (row.message_count, sorted(row.label_ids), row.last_message_at)
