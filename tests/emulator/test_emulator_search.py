"""Gmail search syntax: every operator, negation, OR/parentheses, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from emulator_helpers import User, make_message

from mailtide.emulator import Mailbox, QueryError, parse_query

NOW = datetime(2002, 10, 1, 12, 0, tzinfo=UTC).timestamp()
MULTIPART = (
    b"From: Carol <carol@example.org>\r\nTo: dave@example.org\r\nSubject: report attached\r\n"
    b"Date: Mon, 30 Sep 2002 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
    b'--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="r.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
)


@pytest.fixture
def box() -> Mailbox:
    mailbox = Mailbox("me@example.test", seed=1)
    work = mailbox.create_label("Work/Projects")
    subjects = {
        "old": (datetime(2001, 5, 1, tzinfo=UTC), ["INBOX"], "Alice <alice@example.org>", "Bob <bob@example.org>"),
        "week": (datetime(2002, 9, 25, tzinfo=UTC), ["INBOX", "UNREAD", work], "bob@example.org", "me@x"),
        "hour": (datetime(2002, 10, 1, 11, 30, tzinfo=UTC), ["INBOX", "STARRED"], "Zoë <zoe@example.org>", "me@x"),
        "spam": (datetime(2002, 9, 30, tzinfo=UTC), ["SPAM"], "Spammer <win@spam.example>", "me@x"),
        "trash": (datetime(2002, 9, 29, tzinfo=UTC), ["TRASH"], "alice@example.org", "me@x"),
        "sent": (datetime(2002, 9, 28, tzinfo=UTC), ["SENT", "IMPORTANT"], "me@x", "Alice <alice@example.org>"),
    }
    for subject, (date, labels, sender, to) in subjects.items():
        mailbox.add_message(
            make_message(f"{subject} news", sender=sender, to=to, date=date, message_id=f"{subject}@x"),
            label_ids=labels,
        )
    mailbox.add_message(
        make_message(
            "=?UTF-8?Q?caf=C3=A9_menu?=",
            sender="=?UTF-8?Q?Ren=C3=A9?= <rene@example.org>",
            to="me@x",
            date=datetime(2002, 9, 20, tzinfo=UTC),
            extra_headers={"Cc": "Team <team@example.org>"},
        ),
        label_ids=["INBOX", "CATEGORY_SOCIAL"],
    )
    mailbox.add_message(MULTIPART, label_ids=["INBOX"])
    return mailbox


def search(mailbox: Mailbox, q: str) -> set[str]:
    query = parse_query(q, labels=mailbox.labels(), now=NOW)
    return {m.content.header("Subject") for m in mailbox.messages() if query.matches(m)}


ALL = {"old news", "week news", "hour news", "spam news", "trash news", "sent news", "café menu", "report attached"}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("", ALL),
        ("from:alice", {"old news", "trash news"}),
        ("from:ALICE@EXAMPLE.ORG", {"old news", "trash news"}),
        ('from:"Alice <alice"', {"old news"}),
        ("from:zoë", {"hour news"}),
        ("from:rené", {"café menu"}),
        ("to:alice", {"sent news"}),
        ("to:team", {"café menu"}),  # to: covers Cc and Bcc too
        ("cc:team", {"café menu"}),
        ("subject:news -subject:old", ALL - {"old news", "café menu", "report attached"}),
        ('subject:"café menu"', {"café menu"}),
        ("in:inbox", {"old news", "week news", "hour news", "café menu", "report attached"}),
        ("in:spam", {"spam news"}),
        ("in:trash", {"trash news"}),
        ("in:sent", {"sent news"}),
        ("in:anywhere", ALL),
        ("is:unread", {"week news"}),
        ("is:read in:inbox", {"old news", "hour news", "café menu", "report attached"}),
        ("is:starred", {"hour news"}),
        ("is:important", {"sent news"}),
        ("label:work/projects", {"week news"}),
        ("label:Work-Projects", {"week news"}),
        ("label:work-projects", {"week news"}),
        ("label:Label_1", {"week news"}),
        ("label:INBOX -label:unread", {"old news", "hour news", "café menu", "report attached"}),
        ("label:no-such-label", set()),
        ("category:social", {"café menu"}),
        ("has:attachment", {"report attached"}),
        ("has:userlabels", {"week news"}),
        ("after:2002/09/26", {"hour news", "spam news", "trash news", "sent news", "report attached"}),
        # Dates are midnight Pacific time: 2002-09-30 00:00 UTC is still the 29th there.
        ("after:2002-09-26 before:2002/09/30", {"trash news", "sent news", "spam news"}),
        (f"after:{int(datetime(2002, 9, 30, 8, tzinfo=UTC).timestamp())}", {"hour news", "report attached"}),
        ("before:2002/01/01", {"old news"}),
        ("newer_than:1h", {"hour news"}),
        ("newer_than:2d", {"hour news", "spam news", "report attached"}),
        ("older_than:1y", {"old news"}),
        ("newer_than:1m -in:inbox", {"spam news", "trash news", "sent news"}),
        ("larger:300", {"report attached"}),
        ("smaller:300", ALL - {"report attached"}),
        ("smaller:1K", ALL),
        ("larger:1m", set()),
        ("rfc822msgid:<week@x>", {"week news"}),
        ("rfc822msgid:hour@x", {"hour news"}),
        ("from:alice OR from:bob", {"old news", "week news", "trash news"}),
        ("(from:alice OR is:starred) in:inbox", {"old news", "hour news"}),
        ("-(in:inbox OR in:sent)", {"spam news", "trash news"}),
        ("from:alice AND in:trash", {"trash news"}),
    ],
)
def test_operators(box: Mailbox, q: str, expected: set[str]) -> None:
    assert search(box, q) == expected


@pytest.mark.parametrize(
    ("q", "named"),
    [
        ("hello", "'hello'"),
        ('"exact phrase"', '"exact phrase"'),
        ("from:alice hello", "'hello'"),
        ("has:drive", "has:drive"),
        ("is:snoozed", "is:snoozed"),
        ("filename:pdf", "'filename:'"),
        ("{from:a from:b}", "{ }"),
        ("subject:(a b)", "subject:("),
        ("after:yesterday", "after:yesterday"),
        ("newer_than:3w", "newer_than:3w"),
        ("category:music", "category:music"),
        ("(from:alice", "parentheses"),
        ("from:alice)", "')'"),
        ("OR from:alice", "'OR'"),
        ("from:", "needs a value"),
        ('subject:"open', "unterminated quote"),
    ],
)
def test_unsupported_or_malformed_queries_name_the_part(box: Mailbox, q: str, named: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_query(q, labels=box.labels(), now=NOW)
    assert named in str(raised.value)


def test_explicit_spam_trash_detection(box: Mailbox) -> None:
    def explicit(q: str) -> bool:
        return parse_query(q, labels=box.labels(), now=NOW).explicit_spam_trash

    assert explicit("in:spam")
    assert explicit("label:trash from:x")
    assert explicit("in:anywhere")
    assert explicit("from:x OR in:spam")
    assert not explicit("-in:spam")
    assert not explicit("-(in:trash)")
    assert explicit("-(-in:trash)")
    assert not explicit("from:x")


def test_search_over_http_defaults_and_400(user: User, fixed_clock: object) -> None:
    mailbox = user.mailbox
    inbox = mailbox.add_message(make_message("in box", date=datetime(2002, 9, 30, tzinfo=UTC)))
    spam = mailbox.add_message(make_message("junk", date=datetime(2002, 9, 30, tzinfo=UTC)), label_ids=["SPAM"])
    mailbox.add_message(make_message("ancient", date=datetime(1999, 1, 1, tzinfo=UTC)), label_ids=["INBOX"])

    def listed(**params: object) -> list[str]:
        response = user.api.get("/messages", params=params)
        assert response.status_code == 200, response.text
        return [m["id"] for m in response.json().get("messages", [])]

    assert listed(q="newer_than:7d") == [inbox]  # spam excluded by default
    assert listed(q="newer_than:7d in:spam") == [spam]
    assert listed(q="newer_than:7d", includeSpamTrash="true") == sorted([inbox, spam], reverse=True)
    response = user.api.get("/messages", params={"q": "from:x has:drive"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["errors"][0]["reason"] == "invalidArgument"
    assert "has:drive" in error["message"]
