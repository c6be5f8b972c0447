"""History records: what changed in a mailbox, in Gmail's history.list shape."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

# historyTypes query values -> the record field they select
HISTORY_TYPES = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}


@dataclass(frozen=True)
class HistoryRetention:
    """How much history a mailbox keeps. None means no limit; expire_history() always drops all."""

    max_records: int | None = None
    max_age_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_records is not None and self.max_records < 0:
            raise ValueError("max_records must be >= 0")
        if self.max_age_seconds is not None and self.max_age_seconds < 0:
            raise ValueError("max_age_seconds must be >= 0")


@dataclass(frozen=True)
class HistoryRecord:
    """One change. Each typed list holds entries {"message": {...}} (+ "labelIds" for label changes)."""

    id: int
    created_at: float
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(
        self, history_types: Collection[str] | None = None, label_id: str | None = None
    ) -> dict[str, Any] | None:
        """Gmail's History object, keeping only the requested types / label; None if nothing is left."""
        kept: dict[str, list[dict[str, Any]]] = {}
        for name, entries in self.changes.items():
            if history_types is not None and name not in history_types:
                continue
            if label_id is not None:
                entries = [e for e in entries if _mentions_label(e, label_id)]
            if entries:
                kept[name] = entries
        if not kept:
            return None
        messages: list[dict[str, str]] = []
        seen: set[str] = set()
        for entries in kept.values():
            for entry in entries:
                message = entry["message"]
                if message["id"] not in seen:
                    seen.add(message["id"])
                    messages.append({"id": message["id"], "threadId": message["threadId"]})
        body: dict[str, Any] = {"id": str(self.id), "messages": messages}
        for name, entries in kept.items():
            body[name] = [_copy_entry(e) for e in entries]
        return body


def _mentions_label(entry: dict[str, Any], label_id: str) -> bool:
    return label_id in entry["message"]["labelIds"] or label_id in entry.get("labelIds", ())


def _copy_entry(entry: dict[str, Any]) -> dict[str, Any]:
    message = entry["message"]
    copied: dict[str, Any] = {"message": {**message, "labelIds": list(message["labelIds"])}}
    if "labelIds" in entry:
        copied["labelIds"] = list(entry["labelIds"])
    return copied
