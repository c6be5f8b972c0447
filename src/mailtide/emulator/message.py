"""One stored message: immutable raw content (parsed lazily) plus its mutable mailbox state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message

from mailtide.emulator import mime
from mailtide.emulator.mime import HeaderBlock

_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


class MessageContent:
    """The raw bytes and what is derived from them; computed on first use, then cached.

    Derived values depend only on the bytes, so a race between two threads computing the same
    value is harmless.
    """

    __slots__ = ("_attachment", "_decoded", "_headers", "_snippet", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._headers: HeaderBlock | None = None
        self._decoded: dict[str, str] = {}
        self._snippet: str | None = None
        self._attachment: bool | None = None

    @property
    def headers(self) -> HeaderBlock:
        if self._headers is None:
            match = _HEADER_END_RE.search(self.raw)
            block = self.raw[: match.end()] if match else self.raw
            self._headers = mime.parse_headers(block)
        return self._headers

    def header(self, name: str) -> str:
        """Decoded value of every occurrence of a header, joined with ', ' ('' when absent)."""
        key = name.lower()
        value = self._decoded.get(key)
        if value is None:
            value = mime.header_text(self.headers, name)
            self._decoded[key] = value
        return value

    def parse(self) -> Message:
        """The whole MIME tree (not cached: bodies can be large)."""
        return mime.parse_message(self.raw)

    @property
    def snippet(self) -> str:
        if self._snippet is None:
            try:
                self._snippet = mime.snippet_of(self.parse())
            except Exception:  # the body is beyond repair; the headers still work
                self._snippet = ""
        return self._snippet

    @property
    def has_attachment(self) -> bool:
        if self._attachment is None:
            try:
                self._attachment = mime.has_attachment(self.parse())
            except Exception:
                self._attachment = False
        return self._attachment


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    content: MessageContent
    internal_date_ms: int
    history_id: int
    label_ids: list[str] = field(default_factory=list)

    def snapshot(self) -> MessageSnapshot:
        return MessageSnapshot(
            id=self.id,
            thread_id=self.thread_id,
            label_ids=tuple(self.label_ids),
            history_id=self.history_id,
            internal_date_ms=self.internal_date_ms,
            content=self.content,
        )

    def history_view(self) -> dict[str, object]:
        """The message as a history record shows it."""
        return {"id": self.id, "threadId": self.thread_id, "labelIds": list(self.label_ids)}


@dataclass(frozen=True)
class MessageSnapshot:
    """A consistent copy of a message's state, safe to read without the mailbox lock."""

    id: str
    thread_id: str
    label_ids: tuple[str, ...]
    history_id: int
    internal_date_ms: int
    content: MessageContent

    @property
    def raw(self) -> bytes:
        return self.content.raw

    @property
    def size_estimate(self) -> int:
        return len(self.content.raw)
