"""The mailbox model without HTTP: ids, threads, labels, history records and retention."""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
from datetime import UTC, datetime

import pytest
from emulator_helpers import make_message

from mailtide.emulator import (
    EmulatorState,
    HistoryExpired,
    HistoryRetention,
    LabelExists,
    Mailbox,
    UnknownLabel,
    UnknownMessage,
    UnknownUser,
)
from mailtide.emulator.mailbox import NewMessage

HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_ids_are_16_hex_and_grow_with_internal_date() -> None:
    mailbox = Mailbox("a@example.test", seed=1)
    older = mailbox.add_message(make_message("one"), internal_date_ms=1_000_000_000_000)
    newer = mailbox.add_message(make_message("two"), internal_date_ms=1_100_000_000_000)
    same_ms = mailbox.add_message(make_message("three"), internal_date_ms=1_100_000_000_000)
    assert all(HEX16.match(i) for i in (older, newer, same_ms))
    assert older < newer < same_ms
    assert int(newer, 16) >> 20 == 1_100_000_000_000


def test_history_ids_strictly_increase_with_gaps_and_are_seedable() -> None:
    def history_ids(seed: int) -> list[int]:
        mailbox = Mailbox("a@example.test", seed=seed, history_gap_max=10)
        ids = [mailbox.history_id]
        for n in range(30):
            message_id = mailbox.add_message(make_message(f"m{n}"))
            ids.append(mailbox.history_id)
            mailbox.modify_labels(message_id, add=["STARRED"])
            ids.append(mailbox.history_id)
        return ids

    ids = history_ids(7)
    assert all(b > a for a, b in itertools.pairwise(ids))
    assert any(b - a > 1 for a, b in itertools.pairwise(ids)), "expected gaps between history ids"
    assert history_ids(7) == ids
    assert history_ids(8) != ids


def test_add_message_records_messages_added_with_default_labels() -> None:
    mailbox = Mailbox("a@example.test", seed=2)
    start = mailbox.history_id
    message_id = mailbox.add_message(make_message())
    [record] = mailbox.history_since(start)
    assert record.id == mailbox.history_id
    added = record.changes["messagesAdded"][0]["message"]
    assert added == {"id": message_id, "threadId": message_id, "labelIds": ["INBOX", "UNREAD"]}
    assert mailbox.get_message(message_id).history_id == record.id


def test_modify_labels_records_only_real_changes() -> None:
    mailbox = Mailbox("a@example.test", seed=3)
    message_id = mailbox.add_message(make_message(), label_ids=["INBOX"])
    start = mailbox.history_id
    mailbox.modify_labels(message_id, add=["INBOX"], remove=["UNREAD"])  # no actual change
    assert mailbox.history_since(start) == []
    assert mailbox.history_id == start
    snapshot = mailbox.modify_labels(message_id, add=["STARRED", "INBOX"], remove=["UNREAD"])
    [record] = mailbox.history_since(start)
    assert record.changes == {
        "labelsAdded": [
            {
                "message": {"id": message_id, "threadId": message_id, "labelIds": ["INBOX", "STARRED"]},
                "labelIds": ["STARRED"],
            }
        ]
    }
    assert snapshot.label_ids == ("INBOX", "STARRED")
    assert snapshot.history_id == record.id
    mailbox.modify_labels(message_id, add=["UNREAD"], remove=["INBOX"])
    last = mailbox.history_since(record.id)[0]
    assert last.changes["labelsAdded"][0]["labelIds"] == ["UNREAD"]
    assert last.changes["labelsRemoved"][0]["labelIds"] == ["INBOX"]
    assert last.changes["labelsRemoved"][0]["message"]["labelIds"] == ["STARRED", "UNREAD"]


def test_modify_and_add_reject_unknown_labels_and_messages() -> None:
    mailbox = Mailbox("a@example.test", seed=4)
    message_id = mailbox.add_message(make_message())
    with pytest.raises(UnknownLabel):
        mailbox.modify_labels(message_id, add=["Label_99"])
    with pytest.raises(ValueError, match="both added and removed"):
        mailbox.modify_labels(message_id, add=["STARRED"], remove=["STARRED"])
    with pytest.raises(UnknownMessage):
        mailbox.modify_labels("0000000000000000", add=["STARRED"])
    with pytest.raises(UnknownMessage):
        mailbox.delete_message("0000000000000000")
    with pytest.raises(UnknownLabel):
        mailbox.add_message(make_message(), label_ids=["NOPE"])
    with pytest.raises(TypeError):
        mailbox.add_message("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="16 lowercase hex"):
        mailbox.add_message(make_message(), thread_id="thread-1")


def test_delete_records_messages_deleted_and_removes_the_message() -> None:
    mailbox = Mailbox("a@example.test", seed=5)
    message_id = mailbox.add_message(make_message(), label_ids=["INBOX", "STARRED"])
    start = mailbox.history_id
    mailbox.delete_message(message_id)
    [record] = mailbox.history_since(start)
    assert record.changes["messagesDeleted"][0]["message"]["labelIds"] == ["INBOX", "STARRED"]
    assert not mailbox.has_message(message_id)
    assert mailbox.messages_total == 0
    assert mailbox.threads_total == 0


def test_user_labels_get_label_n_ids_and_unique_names() -> None:
    mailbox = Mailbox("a@example.test", seed=6)
    first = mailbox.create_label("Projects/Alpha")
    second = mailbox.create_label("Receipts")
    assert (first, second) == ("Label_1", "Label_2")
    assert mailbox.label(first).type == "user"
    assert mailbox.label("INBOX").type == "system"
    with pytest.raises(LabelExists):
        mailbox.create_label("receipts")
    with pytest.raises(ValueError):
        mailbox.create_label("  ")
    ids = {label.id for label in mailbox.labels()}
    assert {"INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CHAT"} <= ids
    assert {"CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES"} <= ids


def test_threads_by_references_in_reply_to_and_subject() -> None:
    mailbox = Mailbox("a@example.test", seed=7)
    root = mailbox.add_message(make_message("Plans", message_id="root@x"))
    reply = mailbox.add_message(make_message("Re: Plans", message_id="r1@x", in_reply_to="root@x"))
    deep = mailbox.add_message(make_message("totally different", message_id="r2@x", references="<root@x> <r1@x>"))
    by_subject = mailbox.add_message(make_message("  RE: fwd:  plans "))
    aw = mailbox.add_message(make_message("AW: Plans"))
    other = mailbox.add_message(make_message("Something else"))
    threads = {m: mailbox.get_message(m).thread_id for m in (root, reply, deep, by_subject, aw, other)}
    assert threads[root] == root  # a thread's id is its first message's id
    assert threads[reply] == threads[deep] == threads[by_subject] == threads[aw] == root
    assert threads[other] == other
    assert [m.id for m in mailbox.thread(root)] == sorted([root, reply, deep, by_subject, aw])


def test_empty_subjects_do_not_thread_together() -> None:
    mailbox = Mailbox("a@example.test", seed=8)
    first = mailbox.add_message(make_message(""))
    second = mailbox.add_message(make_message("Re:"))
    assert mailbox.get_message(first).thread_id != mailbox.get_message(second).thread_id


def test_bulk_load_threads_a_parent_that_arrives_after_its_reply() -> None:
    mailbox = Mailbox("a@example.test", seed=9)
    early_reply = NewMessage(
        make_message("x", message_id="child@x", in_reply_to="parent@x", date=datetime(2002, 1, 1, tzinfo=UTC))
    )
    late_parent = NewMessage(make_message("y", message_id="parent@x", date=datetime(2002, 2, 1, tzinfo=UTC)))
    ids = mailbox.add_messages([late_parent, early_reply])
    assert len({mailbox.get_message(i).thread_id for i in ids}) == 1


def test_bulk_load_writes_no_history_and_moves_the_floor() -> None:
    mailbox = Mailbox("a@example.test", seed=10)
    before = mailbox.history_id
    items = [NewMessage(make_message(f"bulk {n}"), label_ids=["INBOX"]) for n in range(5)]
    ids = mailbox.add_messages(items)
    assert len(ids) == 5
    assert mailbox.history_floor == mailbox.history_id > before
    assert mailbox.history_since(mailbox.history_id) == []
    with pytest.raises(HistoryExpired):
        mailbox.history_since(before)
    history_ids = [mailbox.get_message(i).history_id for i in ids]
    assert len(set(history_ids)) == 5 and max(history_ids) == mailbox.history_id


def test_expire_history_and_retention_by_count_and_age() -> None:
    now = [1_000_000.0]
    mailbox = Mailbox("a@example.test", seed=11, clock=lambda: now[0])
    start = mailbox.history_id
    message_id = mailbox.add_message(make_message())
    mailbox.expire_history()
    with pytest.raises(HistoryExpired):
        mailbox.history_since(start)
    assert mailbox.history_since(mailbox.history_id) == []

    mailbox.history_retention = HistoryRetention(max_records=2)
    after_expiry = mailbox.history_id
    for label in ("STARRED", "IMPORTANT", "SENT"):
        mailbox.modify_labels(message_id, add=[label])
    with pytest.raises(HistoryExpired):
        mailbox.history_since(after_expiry)
    kept = mailbox.history_since(mailbox.history_floor)
    assert len(kept) == 2

    mailbox.history_retention = HistoryRetention(max_age_seconds=60)
    anchor = mailbox.history_id
    mailbox.modify_labels(message_id, remove=["SENT"])
    assert len(mailbox.history_since(anchor)) == 1
    now[0] += 61
    with pytest.raises(HistoryExpired):
        mailbox.history_since(anchor)
    with pytest.raises(ValueError):
        HistoryRetention(max_records=-1)


def test_state_users_tokens_and_me() -> None:
    state = EmulatorState(seed=1)
    mailbox = state.add_user("Solo@Example.test", refresh_token="1//fixed")
    assert state.mailbox("me") is mailbox
    assert state.mailbox("solo@example.test") is mailbox
    assert state.credentials("solo@example.test").refresh_token == "1//fixed"
    state.add_user("second@example.test")
    with pytest.raises(UnknownUser):
        state.mailbox("me")
    with pytest.raises(UnknownUser):
        state.mailbox("nobody@example.test")
    with pytest.raises(ValueError):
        state.add_user("not-an-address")
    with pytest.raises(ValueError):
        state.add_user("third@example.test", refresh_token="1//fixed")
    token = state.access_token_for("solo@example.test")
    assert state.check_access_token(token) == "Solo@Example.test"


def test_concurrent_mutations_from_threads_keep_history_consistent() -> None:
    state = EmulatorState(seed=12)
    mailbox = state.add_user("busy@example.test")
    start = mailbox.history_id
    ids = [mailbox.add_message(make_message(f"t{n}")) for n in range(40)]

    def flip(chunk: list[str]) -> None:
        for message_id in chunk:
            mailbox.modify_labels(message_id, add=["STARRED"])
            mailbox.modify_labels(message_id, remove=["UNREAD"])

    workers = [threading.Thread(target=flip, args=(ids[n::4],)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = mailbox.history_since(start)
    assert len(records) == 40 + 80
    record_ids = [r.id for r in records]
    assert record_ids == sorted(set(record_ids))
    assert all(m.label_ids == ("INBOX", "STARRED") for m in mailbox.messages())


def test_snapshot_message_ids_and_label_ids() -> None:
    mailbox = Mailbox("a@example.test", seed=13)
    raw = make_message("snap")
    first = mailbox.add_message(raw, label_ids=["STARRED", "INBOX"])
    second = mailbox.add_message(make_message("other"))
    assert sorted(mailbox.message_ids()) == sorted([first, second])
    assert mailbox.message_label_ids(first) == ("STARRED", "INBOX")
    with pytest.raises(UnknownMessage):
        mailbox.message_label_ids("ffffffffffffffff")
    snapshot = mailbox.snapshot()
    assert snapshot["historyId"] == str(mailbox.history_id)
    assert [row["id"] for row in snapshot["messages"]] == sorted([first, second])
    row = next(row for row in snapshot["messages"] if row["id"] == first)
    assert row == {
        "id": first,
        "threadId": first,
        "labelIds": ["INBOX", "STARRED"],
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
