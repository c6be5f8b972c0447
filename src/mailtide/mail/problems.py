"""Collects what went wrong while parsing one message into one short parse_error text."""

from __future__ import annotations

from mailtide.mail.charsets import clean_text

MAX_PROBLEM_TEXT = 2000


class ProblemLog:
    def __init__(self) -> None:
        self._items: list[str] = []
        self._seen: set[str] = set()

    def add(self, where: str, what: str) -> None:
        item = clean_text(f"{where}: {what}" if where else what)  # defect texts quote raw bytes
        if item not in self._seen:
            self._seen.add(item)
            self._items.append(item)

    def __bool__(self) -> bool:
        return bool(self._items)

    def text(self) -> str | None:
        """All problems, '; '-separated, cut to a bounded length with a count of what was cut."""
        if not self._items:
            return None
        kept: list[str] = []
        length = 0
        for item in self._items:
            if length + len(item) > MAX_PROBLEM_TEXT and kept:
                break
            kept.append(item[:MAX_PROBLEM_TEXT])
            length += len(item) + 2
        rest = len(self._items) - len(kept)
        return "; ".join(kept) + (f"; (+{rest} more)" if rest else "")
