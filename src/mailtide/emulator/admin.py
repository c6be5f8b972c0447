"""The emulator's own control API under /_emulator/ (JSON, no auth: it only listens on loopback)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from mailtide.emulator.api_errors import conflict, invalid_argument, not_found
from mailtide.emulator.errors import DuplicateUser, LabelExists, UnknownLabel, UnknownMessage, UnknownUser
from mailtide.emulator.gmail_api import emulator_state
from mailtide.emulator.mailbox import Mailbox
from mailtide.emulator.render import message_json
from mailtide.emulator.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorState

PREFIX = "/_emulator"
router = APIRouter(prefix=PREFIX)
StateDep = Annotated[EmulatorState, Depends(emulator_state)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class NewUser(_Body):
    email: str
    refresh_token: str | None = Field(None, alias="refreshToken")
    client_id: str = Field(DEFAULT_CLIENT_ID, alias="clientId")
    client_secret: str = Field(DEFAULT_CLIENT_SECRET, alias="clientSecret")


class NewMessageBody(_Body):
    raw: str | None = None  # base64url (padding optional; standard base64 accepted)
    raw_text: str | None = Field(None, alias="rawText")  # the message as text (UTF-8)
    label_ids: list[str] | None = Field(None, alias="labelIds")
    internal_date: int | None = Field(None, alias="internalDate", ge=0)
    thread_id: str | None = Field(None, alias="threadId")


class ModifyBody(_Body):
    add_label_ids: list[str] = Field(default_factory=list, alias="addLabelIds")
    remove_label_ids: list[str] = Field(default_factory=list, alias="removeLabelIds")


class NewLabel(_Body):
    name: str


class Clock(_Body):
    now: float | None = None


def _mailbox(state: EmulatorState, email: str) -> Mailbox:
    try:
        return state.mailbox(email)
    except UnknownUser as exc:
        raise not_found(f"Unknown user: {email}") from exc


def _decode_raw(body: NewMessageBody) -> bytes:
    if (body.raw is None) == (body.raw_text is None):
        raise invalid_argument("Give exactly one of raw (base64url) and rawText")
    if body.raw_text is not None:
        return body.raw_text.encode("utf-8")
    text = (body.raw or "").strip().replace("+", "-").replace("/", "_")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("raw is not valid base64url") from None


@router.post("/users", name="_emulator.users.create")
def create_user(state: StateDep, body: NewUser) -> dict[str, Any]:
    try:
        mailbox = state.add_user(
            body.email, client_id=body.client_id, client_secret=body.client_secret, refresh_token=body.refresh_token
        )
    except DuplicateUser as exc:
        raise conflict(str(exc)) from None
    except ValueError as exc:
        raise invalid_argument(str(exc)) from None
    credentials = state.credentials(body.email)
    return {
        "email": mailbox.email,
        "clientId": credentials.client_id,
        "clientSecret": credentials.client_secret,
        "refreshToken": credentials.refresh_token,
        "historyId": str(mailbox.history_id),
    }


@router.get("/users", name="_emulator.users.list")
def list_users(state: StateDep) -> dict[str, Any]:
    return {"users": state.users()}


@router.post("/users/{email}/messages", name="_emulator.messages.add")
def add_message(state: StateDep, email: str, body: NewMessageBody) -> dict[str, Any]:
    mailbox = _mailbox(state, email)
    raw = _decode_raw(body)
    try:
        message_id = mailbox.add_message(
            raw, label_ids=body.label_ids, internal_date_ms=body.internal_date, thread_id=body.thread_id
        )
    except (UnknownLabel, ValueError) as exc:
        raise invalid_argument(str(exc)) from None
    message = mailbox.get_message(message_id)
    return {"id": message.id, "threadId": message.thread_id, "historyId": str(message.history_id)}


@router.delete("/users/{email}/messages/{message_id}", name="_emulator.messages.delete")
def delete_message(state: StateDep, email: str, message_id: str) -> dict[str, Any]:
    mailbox = _mailbox(state, email)
    try:
        mailbox.delete_message(message_id)
    except UnknownMessage:
        raise not_found() from None
    return {"historyId": str(mailbox.history_id)}


@router.post("/users/{email}/messages/{message_id}/modify", name="_emulator.messages.modify")
def modify_message(state: StateDep, email: str, message_id: str, body: ModifyBody) -> dict[str, Any]:
    mailbox = _mailbox(state, email)
    try:
        message = mailbox.modify_labels(message_id, add=body.add_label_ids, remove=body.remove_label_ids)
    except UnknownMessage:
        raise not_found() from None
    except ValueError as exc:  # unknown label, or one label both added and removed
        raise invalid_argument(str(exc)) from None
    return message_json(message, "minimal")


@router.post("/users/{email}/labels", name="_emulator.labels.create")
def create_label(state: StateDep, email: str, body: NewLabel) -> dict[str, Any]:
    mailbox = _mailbox(state, email)
    try:
        label_id = mailbox.create_label(body.name)
    except LabelExists as exc:
        raise conflict(str(exc)) from None
    except ValueError as exc:
        raise invalid_argument(str(exc)) from None
    return mailbox.label(label_id).to_json()


@router.delete("/users/{email}/labels/{label_id}", name="_emulator.labels.delete")
def delete_label(state: StateDep, email: str, label_id: str, keep_on_messages: bool = False) -> dict[str, Any]:
    """Delete a user label; ?keep_on_messages=true leaves it on its messages, unlisted (a hidden label)."""
    mailbox = _mailbox(state, email)
    try:
        mailbox.delete_label(label_id, keep_on_messages=keep_on_messages)
    except UnknownLabel:
        raise not_found() from None
    except ValueError as exc:
        raise invalid_argument(str(exc)) from None
    return {"historyId": str(mailbox.history_id)}


@router.post("/users/{email}/expire-history", name="_emulator.history.expire")
def expire_history(state: StateDep, email: str) -> dict[str, Any]:
    mailbox = _mailbox(state, email)
    mailbox.expire_history()
    return {"historyId": str(mailbox.history_id)}


@router.post("/users/{email}/revoke", name="_emulator.users.revoke")
def revoke(state: StateDep, email: str) -> dict[str, Any]:
    _mailbox(state, email)
    state.revoke_refresh_token(email)
    return {}


@router.post("/users/{email}/refresh-token", name="_emulator.users.reauthorize")
def reauthorize(state: StateDep, email: str) -> dict[str, Any]:
    _mailbox(state, email)
    return {"refreshToken": state.new_refresh_token(email)}


@router.post("/users/{email}/expire-access-tokens", name="_emulator.users.expire_tokens")
def expire_access_tokens(state: StateDep, email: str) -> dict[str, Any]:
    _mailbox(state, email)
    state.expire_access_tokens(email)
    return {}


@router.get("/users/{email}/snapshot", name="_emulator.users.snapshot")
def snapshot(state: StateDep, email: str) -> dict[str, Any]:
    """Every message (id, threadId, sorted labelIds, sha256 of raw) and the history id."""
    return _mailbox(state, email).snapshot()


@router.get("/counters", name="_emulator.counters")
def counters(state: StateDep) -> dict[str, Any]:
    return state.counters.snapshot()


@router.post("/counters/reset", name="_emulator.counters.reset")
def reset_counters(state: StateDep) -> dict[str, Any]:
    state.counters.reset()
    return {}


@router.post("/clock", name="_emulator.clock")
def set_clock(state: StateDep, body: Clock) -> dict[str, Any]:
    """Fix the emulator's clock (epoch seconds) or, with null, return to real time."""
    state.set_now(body.now)
    return {"now": state.now()}
