"""Labels: Gmail's system labels and the mapping from Google Takeout's X-Gmail-Labels names."""

from __future__ import annotations

from dataclasses import dataclass

SYSTEM_LABEL_IDS: tuple[str, ...] = (
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
    "CHAT",
)

# Gmail hides these from the message list / label list; the rest are shown.
_HIDDEN_IN_LABEL_LIST = {"UNREAD", "CHAT", "CATEGORY_PERSONAL"}


@dataclass(frozen=True)
class Label:
    id: str
    name: str
    type: str  # "system" | "user"
    message_list_visibility: str = "show"
    label_list_visibility: str = "labelShow"

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "messageListVisibility": self.message_list_visibility,
            "labelListVisibility": self.label_list_visibility,
        }


def system_labels() -> list[Label]:
    return [
        Label(
            id=label_id,
            name=label_id,
            type="system",
            message_list_visibility="hide" if label_id in _HIDDEN_IN_LABEL_LIST else "show",
            label_list_visibility="labelHide" if label_id in _HIDDEN_IN_LABEL_LIST else "labelShow",
        )
        for label_id in SYSTEM_LABEL_IDS
    ]


# Takeout label name (lowercased) -> system label id.
_TAKEOUT_SYSTEM = {
    "inbox": "INBOX",
    "unread": "UNREAD",
    "important": "IMPORTANT",
    "sent": "SENT",
    "starred": "STARRED",
    "spam": "SPAM",
    "trash": "TRASH",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "chat": "CHAT",
    "chats": "CHAT",
    "category personal": "CATEGORY_PERSONAL",
    "category primary": "CATEGORY_PERSONAL",
    "category social": "CATEGORY_SOCIAL",
    "category promotions": "CATEGORY_PROMOTIONS",
    "category updates": "CATEGORY_UPDATES",
    "category forums": "CATEGORY_FORUMS",
}


@dataclass
class TakeoutLabels:
    """What an X-Gmail-Labels header says: system label ids plus user label names."""

    system_ids: list[str]
    user_names: list[str]


def split_label_list(value: str) -> list[str]:
    """Split a comma-separated label list; "double quotes" protect commas, backslash escapes."""
    names: list[str] = []
    current: list[str] = []
    quoted = False
    chars = iter(value)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            names.append("".join(current))
            current = []
        else:
            current.append(char)
    names.append("".join(current))
    return [name.strip() for name in names if name.strip()]


def takeout_labels(decoded_header: str) -> TakeoutLabels:
    """Map a decoded X-Gmail-Labels value to Gmail label ids (system) and user label names.

    "Opened" means read and "Archived" means not in the inbox: both only remove labels.
    """
    system_ids: list[str] = []
    user_names: list[str] = []
    opened = archived = False
    for name in split_label_list(decoded_header):
        key = " ".join(name.lower().split())
        if key == "opened":
            opened = True
        elif key == "archived":
            archived = True
        elif key in _TAKEOUT_SYSTEM:
            label_id = _TAKEOUT_SYSTEM[key]
            if label_id not in system_ids:
                system_ids.append(label_id)
        elif name not in user_names:
            user_names.append(name)
    if opened and "UNREAD" in system_ids:
        system_ids.remove("UNREAD")
    if archived and "INBOX" in system_ids:
        system_ids.remove("INBOX")
    return TakeoutLabels(system_ids=system_ids, user_names=user_names)


# Folder names (lowercased) with a meaning in mail exports: the folder's system label
# replaces INBOX in the default labels of the messages inside it.
FOLDER_SYSTEM_LABELS = {
    "inbox": "INBOX",
    "spam": "SPAM",
    "junk": "SPAM",
    "trash": "TRASH",
    "deleted items": "TRASH",
    "sent": "SENT",
    "sent items": "SENT",
    "sent mail": "SENT",
    "drafts": "DRAFT",
}


def name_key(name: str) -> str:
    """How Gmail search compares label names: case-insensitive, '-' matches space and '/'."""
    return "".join("-" if c in " /-" else c for c in name.lower())
