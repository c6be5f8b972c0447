"""The Gmail REST methods over real HTTP: profile, labels, messages.list/get, threads, attachments."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from emulator_helpers import DEMO_DATA, MIME_SAMPLES, User, ids_of, make_message

from mailtide.emulator.mailbox import NewMessage

NOT_FOUND_BODY = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "errors": [{"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}],
        "status": "NOT_FOUND",
    }
}
NESTED = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
    b"Date: Tue, 1 Oct 2002 10:00:00 +0000\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b'--outer\r\nContent-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Caf=C3=A9   time\r\n   soon\r\n"
    b"--inner\r\nContent-Type: text/html\r\n\r\n<p>Caf&eacute; <b>time</b></p>\r\n--inner--\r\n"
    b'--outer\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
    b'Content-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    b"AAECAwQ=\r\n--outer--\r\n"
)


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def test_profile_and_labels(user: User) -> None:
    user.mailbox.add_message(make_message("a", message_id="a@x"))
    user.mailbox.add_message(make_message("Re: a", message_id="b@x", in_reply_to="a@x"))
    label_id = user.mailbox.create_label("Receipts")
    profile = user.api.get("/profile").json()
    assert profile == {
        "emailAddress": user.email,
        "messagesTotal": 2,
        "threadsTotal": 1,
        "historyId": str(user.mailbox.history_id),
    }
    labels = {label["id"]: label for label in user.api.get("/labels").json()["labels"]}
    assert labels["INBOX"]["type"] == "system"
    assert labels[label_id] == {
        "id": label_id,
        "name": "Receipts",
        "type": "user",
        "messageListVisibility": "show",
        "labelListVisibility": "labelShow",
    }
    assert user.api.get(f"/labels/{label_id}").json()["name"] == "Receipts"
    missing = user.api.get("/labels/Label_404")
    assert missing.status_code == 404 and missing.json() == NOT_FOUND_BODY


def test_list_order_paging_and_empty_listing(user: User) -> None:
    assert user.api.get("/messages").json() == {"resultSizeEstimate": 0}
    base = datetime(2002, 9, 1, tzinfo=UTC)
    ids = []
    for n in range(7):
        date = base + timedelta(days=n // 2)  # pairs share a date: ties break by id
        ids.append(user.mailbox.add_message(make_message(f"m{n}"), internal_date_ms=int(date.timestamp() * 1000)))
    expected = [m.id for m in sorted(user.mailbox.messages(), key=lambda m: (m.internal_date_ms, m.id), reverse=True)]
    assert set(expected) == set(ids)

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"maxResults": 3, **({"pageToken": token} if token else {})}
        page = user.api.get("/messages", params=params).json()
        assert page["resultSizeEstimate"] == (7 if pages == 0 else 8)
        seen += ids_of(page)
        pages += 1
        if pages == 1:  # a new (newest) message between pages must not shift the next page
            user.mailbox.add_message(
                make_message("late"), internal_date_ms=int((base + timedelta(days=30)).timestamp() * 1000)
            )
        token = page.get("nextPageToken")
        if not token:
            break
    assert seen == expected
    assert pages == 3
    full = user.api.get("/messages").json()
    assert full["resultSizeEstimate"] == 8 and "nextPageToken" not in full
    for message in full["messages"]:
        assert set(message) == {"id", "threadId"}


def test_max_results_clamps_at_500(user: User) -> None:
    user.mailbox.add_messages(NewMessage(make_message(f"bulk {n}"), label_ids=["INBOX"]) for n in range(505))
    page = user.api.get("/messages", params={"maxResults": 1000}).json()
    assert len(page["messages"]) == 500 and "nextPageToken" in page
    rest = user.api.get("/messages", params={"maxResults": 1000, "pageToken": page["nextPageToken"]}).json()
    assert len(rest["messages"]) == 5 and "nextPageToken" not in rest
    assert len(ids_of(user.api.get("/messages").json())) == 100  # default page size


def test_label_filters_and_spam_trash(user: User) -> None:
    mailbox = user.mailbox
    inbox = mailbox.add_message(make_message("inbox"), label_ids=["INBOX", "UNREAD"])
    starred = mailbox.add_message(make_message("starred"), label_ids=["INBOX", "STARRED"])
    spam = mailbox.add_message(make_message("spam"), label_ids=["SPAM", "UNREAD"])
    trash = mailbox.add_message(make_message("trash"), label_ids=["TRASH", "STARRED"])

    def listed(**params: object) -> set[str]:
        response = user.api.get("/messages", params=params)
        assert response.status_code == 200, response.text
        return set(ids_of(response.json()))

    assert listed() == {inbox, starred}
    assert listed(includeSpamTrash="true") == {inbox, starred, spam, trash}
    assert listed(labelIds="UNREAD") == {inbox}
    assert listed(labelIds=["INBOX", "STARRED"]) == {starred}  # repeated labelIds: AND
    assert listed(labelIds="SPAM") == {spam}  # asking for SPAM includes it
    assert listed(labelIds="STARRED", includeSpamTrash="True") == {starred, trash}
    assert listed(q="in:trash") == {trash}
    bad = user.api.get("/messages", params={"labelIds": "Label_999"})
    assert bad.status_code == 400 and "Invalid label: Label_999" in bad.json()["error"]["message"]
    for params in ({"maxResults": "ten"}, {"maxResults": 0}, {"includeSpamTrash": "maybe"}, {"pageToken": "@@"},
                   {"pageToken": base64.urlsafe_b64encode(b"[" * 6000).decode()}):
        response = user.api.get("/messages", params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["errors"][0]["reason"] == "invalidArgument"


def test_get_raw_is_byte_exact_for_real_mail(user: User) -> None:
    user.mailbox.load_path(DEMO_DATA / "takeout" / "takeout.mbox")
    user.mailbox.load_path(DEMO_DATA / "spamassassin" / "spam")
    for message in user.mailbox.messages()[::7]:
        body = user.api.get(f"/messages/{message.id}", params={"format": "raw"}).json()
        assert b64decode(body["raw"]) == message.raw
        assert body["sizeEstimate"] == len(message.raw)
        assert body["internalDate"] == str(message.internal_date_ms)
        assert body["historyId"] == str(message.history_id)
        assert body["labelIds"] == list(message.label_ids)
        assert body["threadId"] == message.thread_id
        assert "payload" not in body


def test_formats_minimal_metadata_full_and_attachments(user: User) -> None:
    message_id = user.mailbox.add_message(NESTED, label_ids=["INBOX"])
    minimal = user.api.get(f"/messages/{message_id}", params={"format": "minimal"}).json()
    assert set(minimal) == {"id", "threadId", "labelIds", "snippet", "sizeEstimate", "historyId", "internalDate"}
    assert minimal["snippet"] == "Café time soon"
    assert minimal["internalDate"] == str(int(datetime(2002, 10, 1, 10, tzinfo=UTC).timestamp() * 1000))

    metadata = user.api.get(
        f"/messages/{message_id}", params={"format": "metadata", "metadataHeaders": ["subject", "From"]}
    ).json()
    assert metadata["payload"]["headers"] == [
        {"name": "From", "value": "a@example.org"},
        {"name": "Subject", "value": "nested"},
    ]
    assert metadata["payload"]["mimeType"] == "multipart/mixed"

    full = user.api.get(f"/messages/{message_id}").json()["payload"]
    assert (full["partId"], full["mimeType"], full["body"]) == ("", "multipart/mixed", {"size": 0})
    alternative, attachment = full["parts"]
    assert alternative["partId"] == "0" and alternative["mimeType"] == "multipart/alternative"
    plain, html = alternative["parts"]
    assert plain["partId"] == "0.0" and html["partId"] == "0.1"
    # The CRLF before a boundary belongs to the boundary (RFC 2046), not to the part.
    assert b64decode(plain["body"]["data"]) == "Café   time\r\n   soon".encode()
    assert plain["body"]["size"] == len("Café   time\r\n   soon".encode())
    assert {"name": "Content-Type", "value": "text/plain; charset=utf-8"} in plain["headers"]
    assert attachment["partId"] == "1" and attachment["filename"] == "data.bin"
    assert set(attachment["body"]) == {"attachmentId", "size"} and attachment["body"]["size"] == 5

    got = user.api.get(f"/messages/{message_id}/attachments/{attachment['body']['attachmentId']}").json()
    assert b64decode(got["data"]) == b"\x00\x01\x02\x03\x04" and got["size"] == 5
    assert user.api.get(f"/messages/{message_id}/attachments/bogus").status_code == 400

    assert user.api.get(f"/messages/{message_id}", params={"format": "html"}).status_code == 400
    missing = user.api.get("/messages/0123456789abcdef")
    assert missing.status_code == 404 and missing.json() == NOT_FOUND_BODY


def test_threads_get(user: User) -> None:
    first = user.mailbox.add_message(make_message("T", message_id="t1@x", date=datetime(2002, 1, 1, tzinfo=UTC)))
    second = user.mailbox.add_message(
        make_message("Re: T", message_id="t2@x", in_reply_to="t1@x", date=datetime(2002, 1, 2, tzinfo=UTC))
    )
    user.mailbox.modify_labels(first, add=["STARRED"])
    thread = user.api.get(f"/threads/{first}", params={"format": "minimal"}).json()
    assert thread["id"] == first
    assert [m["id"] for m in thread["messages"]] == [first, second]
    assert thread["historyId"] == str(user.mailbox.history_id)
    assert user.api.get("/threads/ffffffffffffffff").json() == NOT_FOUND_BODY
    assert user.api.get(f"/threads/{first}", params={"format": "raw"}).status_code == 400


@pytest.mark.skipif(not MIME_SAMPLES.is_dir(), reason="tests/data/mime not present")
def test_odd_mime_samples_render_in_every_format(user: User) -> None:
    report = user.mailbox.load_path(MIME_SAMPLES)
    assert len(report) >= 5
    for message_id in report.message_ids:
        for fmt in ("full", "metadata", "minimal", "raw"):
            response = user.api.get(f"/messages/{message_id}", params={"format": fmt})
            assert response.status_code == 200, (message_id, fmt, response.text[:300])
