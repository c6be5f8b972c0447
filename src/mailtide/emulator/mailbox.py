"""One user's mailbox: labels, messages, threads and the history of every change.

Thread-safe: every method takes the (re-entrant) lock, shared with the owning EmulatorState, so
tests can mutate a mailbox from their own thread while the server reads it.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mailtide.emulator import mime
from mailtide.emulator.errors import HistoryExpired, LabelExists, UnknownLabel, UnknownMessage
from mailtide.emulator.history import HistoryRecord, HistoryRetention
from mailtide.emulator.labels import Label, system_labels
from mailtide.emulator.message import MessageContent, MessageSnapshot, StoredMessage

if TYPE_CHECKING:
    from mailtide.emulator.loader import LoadReport

logger = logging.getLogger(__name__)

ID_RE = re.compile(r"^[0-9a-f]{16}$")
DEFAULT_NEW_MESSAGE_LABELS = ("INBOX", "UNREAD")
_MAX_ID = (1 << 64) - 1


def format_id(value: int) -> str:
    """Gmail-style id: 16 lowercase hex digits."""
    return f"{value & _MAX_ID:016x}"


@dataclass
class NewMessage:
    """A message to insert. label_names are user labels by name (created when missing)."""

    raw: bytes
    label_ids: Sequence[str] = ()
    label_names: Sequence[str] = ()
    internal_date_ms: int | None = None
    thread_id: str | None = None
    preferred_id: str | None = None  # a Gmail id found in the source (Takeout, GYB file name)
    content: MessageContent = field(init=False)

    def __post_init__(self) -> None:
        self.content = MessageContent(self.raw)


class Mailbox:
    def __init__(
        self,
        email: str,
        *,
        lock: threading.RLock | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        history_gap_max: int = 5,
        history_retention: HistoryRetention | None = None,
    ) -> None:
        if history_gap_max < 1:
            raise ValueError("history_gap_max must be >= 1")
        self.email = email
        self._lock = lock or threading.RLock()
        self._rng = random.Random(seed)
        self._clock = clock
        self.history_gap_max = history_gap_max
        self.history_retention = history_retention or HistoryRetention()
        self._history_id = self._rng.randint(100_000, 9_000_000)
        self._history_floor = self._history_id  # startHistoryId below this -> 404
        self._records: list[HistoryRecord] = []
        self._record_ids: list[int] = []
        self._labels: dict[str, Label] = {label.id: label for label in system_labels()}
        self._next_label_number = 1
        self._messages: dict[str, StoredMessage] = {}
        self._threads: dict[str, list[str]] = {}
        self._thread_by_message_id: dict[str, str] = {}  # Message-ID header -> thread id
        self._thread_by_subject: dict[str, str] = {}
        self._id_counter = 0
        self._order: list[str] | None = None  # newest first; rebuilt after adds/deletes
        # Called with (email, record) after each history record, under the lock (Pub/Sub notifications).
        self.change_listeners: list[Callable[[str, HistoryRecord], None]] = []

    # ----------------------------------------------------------------- counters
    @property
    def history_id(self) -> int:
        with self._lock:
            return self._history_id

    @property
    def history_floor(self) -> int:
        """The oldest startHistoryId that history.list still answers."""
        with self._lock:
            self._apply_retention()
            return self._history_floor

    @property
    def messages_total(self) -> int:
        with self._lock:
            return len(self._messages)

    @property
    def threads_total(self) -> int:
        with self._lock:
            return len(self._threads)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------- labels
    def labels(self) -> list[Label]:
        with self._lock:
            return list(self._labels.values())

    def label(self, label_id: str) -> Label:
        with self._lock:
            try:
                return self._labels[label_id]
            except KeyError:
                raise UnknownLabel(f"unknown label id {label_id!r}") from None

    def find_label_by_name(self, name: str) -> Label | None:
        """Exact id, else case-insensitive name."""
        with self._lock:
            if name in self._labels:
                return self._labels[name]
            wanted = name.casefold()
            for label in self._labels.values():
                if label.name.casefold() == wanted:
                    return label
            return None

    def create_label(self, name: str) -> str:
        """Create a user label; returns its id ("Label_N")."""
        name = name.strip() if isinstance(name, str) else ""
        if not name:
            raise ValueError("label name must be a non-empty string")
        with self._lock:
            if self.find_label_by_name(name) is not None:
                raise LabelExists(f"label name exists or conflicts: {name!r}")
            return self._create_label(name)

    def _create_label(self, name: str) -> str:
        label_id = f"Label_{self._next_label_number}"
        self._next_label_number += 1
        self._labels[label_id] = Label(id=label_id, name=name, type="user")
        return label_id

    def delete_label(self, label_id: str, *, keep_on_messages: bool = False) -> None:
        """Delete a user label. Like Gmail, it is taken off every message (labelsRemoved records);
        with keep_on_messages the messages keep carrying the id that labels.list no longer returns,
        as happens with Gmail's hidden labels."""
        with self._lock:
            label = self.label(label_id)
            if label.type != "user":
                raise ValueError(f"system label {label_id!r} cannot be deleted")
            if not keep_on_messages:
                for message_id in [m.id for m in self._messages.values() if label_id in m.label_ids]:
                    self.modify_labels(message_id, remove=[label_id])
            del self._labels[label_id]

    def _label_id_for_name(self, name: str) -> str:
        existing = self.find_label_by_name(name)
        return existing.id if existing is not None else self._create_label(name)

    def check_label_ids(self, label_ids: Iterable[str]) -> list[str]:
        """The ids without duplicates; UnknownLabel for an id the mailbox does not have."""
        if isinstance(label_ids, str):
            raise TypeError("label ids must be a sequence of ids, not a string")
        with self._lock:
            return self._check_label_ids(label_ids)

    def _check_label_ids(self, label_ids: Iterable[str]) -> list[str]:
        checked: list[str] = []
        for label_id in label_ids:
            if label_id not in self._labels:
                raise UnknownLabel(f"unknown label id {label_id!r}")
            if label_id not in checked:
                checked.append(label_id)
        return checked

    # ---------------------------------------------------------------- messages
    def get_message(self, message_id: str) -> MessageSnapshot:
        with self._lock:
            return self._stored(message_id).snapshot()

    def has_message(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._messages

    def _stored(self, message_id: str) -> StoredMessage:
        try:
            return self._messages[message_id]
        except KeyError:
            raise UnknownMessage(f"unknown message id {message_id!r}") from None

    def messages(self) -> list[MessageSnapshot]:
        """Every message, newest first (internalDate, then id)."""
        with self._lock:
            if self._order is None:
                self._order = sorted(
                    self._messages, key=lambda i: (self._messages[i].internal_date_ms, i), reverse=True
                )
            return [self._messages[i].snapshot() for i in self._order]

    def message_ids(self) -> list[str]:
        with self._lock:
            return list(self._messages)

    def message_label_ids(self, message_id: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._stored(message_id).label_ids)

    def snapshot(self) -> dict[str, Any]:
        """What the mailbox holds, for comparing with a mirror: every message (id, threadId,
        sorted labelIds, sha256 of the raw bytes), sorted by id, and the current history id."""
        with self._lock:
            stored = sorted(self._messages.values(), key=lambda m: m.id)
            rows = [(m.id, m.thread_id, sorted(m.label_ids), m.content) for m in stored]
            history_id = self._history_id
        return {
            "emailAddress": self.email,
            "historyId": str(history_id),
            "messages": [
                {
                    "id": message_id,
                    "threadId": thread_id,
                    "labelIds": labels,
                    "sha256": hashlib.sha256(content.raw).hexdigest(),
                }
                for message_id, thread_id, labels, content in rows
            ],
        }

    def thread(self, thread_id: str) -> list[MessageSnapshot]:
        """The thread's messages, oldest first. Unknown thread -> UnknownMessage."""
        with self._lock:
            ids = self._threads.get(thread_id)
            if not ids:
                raise UnknownMessage(f"unknown thread id {thread_id!r}")
            snapshots = [self._messages[i].snapshot() for i in ids]
        return sorted(snapshots, key=lambda m: (m.internal_date_ms, m.id))

    def add_message(
        self,
        raw: bytes,
        *,
        label_ids: Sequence[str] | None = None,
        internal_date_ms: int | None = None,
        thread_id: str | None = None,
    ) -> str:
        """Deliver one message (a messagesAdded history record). Default labels: INBOX, UNREAD."""
        if not isinstance(raw, bytes | bytearray):
            raise TypeError("raw must be bytes")
        if thread_id is not None and not ID_RE.match(thread_id):
            raise ValueError(f"thread id must be 16 lowercase hex digits, got {thread_id!r}")
        if internal_date_ms is not None and internal_date_ms < 0:
            raise ValueError("internal_date_ms must be >= 0")
        labels = DEFAULT_NEW_MESSAGE_LABELS if label_ids is None else label_ids
        item = NewMessage(bytes(raw), label_ids=labels, internal_date_ms=internal_date_ms, thread_id=thread_id)
        with self._lock:
            self._check_label_ids(item.label_ids)
            stored = self._insert(item, record_history=True)
            return stored.id

    def add_messages(self, items: Iterable[NewMessage], *, record_history: bool = False) -> list[str]:
        """Insert many messages, oldest first so threads get their first message's id.

        Without record_history (the initial load) no history records are written; instead the
        history floor moves to the current history id, so any startHistoryId from before the
        load answers 404 and a client must do a full sync, which is what Gmail asks for too.
        """
        batch = list(items)
        for item in batch:
            if item.internal_date_ms is None:
                item.internal_date_ms = mime.internal_date_ms(item.content.headers, self.now_ms())
        batch.sort(key=lambda item: item.internal_date_ms or 0)
        with self._lock:
            ids: list[str] = []
            for item in batch:
                try:
                    ids.append(self._insert(item, record_history=record_history).id)
                except UnknownLabel as exc:
                    logger.warning("emulator.load.skip_message", extra={"reason": str(exc)})
            if not record_history and ids:
                self._drop_history(reason="bulk load")
            return ids

    def delete_message(self, message_id: str) -> None:
        """Permanent delete (not trash): a messagesDeleted record."""
        with self._lock:
            stored = self._stored(message_id)
            del self._messages[message_id]
            thread = self._threads.get(stored.thread_id, [])
            if message_id in thread:
                thread.remove(message_id)
            if not thread:
                self._threads.pop(stored.thread_id, None)
            self._order = None
            self._record({"messagesDeleted": [{"message": stored.history_view()}]})

    def modify_labels(self, message_id: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> MessageSnapshot:
        """Add/remove labels; only real changes are recorded (labelsAdded / labelsRemoved)."""
        add_ids = list(dict.fromkeys(add))
        remove_ids = list(dict.fromkeys(remove))
        both = set(add_ids) & set(remove_ids)
        if both:
            raise ValueError(f"label ids both added and removed: {sorted(both)}")
        with self._lock:
            stored = self._stored(message_id)
            self._check_label_ids(add_ids + remove_ids)
            added = [label for label in add_ids if label not in stored.label_ids]
            removed = [label for label in remove_ids if label in stored.label_ids]
            if not added and not removed:
                return stored.snapshot()
            stored.label_ids = [label for label in stored.label_ids if label not in removed] + added
            changes: dict[str, list[dict[str, object]]] = {}
            if added:
                changes["labelsAdded"] = [{"message": stored.history_view(), "labelIds": added}]
            if removed:
                changes["labelsRemoved"] = [{"message": stored.history_view(), "labelIds": removed}]
            stored.history_id = self._record(changes)
            return stored.snapshot()

    # --------------------------------------------------------- insert/threading
    def _insert(self, item: NewMessage, *, record_history: bool) -> StoredMessage:
        headers = item.content.headers
        label_ids = self._check_label_ids(item.label_ids)
        for name in item.label_names:
            label_id = self._label_id_for_name(name)
            if label_id not in label_ids:
                label_ids.append(label_id)
        if item.internal_date_ms is None:
            item.internal_date_ms = mime.internal_date_ms(headers, self.now_ms())
        message_id = self._new_id(item.internal_date_ms, item.preferred_id)
        thread_id = self._assign_thread(item, message_id)
        stored = StoredMessage(
            id=message_id,
            thread_id=thread_id,
            content=item.content,
            internal_date_ms=item.internal_date_ms,
            history_id=self._history_id,
            label_ids=label_ids,
        )
        self._messages[message_id] = stored
        self._threads.setdefault(thread_id, []).append(message_id)
        self._order = None
        if record_history:
            stored.history_id = self._record({"messagesAdded": [{"message": stored.history_view()}]})
        else:
            stored.history_id = self._bump_history_id()
        return stored

    def _new_id(self, internal_ms: int, preferred: str | None) -> str:
        if preferred and ID_RE.match(preferred) and preferred not in self._messages:
            return preferred
        self._id_counter += 1
        candidate = (internal_ms << 20) | (self._id_counter & 0xFFFFF)
        while format_id(candidate) in self._messages:
            candidate += 1
        return format_id(candidate)

    def _assign_thread(self, item: NewMessage, message_id: str) -> str:
        """Explicit thread id, else a thread its Message-ID/References/In-Reply-To points to,
        else the thread of the same normalised subject, else a new thread (id = message id).

        The ids a message references are claimed for its thread too, so a parent that arrives
        after its reply still joins the reply's thread.
        """
        headers = item.content.headers
        own_ids = mime.message_ids(headers.get("Message-ID"))
        in_reply_to = mime.message_ids(headers.get("In-Reply-To"))
        references = mime.message_ids(headers.get("References"))
        subject_key = mime.normalized_subject(item.content.header("Subject"))
        thread_id = item.thread_id
        if thread_id is None:
            for ref in [*own_ids, *in_reply_to, *reversed(references)]:
                if ref in self._thread_by_message_id:
                    thread_id = self._thread_by_message_id[ref]
                    break
        if thread_id is None and subject_key:
            thread_id = self._thread_by_subject.get(subject_key)
        if thread_id is None:
            thread_id = message_id
        for ref in [*own_ids, *in_reply_to, *references]:
            self._thread_by_message_id.setdefault(ref, thread_id)
        if subject_key:
            self._thread_by_subject.setdefault(subject_key, thread_id)
        return thread_id

    # ------------------------------------------------------------------ history
    def _bump_history_id(self) -> int:
        self._history_id += self._rng.randint(1, self.history_gap_max)
        return self._history_id

    def _record(self, changes: dict[str, list[dict[str, object]]]) -> int:
        record = HistoryRecord(id=self._bump_history_id(), created_at=self._clock(), changes=changes)
        self._records.append(record)
        self._record_ids.append(record.id)
        self._apply_retention()
        for listener in self.change_listeners:
            try:
                listener(self.email, record)
            except Exception:
                logger.exception("emulator.mailbox.change_listener_failed")
        return record.id

    def _apply_retention(self) -> None:
        retention = self.history_retention
        drop = 0
        if retention.max_records is not None and len(self._records) > retention.max_records:
            drop = len(self._records) - retention.max_records
        if retention.max_age_seconds is not None:
            oldest_kept = self._clock() - retention.max_age_seconds
            while drop < len(self._records) and self._records[drop].created_at < oldest_kept:
                drop += 1
        if drop:
            self._history_floor = max(self._history_floor, self._records[drop - 1].id)
            del self._records[:drop]
            del self._record_ids[:drop]

    def _drop_history(self, *, reason: str) -> None:
        self._records.clear()
        self._record_ids.clear()
        self._history_floor = self._history_id
        logger.info("emulator.history.dropped", extra={"email": self.email, "reason": reason})

    def expire_history(self) -> None:
        """Forget all history: any startHistoryId older than the current history id -> 404."""
        with self._lock:
            self._drop_history(reason="expire_history")

    def history_since(self, start_history_id: int) -> list[HistoryRecord]:
        """Records with id > start_history_id, oldest first; HistoryExpired if that is not retained."""
        with self._lock:
            self._apply_retention()
            if start_history_id < self._history_floor:
                raise HistoryExpired(
                    f"history before {self._history_floor} is no longer retained (asked from {start_history_id})"
                )
            index = bisect.bisect_right(self._record_ids, start_history_id)
            return self._records[index:]

    # ------------------------------------------------------------------ loading
    def load_path(
        self, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
    ) -> LoadReport:
        from mailtide.emulator.loader import load_path

        return load_path(self, path, label_ids=label_ids, record_history=record_history)

    def load_mbox(
        self, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
    ) -> LoadReport:
        from mailtide.emulator.loader import load_mbox

        return load_mbox(self, path, label_ids=label_ids, record_history=record_history)

    def load_eml_dir(
        self, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
    ) -> LoadReport:
        from mailtide.emulator.loader import load_eml_dir

        return load_eml_dir(self, path, label_ids=label_ids, record_history=record_history)

    def load_maildir(
        self, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
    ) -> LoadReport:
        from mailtide.emulator.loader import load_maildir

        return load_maildir(self, path, label_ids=label_ids, record_history=record_history)
