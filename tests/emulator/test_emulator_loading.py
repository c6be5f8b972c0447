"""Loading mailboxes from real exports: SpamAssassin files, Takeout mbox, maildirs, eml trees."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from emulator_helpers import DEMO_DATA, SHARED_CORPUS, make_message

from mailtide.emulator import Mailbox, UnknownLabel, build_state_from_paths
from mailtide.emulator.loader import CollectedMessages, collect_path, load_collected

TAKEOUT = DEMO_DATA / "takeout" / "takeout.mbox"
HAM = DEMO_DATA / "spamassassin" / "ham"
SPAM = DEMO_DATA / "spamassassin" / "spam"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raws(mailbox: Mailbox) -> Counter[str]:
    return Counter(sha(m.raw) for m in mailbox.messages())


def test_spamassassin_files_lose_only_their_envelope_line() -> None:
    mailbox = Mailbox("a@example.test", seed=1)
    report = mailbox.load_path(HAM, label_ids=["INBOX", "UNREAD"])
    files = sorted(p for p in HAM.iterdir() if p.is_file())
    assert len(report) == len(files) == 260
    expected = Counter()
    for path in files:
        data = path.read_bytes()
        expected[sha(data.partition(b"\n")[2] if data.startswith(b"From ") else data)] += 1
    assert raws(mailbox) == expected
    assert all(m.label_ids == ("INBOX", "UNREAD") for m in mailbox.messages())
    assert mailbox.history_floor == mailbox.history_id  # history starts after the load


def test_takeout_mbox_labels_threads_and_bytes() -> None:
    mailbox = Mailbox("a@example.test", seed=2)
    report = mailbox.load_mbox(TAKEOUT)
    assert len(report) == 39 and report.skipped == []

    data = TAKEOUT.read_bytes()
    # Independent split: each chunk is an envelope line, the message, then one blank line.
    chunks = re.split(rb"(?m)^(?=From \d+@xxx )", data)[1:]
    assert all(chunk.endswith(b"\r\n\r\n") for chunk in chunks)
    assert raws(mailbox) == Counter(sha(chunk.partition(b"\n")[2][:-2]) for chunk in chunks)

    thread_ids = Counter(m.thread_id for m in mailbox.messages())
    header_threads = Counter(
        f"{int(value):016x}" for value in re.findall(rb"^X-GM-THRID: (\d+)", data, flags=re.MULTILINE)
    )
    assert thread_ids == header_threads
    assert len(thread_ids) == 12

    # Takeout's envelope line carries the Gmail message id: it is reused.
    first_envelope = int(re.match(rb"From (\d+)@xxx", data)[1])
    assert mailbox.has_message(f"{first_envelope:016x}")

    names = {label.name: label.id for label in mailbox.labels() if label.type == "user"}
    assert set(names) == {
        "takeout",
        "☯",
        "'single-quote",
        "1.Organizační",
        "3. Culture, Hledání ztraceného času",
        "X/@s-itsolution.cz (2011-2015)/Procesy/Resource Man. (PLAKA,CLARA2)",
    }
    by_labels = Counter(tuple(sorted(m.label_ids)) for m in mailbox.messages())
    takeout = names["takeout"]
    assert by_labels[tuple(sorted(["INBOX", "UNREAD", takeout]))] == 18
    assert by_labels[tuple(sorted(["INBOX", "IMPORTANT", "UNREAD", takeout]))] == 7
    assert by_labels[tuple(sorted(["UNREAD", takeout]))] == 2  # Archived: no INBOX
    assert by_labels[tuple(sorted([names["☯"], names["'single-quote"], takeout]))] == 8
    organised = [m for m in mailbox.messages() if names["1.Organizační"] in m.label_ids]
    assert len(organised) == 2
    assert any(names["3. Culture, Hledání ztraceného času"] in m.label_ids for m in organised)


def test_folder_conventions_and_readme_skipped() -> None:
    mailbox = Mailbox("a@example.test", seed=3)
    report = mailbox.load_path(DEMO_DATA, label_ids=["INBOX", "UNREAD"])
    assert len(report) == 260 + 40 + 39  # README.md is documentation, not mail
    assert report.doubtful == []
    spam_raws = {sha(p.read_bytes().partition(b"\n")[2]) for p in SPAM.iterdir()}
    for message in mailbox.messages():
        if sha(message.raw) in spam_raws:
            assert message.label_ids == ("SPAM", "UNREAD")


def test_maildir_flags_folders_and_tmp(tmp_path: Path) -> None:
    root = tmp_path / "Mail"
    for folder in ("cur", "new", "tmp", ".Junk/cur", ".Junk/new", ".Junk/tmp", "Sent/cur", ".git"):
        (root / folder).mkdir(parents=True)
    (root / "cur" / "1.host:2,S").write_bytes(make_message("read one"))
    (root / "cur" / "2.host:2,FS").write_bytes(make_message("starred one"))
    (root / "cur" / "3.host:2,").write_bytes(make_message("cur without flags"))
    (root / "new" / "4.host").write_bytes(make_message("brand new"))
    (root / "tmp" / "5.host").write_bytes(make_message("still being delivered"))
    (root / ".Junk" / "cur" / "6.host:2,S").write_bytes(make_message("junk"))
    (root / "Sent" / "cur" / "7.host:2,S").write_bytes(make_message("sent"))
    (root / ".git" / "config").write_bytes(b"[core]\n")
    mailbox = Mailbox("a@example.test", seed=4)
    report = mailbox.load_maildir(root)
    assert len(report) == 6
    labels = {m.content.header("Subject"): m.label_ids for m in mailbox.messages()}
    assert labels == {
        "read one": ("INBOX",),
        "starred one": ("INBOX", "STARRED"),
        "cur without flags": ("INBOX",),
        "brand new": ("INBOX", "UNREAD"),
        "junk": ("SPAM",),
        "sent": ("SENT",),
    }
    with pytest.raises(ValueError, match="not a maildir"):
        mailbox.load_maildir(root / ".Junk" / "cur")


def test_eml_dir_with_malformed_messages_and_odd_dates(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "README.md").write_text("# not mail\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "empty.eml").write_bytes(b"")
    (tmp_path / "garbage.eml").write_bytes(b"\xff\xfe not a header at all\n\x00\x01 binary junk")
    (tmp_path / "no-date.eml").write_bytes(
        b"Received: from x by y; Tue, 3 Sep 2002 10:00:00 +0000\nSubject: no date\n\nbody\n"
    )
    (tmp_path / "bad-date.eml").write_bytes(b"Date: the day after tomorrow\nSubject: bad date\n\nbody\n")
    (tmp_path / "huge-year.eml").write_bytes(b"Date: Mon, 1 Jan 99999 00:00:00 +0000\nSubject: far\n\nbody\n")
    (tmp_path / "sub" / "8bit.eml").write_bytes(
        "Subject: caf\u00e9 \u2615\nFrom: J\u00fcrgen <j@example.org>\n\nGr\u00fc\u00dfe\n".encode()
    )
    (tmp_path / "sub" / "0f00000000000001.eml").write_bytes(make_message("gyb named"))
    before = int(datetime.now(UTC).timestamp() * 1000) - 1
    mailbox = Mailbox("a@example.test", seed=5)
    report = mailbox.load_eml_dir(tmp_path)
    after = datetime.now(UTC).timestamp() * 1000
    assert len(report) == 6
    assert [path for path, _ in report.skipped] == [str(tmp_path / "empty.eml")]
    by_subject = {m.content.header("Subject"): m for m in mailbox.messages()}
    assert by_subject["no date"].internal_date_ms == int(datetime(2002, 9, 3, 10, tzinfo=UTC).timestamp() * 1000)
    assert before <= by_subject["bad date"].internal_date_ms <= after
    assert before <= by_subject["far"].internal_date_ms <= after
    assert by_subject["café ☕"].content.header("From") == "Jürgen <j@example.org>"
    assert by_subject["gyb named"].id == "0f00000000000001"  # GYB file names are Gmail ids
    garbage = [m for m in mailbox.messages() if m.raw.startswith(b"\xff\xfe")]
    assert len(garbage) == 1 and garbage[0].content.snippet is not None


def test_load_path_picks_the_format(tmp_path: Path) -> None:
    two = (
        b"From a@example.org Mon Sep  2 10:00:00 2002\n" + make_message("first") + b"\n"
        b"From b@example.org Tue Sep  3 10:00:00 2002\n" + make_message("second") + b"\n"
    )
    (tmp_path / "archive").write_bytes(two)  # an mbox without the .mbox suffix
    (tmp_path / "single").write_bytes(b"From a@example.org Mon Sep  2 10:00:00 2002\n" + make_message("one"))
    mailbox = Mailbox("a@example.test", seed=6)
    assert len(mailbox.load_path(tmp_path / "archive")) == 2
    assert len(mailbox.load_path(tmp_path / "single")) == 1
    with pytest.raises(FileNotFoundError):
        mailbox.load_path(tmp_path / "missing")
    with pytest.raises(ValueError, match="not an mbox"):
        mailbox.load_mbox(tmp_path)
    (tmp_path / "broken.mbox").write_bytes(b"Subject: no envelope\n\nbody\n")
    report = mailbox.load_mbox(tmp_path / "broken.mbox")
    assert len(report) == 0 and "no message found" in report.skipped[0][1]


def test_build_state_from_several_paths_threads_across_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "1.eml").write_bytes(make_message("Topic", message_id="t1@x"))
    (tmp_path / "b" / "2.eml").write_bytes(make_message("Other", message_id="t2@x", in_reply_to="t1@x"))
    state = build_state_from_paths([tmp_path / "a", tmp_path / "b"], email="x@example.test", seed=3)
    mailbox = state.mailbox("x@example.test")
    assert mailbox.messages_total == 2 and mailbox.threads_total == 1
    # An empty collection loads nothing and leaves the history alone.
    mailbox.add_message(make_message("live"))
    floor = mailbox.history_floor
    assert load_collected(mailbox, CollectedMessages()).message_ids == []
    assert mailbox.history_floor == floor


def test_files_that_do_not_look_like_mail_are_flagged(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Notes\n\nNot a message.\n")
    (tmp_path / "tool").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(64))
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "garbage.eml").write_bytes(b"\xff\xfe not a header at all\n\x00")
    (tmp_path / "mail" / "good.eml").write_bytes(make_message("good"))
    (tmp_path / "mail" / "envelope").write_bytes(b"From a@example.org Mon Sep  2 10:00:00 2002\n" + make_message("x"))
    (tmp_path / "mail" / "folded").write_bytes(b"\r\nReceived : from x\r\n\tby y\r\nSubject: s\r\n\r\nbody\r\n")
    for name in ("README.md", "tool"):  # given explicitly: loaded (the caller asked), but flagged
        found = collect_path(tmp_path / name)
        assert len(found.items) == 1
        assert [path for path, _ in found.doubtful] == [str(tmp_path / name)]
        assert "no header lines" in found.doubtful[0][1]
    tree = collect_path(tmp_path / "mail")
    assert len(tree.items) == 4
    assert [path for path, _ in tree.doubtful] == [str(tmp_path / "mail" / "garbage.eml")]
    merged = CollectedMessages()
    merged.extend(tree)
    merged.extend(collect_path(tmp_path / "tool"))
    assert len(merged.items) == 5 and len(merged.doubtful) == 2


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="shared corpus not present")
def test_whole_shared_corpus_loads() -> None:
    mailbox = Mailbox("a@example.test", seed=7)
    report = mailbox.load_path(SHARED_CORPUS)
    assert len(report) > 4500
    assert report.skipped == [] and report.doubtful == []  # every file looks like mail
    assert mailbox.has_message("16a2817c70bbbbf1")  # a GYB .eml keeps its Gmail id
    labels = Counter(label for m in mailbox.messages() for label in m.label_ids)
    assert labels["SPAM"] == 500  # spamassassin-publiccorpus/spam


@pytest.mark.skipif(not SHARED_CORPUS.is_dir(), reason="shared corpus not present")
def test_notmuch_ghost_root_threads() -> None:
    mailbox = Mailbox("a@example.test", seed=8)
    mailbox.load_path(SHARED_CORPUS / "notmuch-corpora" / "threading")
    thread_of = {
        mime_id: m.thread_id
        for m in mailbox.messages()
        for mime_id in re.findall(r"<([^>]+)>", m.content.header("Message-ID"))
    }
    family = [
        "000-real-root@example.org",
        "001-child@example.org",
        "001-grand-child@example.org",
        "001-grand-child2@example.org",
        "001-great-grand-child@example.org",
        "001-fake-message-root@example.org",
    ]
    assert len({thread_of[i] for i in family}) == 1
    assert (
        len({thread_of[i] for i in ("B00-root@example.org", "B01-child@example.org", "B01-grand-child@example.org")})
        == 1
    )


def test_bad_default_labels_fail_once_and_history_can_be_recorded(tmp_path: Path) -> None:
    (tmp_path / "1.eml").write_bytes(make_message("one"))
    (tmp_path / "2.eml").write_bytes(make_message("two"))
    mailbox = Mailbox("a@example.test", seed=9)
    with pytest.raises(UnknownLabel):
        mailbox.load_path(tmp_path, label_ids=["INBOX", "NOPE"])
    with pytest.raises(TypeError):
        mailbox.load_path(tmp_path, label_ids="INBOX")
    with pytest.raises(UnknownLabel):
        build_state_from_paths([tmp_path], label_ids=["NOPE"])
    start = mailbox.history_id
    report = mailbox.load_path(tmp_path, record_history=True)
    records = mailbox.history_since(start)
    assert [r.changes["messagesAdded"][0]["message"]["id"] for r in records] == report.message_ids
