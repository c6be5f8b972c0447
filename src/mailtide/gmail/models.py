"""Typed views of Gmail API responses. Ids and history ids arrive as strings; history ids become ints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Profile(_Model):
    email_address: str = Field(alias="emailAddress")
    history_id: int = Field(alias="historyId")
    messages_total: int = Field(0, alias="messagesTotal")
    threads_total: int = Field(0, alias="threadsTotal")


class Label(_Model):
    id: str
    name: str
    type: str = "user"
    message_list_visibility: str | None = Field(None, alias="messageListVisibility")
    label_list_visibility: str | None = Field(None, alias="labelListVisibility")


class MessageRef(_Model):
    id: str
    thread_id: str = Field(alias="threadId")


class MessageList(_Model):
    messages: list[MessageRef] = Field(default_factory=list)
    next_page_token: str | None = Field(None, alias="nextPageToken")
    result_size_estimate: int = Field(0, alias="resultSizeEstimate")


class Message(_Model):
    """messages.get in format=raw (raw set) or format=minimal (raw None)."""

    id: str
    thread_id: str = Field(alias="threadId")
    label_ids: list[str] = Field(default_factory=list, alias="labelIds")
    snippet: str = ""
    history_id: int = Field(alias="historyId")
    internal_date: int = Field(0, alias="internalDate")
    size_estimate: int = Field(0, alias="sizeEstimate")
    raw: bytes | None = None  # decoded from base64url by the client


class HistoryMessage(_Model):
    id: str
    thread_id: str | None = Field(None, alias="threadId")
    label_ids: list[str] = Field(default_factory=list, alias="labelIds")


class MessageChange(_Model):
    """messagesAdded / messagesDeleted entry."""

    message: HistoryMessage


class LabelChange(_Model):
    """labelsAdded / labelsRemoved entry."""

    message: HistoryMessage
    label_ids: list[str] = Field(default_factory=list, alias="labelIds")


class HistoryRecord(_Model):
    id: int
    messages_added: list[MessageChange] = Field(default_factory=list, alias="messagesAdded")
    messages_deleted: list[MessageChange] = Field(default_factory=list, alias="messagesDeleted")
    labels_added: list[LabelChange] = Field(default_factory=list, alias="labelsAdded")
    labels_removed: list[LabelChange] = Field(default_factory=list, alias="labelsRemoved")


class HistoryPage(_Model):
    # Gmail omits `history` when there are no changes (and, reportedly, on some later pages).
    history: list[HistoryRecord] = Field(default_factory=list)
    history_id: int = Field(alias="historyId")
    next_page_token: str | None = Field(None, alias="nextPageToken")


class WatchResponse(_Model):
    """users.watch: the mailbox's current history id, and when notifications stop (epoch ms)."""

    history_id: int = Field(alias="historyId")
    expiration: int  # epoch milliseconds
