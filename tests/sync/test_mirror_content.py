"""What ingest stores besides labels: attachment rows from the parse (gone with the message's
tombstone), and malformed mail kept byte for byte with parse_error set."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from fidelity_kit import assert_no_drift, backfill, dated_emulator, harness_via
from sync_harness import Harness

from mailtide.db.schema import attachments, messages
from mailtide.sync import jobtypes

MIME = Path(__file__).parents[1] / "data" / "mime"


async def attachment_rows(h: Harness, message_id: str) -> list[tuple[str, str | None, str, int, bool]]:
    async with h.rt.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(attachments)
            .where(attachments.c.account_id == h.account_id, attachments.c.message_id == message_id)
            .order_by(attachments.c.part_path)
        )
        return [(r.part_path, r.filename, r.content_type, r.size, r.inline) for r in rows]


async def test_attachment_rows_follow_the_message(database_url: str) -> None:
    with dated_emulator(2) as emulator:
        async with harness_via(emulator, database_url) as h:
            mailbox = emulator.mailbox
            with_files = mailbox.add_message((MIME / "ruby-mail--attachment_message_rfc822.eml").read_bytes())
            images = mailbox.add_message((MIME / "nodemailer--nodemailer.eml").read_bytes())
            inline_file = mailbox.add_message((MIME / "ruby-mail--attachment_with_quoted_filename.eml").read_bytes())
            await backfill(h)

            nested = await attachment_rows(h, with_files)
            assert [row[0] for row in nested][:1] == ["2"] and any(row[2] == "message/rfc822" for row in nested)
            assert any(path.startswith("2.") for path, *_ in nested), "the attached message's own parts"
            files = await attachment_rows(h, images)
            assert [(path, name) for path, name, *_ in files] == [
                ("1.3.2", "image.png"), ("1.3.3", "nyan cat ✔.gif"), ("2", "notes.txt")
            ]
            assert all(size > 0 for *_, size, _ in files)
            assert [row[4] for row in await attachment_rows(h, inline_file)] == [True]  # disposition inline

            mailbox.delete_message(with_files)
            await jobtypes.request_history_sync(h.rt.queue, h.account_id)
            await h.settle()
            assert await attachment_rows(h, with_files) == []
            assert await attachment_rows(h, images) == files
            await assert_no_drift(h)


async def test_malformed_mail_is_stored_raw_with_its_parse_error(database_url: str) -> None:
    broken = (
        b"Subject : =?x-unknown?B?////?=\r\nContent-Type: multipart/mixed; boundary=never\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n\x00\xff\xfe not base64 at all\rbare CR\r\n"
    )
    with dated_emulator(1) as emulator:
        async with harness_via(emulator, database_url) as h:
            message_id = emulator.mailbox.add_message(broken)
            await backfill(h)
            async with h.rt.engine.connect() as conn:
                row = (await conn.execute(sa.select(messages).where(messages.c.id == message_id))).one()
            assert row.raw_size == len(broken) and row.parse_error
            assert "bare CR" in row.parse_error and "obsolete syntax" in row.parse_error
            report = await assert_no_drift(h)  # the raw bytes hash the same as Gmail's
            assert report.content_checked == 2
