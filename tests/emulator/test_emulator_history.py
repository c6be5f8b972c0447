"""history.list over HTTP: the four record kinds, paging, filters, expiry (404) and bad input (400)."""

from __future__ import annotations

import itertools

from emulator_helpers import User, make_message

from mailtide.emulator import HistoryRetention

EXPIRED_BODY = {
    "error": {
        "code": 404,
        "message": "Requested entity was not found.",
        "errors": [{"message": "Requested entity was not found.", "domain": "global", "reason": "notFound"}],
        "status": "NOT_FOUND",
    }
}


def history(user: User, start: int | str, **params: object) -> dict:
    response = user.api.get("/history", params={"startHistoryId": str(start), **params})
    assert response.status_code == 200, response.text
    return response.json()


def all_pages(user: User, start: int, **params: object) -> tuple[list[dict], int]:
    records: list[dict] = []
    token = None
    pages = 0
    while True:
        page = history(user, start, **params, **({"pageToken": token} if token else {}))
        pages += 1
        records += page.get("history", [])
        token = page.get("nextPageToken")
        if not token:
            return records, pages


def test_no_changes_answers_only_the_history_id(user: User) -> None:
    start = user.mailbox.history_id
    assert history(user, start) == {"historyId": str(start)}


def test_all_four_kinds_in_order(user: User) -> None:
    mailbox = user.mailbox
    start = mailbox.history_id
    message_id = mailbox.add_message(make_message("one"), label_ids=["INBOX", "UNREAD"])
    mailbox.modify_labels(message_id, remove=["UNREAD"])
    mailbox.modify_labels(message_id, add=["STARRED"])
    mailbox.delete_message(message_id)
    page = history(user, start)
    assert page["historyId"] == str(mailbox.history_id)
    records = page["history"]
    assert len(records) == 4
    ids = [int(r["id"]) for r in records]
    assert ids == sorted(ids) and len(set(ids)) == 4 and ids[0] > start and ids[-1] == mailbox.history_id
    ref = {"id": message_id, "threadId": message_id}
    assert records[0] == {
        "id": records[0]["id"],
        "messages": [ref],
        "messagesAdded": [{"message": {**ref, "labelIds": ["INBOX", "UNREAD"]}}],
    }
    assert records[1]["labelsRemoved"] == [{"message": {**ref, "labelIds": ["INBOX"]}, "labelIds": ["UNREAD"]}]
    assert records[2]["labelsAdded"] == [
        {"message": {**ref, "labelIds": ["INBOX", "STARRED"]}, "labelIds": ["STARRED"]}
    ]
    assert records[3]["messagesDeleted"] == [{"message": {**ref, "labelIds": ["INBOX", "STARRED"]}}]
    assert all(r["messages"] == [ref] for r in records)
    # From the middle: only later records.
    assert [r["id"] for r in history(user, ids[1])["history"]] == [str(i) for i in ids[2:]]
    assert history(user, ids[-1]) == {"historyId": str(ids[-1])}


def test_history_ids_strictly_increase_with_gaps(user: User) -> None:
    start = user.mailbox.history_id
    message_ids = [user.mailbox.add_message(make_message(f"m{n}")) for n in range(15)]
    for message_id in message_ids:
        user.mailbox.modify_labels(message_id, add=["IMPORTANT"])
    records, _ = all_pages(user, start)
    ids = [int(r["id"]) for r in records]
    assert len(ids) == 30
    assert all(b > a for a, b in itertools.pairwise(ids))
    assert any(b - a > 1 for a, b in itertools.pairwise(ids))
    message = user.api.get(f"/messages/{message_ids[-1]}", params={"format": "minimal"}).json()
    assert message["historyId"] == str(ids[-1])


def test_paging_and_max_results(user: User) -> None:
    start = user.mailbox.history_id
    for n in range(12):
        user.mailbox.add_message(make_message(f"m{n}"))
    first = history(user, start, maxResults=5)
    assert len(first["history"]) == 5 and "nextPageToken" in first
    records, pages = all_pages(user, start, maxResults=5)
    assert pages == 3 and len(records) == 12
    assert [int(r["id"]) for r in records] == sorted(int(r["id"]) for r in records)
    assert len({r["id"] for r in records}) == 12
    big, pages = all_pages(user, start, maxResults=10_000)  # clamped to 500: one page
    assert pages == 1 and len(big) == 12
    assert len(history(user, start)["history"]) == 12  # default 100


def test_history_types_and_label_filters(user: User) -> None:
    mailbox = user.mailbox
    start = mailbox.history_id
    message_id = mailbox.add_message(make_message("f"), label_ids=["INBOX"])
    other = mailbox.add_message(make_message("g"), label_ids=["SENT"])
    mailbox.modify_labels(message_id, add=["STARRED"], remove=["INBOX"])  # one record, both kinds
    mailbox.delete_message(other)

    added = history(user, start, historyTypes="labelAdded")["history"]
    assert [list(r) for r in added] == [["id", "messages", "labelsAdded"]]
    both = history(user, start, historyTypes=["messageAdded", "messageDeleted"])["history"]
    assert [sorted(k for k in r if k not in ("id", "messages")) for r in both] == [
        ["messagesAdded"],
        ["messagesAdded"],
        ["messagesDeleted"],
    ]
    sent_only = history(user, start, labelId="SENT")["history"]
    assert [r["messages"][0]["id"] for r in sent_only] == [other, other]
    inbox = history(user, start, labelId="INBOX")["history"]  # the add, and the removal of INBOX
    assert len(inbox) == 2 and "labelsRemoved" in inbox[1] and "labelsAdded" not in inbox[1]

    # Filtering happens before paging: pages are full and nothing is skipped.
    for n in range(6):
        mailbox.add_message(make_message(f"h{n}"))
        mailbox.modify_labels(mailbox.messages()[0].id, add=["IMPORTANT"])
    records, pages = all_pages(user, start, historyTypes="messageAdded", maxResults=3)
    assert len(records) == 8 and pages == 3


def test_404_after_expiry_and_retention(user: User) -> None:
    mailbox = user.mailbox
    start = mailbox.history_id
    mailbox.add_message(make_message("x"))
    mailbox.expire_history()
    response = user.api.get("/history", params={"startHistoryId": str(start)})
    assert response.status_code == 404
    assert response.json() == EXPIRED_BODY
    assert history(user, mailbox.history_id) == {"historyId": str(mailbox.history_id)}
    assert user.api.get("/history", params={"startHistoryId": "1"}).status_code == 404

    mailbox.history_retention = HistoryRetention(max_records=3)
    anchor = mailbox.history_id
    ids = [mailbox.add_message(make_message(f"r{n}")) for n in range(5)]
    assert user.api.get("/history", params={"startHistoryId": str(anchor)}).status_code == 404
    floor = mailbox.history_floor
    assert [r["messages"][0]["id"] for r in history(user, floor)["history"]] == ids[2:]


def test_expiry_between_pages_answers_404(user: User) -> None:
    start = user.mailbox.history_id
    for n in range(4):
        user.mailbox.add_message(make_message(f"p{n}"))
    first = history(user, start, maxResults=2)
    user.mailbox.expire_history()
    response = user.api.get(
        "/history", params={"startHistoryId": str(start), "maxResults": 2, "pageToken": first["nextPageToken"]}
    )
    assert response.status_code == 404


def test_bad_history_parameters_are_400(user: User) -> None:
    start = str(user.mailbox.history_id)
    cases = [
        {},
        {"startHistoryId": ""},
        {"startHistoryId": "abc"},
        {"startHistoryId": "-5"},
        {"startHistoryId": "99999999999999999999999"},
        {"startHistoryId": start, "historyTypes": "messageMoved"},
        {"startHistoryId": start, "maxResults": "x"},
        {"startHistoryId": start, "pageToken": "garbage"},
    ]
    for params in cases:
        response = user.api.get("/history", params=params)
        assert response.status_code == 400, params
        error = response.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and error["errors"][0]["reason"] == "invalidArgument"
    missing = user.api.get("/history").json()["error"]["message"]
    assert "startHistoryId" in missing
