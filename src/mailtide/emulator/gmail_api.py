"""The Gmail REST methods the emulator serves, at Gmail's paths (/gmail/v1/users/{userId}/...)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from mailtide.emulator.admission import admitted
from mailtide.emulator.api_errors import forbidden, invalid_argument, not_found, unauthenticated
from mailtide.emulator.errors import HistoryExpired, InvalidAccessToken, UnknownLabel, UnknownMessage
from mailtide.emulator.history import HISTORY_TYPES, HistoryRecord
from mailtide.emulator.mailbox import Mailbox
from mailtide.emulator.message import MessageSnapshot
from mailtide.emulator.render import MESSAGE_FORMATS, find_part, message_json, parse_attachment_id, part_data
from mailtide.emulator.search import QueryError, parse_query
from mailtide.emulator.state import EmulatorState

logger = logging.getLogger(__name__)

BASE = "/gmail/v1/users/{userId}"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
_SPAM_TRASH = frozenset({"SPAM", "TRASH"})

router = APIRouter()


# ------------------------------------------------------------ dependencies
def emulator_state(request: Request) -> EmulatorState:
    state: EmulatorState = request.app.state.emulator
    return state


def user_mailbox(request: Request, userId: str, state: EmulatorState = Depends(emulator_state)) -> Iterator[Mailbox]:
    """Authenticate the bearer token, check userId against it, then admit the call: quota units charged
    (or Gmail's rate-limit answer), counted in flight while it runs, injected faults applied."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated()
    try:
        email = state.check_access_token(token.strip())
    except InvalidAccessToken:
        raise unauthenticated() from None
    if userId != "me" and userId.lower() != email.lower():
        raise forbidden(f"Delegation denied for {email}")
    route = request.scope.get("route")
    with admitted(state, request, email, getattr(route, "name", "") or ""):
        yield state.mailbox(email)


# scope="function": the call leaves the in-flight count before its answer is sent, as the client sees it.
MailboxDep = Annotated[Mailbox, Depends(user_mailbox, scope="function")]
StateDep = Annotated[EmulatorState, Depends(emulator_state)]


# ------------------------------------------------------------------ params
def _int_param(name: str, raw: str | None, default: int, *, low: int = 1, clamp: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_argument(f"Invalid value for {name}: {raw!r} is not an integer") from None
    if value < low:
        raise invalid_argument(f"Invalid value for {name}: {value} (must be >= {low})")
    return min(value, clamp) if clamp is not None else value


def _bool_param(name: str, raw: str | None, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise invalid_argument(f"Invalid value for {name}: {raw!r} (use true or false)")


def _format_param(raw: str | None, allowed: tuple[str, ...]) -> str:
    fmt = (raw or "full").lower()
    if fmt not in allowed:
        raise invalid_argument(f"Invalid value for format: {raw!r} (use one of {', '.join(allowed)})")
    return fmt


def _encode_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError, RecursionError):
        payload = None
    if not isinstance(payload, dict) or payload.get("t") != kind:
        raise invalid_argument(f"Invalid pageToken: {token!r}")
    return payload


# ----------------------------------------------------------------- methods
@router.get(BASE + "/profile", name="getProfile")
def get_profile(mailbox: MailboxDep, state: StateDep) -> dict[str, Any]:
    with state.lock:
        return {
            "emailAddress": mailbox.email,
            "messagesTotal": mailbox.messages_total,
            "threadsTotal": mailbox.threads_total,
            "historyId": str(mailbox.history_id),
        }


@router.get(BASE + "/labels", name="labels.list")
def list_labels(mailbox: MailboxDep) -> dict[str, Any]:
    return {"labels": [label.to_json() for label in mailbox.labels()]}


@router.get(BASE + "/labels/{labelId}", name="labels.get")
def get_label(mailbox: MailboxDep, labelId: str) -> dict[str, Any]:
    try:
        return mailbox.label(labelId).to_json()
    except UnknownLabel:
        raise not_found() from None


@router.get(BASE + "/messages", name="messages.list")
def list_messages(
    mailbox: MailboxDep,
    state: StateDep,
    q: str | None = None,
    labelIds: Annotated[list[str] | None, Query()] = None,
    pageToken: str | None = None,
    maxResults: str | None = None,
    includeSpamTrash: str | None = None,
) -> dict[str, Any]:
    page_size = _int_param("maxResults", maxResults, DEFAULT_PAGE_SIZE, clamp=MAX_PAGE_SIZE)
    include_spam_trash = _bool_param("includeSpamTrash", includeSpamTrash, False)
    wanted_labels = [label for label in (labelIds or []) if label]
    labels = mailbox.labels()
    known = {label.id for label in labels}
    for label_id in wanted_labels:
        if label_id not in known:
            raise invalid_argument(f"Invalid label: {label_id}")
    try:
        query = parse_query(q or "", labels=labels, now=state.now())
    except QueryError as exc:
        raise invalid_argument(f"Invalid query: {exc}") from None
    exclude_spam_trash = not (
        include_spam_trash or query.explicit_spam_trash or _SPAM_TRASH.intersection(wanted_labels)
    )
    after: tuple[int, str] | None = None
    if pageToken:
        position = _decode_token(pageToken, "m").get("k")
        if not (isinstance(position, list) and len(position) == 2 and isinstance(position[0], int)):
            raise invalid_argument(f"Invalid pageToken: {pageToken!r}")
        after = (position[0], str(position[1]))

    def selected(message: MessageSnapshot) -> bool:
        if exclude_spam_trash and _SPAM_TRASH.intersection(message.label_ids):
            return False
        if any(label not in message.label_ids for label in wanted_labels):
            return False
        return query.matches(message)

    matches = [m for m in mailbox.messages() if selected(m)]
    start = 0
    if after is not None:
        start = next(
            (i for i, m in enumerate(matches) if (m.internal_date_ms, m.id) < after),
            len(matches),
        )
    page = matches[start : start + page_size]
    body: dict[str, Any] = {}
    if page:
        body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
    if start + page_size < len(matches):
        last = page[-1]
        body["nextPageToken"] = _encode_token({"t": "m", "k": [last.internal_date_ms, last.id]})
    body["resultSizeEstimate"] = len(matches)
    return body


@router.get(BASE + "/messages/{messageId}", name="messages.get")
def get_message(
    mailbox: MailboxDep,
    messageId: str,
    format: str | None = None,
    metadataHeaders: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    fmt = _format_param(format, MESSAGE_FORMATS)
    try:
        message = mailbox.get_message(messageId)
    except UnknownMessage:
        raise not_found() from None
    return message_json(message, fmt, metadataHeaders)


@router.get(BASE + "/messages/{messageId}/attachments/{attachmentId}", name="messages.attachments.get")
def get_attachment(mailbox: MailboxDep, messageId: str, attachmentId: str) -> dict[str, Any]:
    location = parse_attachment_id(attachmentId)
    if location is None or location[0] != messageId:
        raise invalid_argument("Invalid attachment token")
    try:
        message = mailbox.get_message(messageId)
    except UnknownMessage:
        raise not_found() from None
    part = find_part(message.content.parse(), location[1])
    if part is None:
        raise not_found()
    data = part_data(part)
    return {
        "attachmentId": attachmentId,
        "size": len(data),
        "data": base64.urlsafe_b64encode(data).decode("ascii"),
    }


@router.get(BASE + "/threads/{threadId}", name="threads.get")
def get_thread(
    mailbox: MailboxDep,
    threadId: str,
    format: str | None = None,
    metadataHeaders: Annotated[list[str] | None, Query()] = None,
) -> dict[str, Any]:
    fmt = _format_param(format, ("full", "metadata", "minimal"))
    try:
        messages = mailbox.thread(threadId)
    except UnknownMessage:
        raise not_found() from None
    return {
        "id": threadId,
        "historyId": str(max(m.history_id for m in messages)),
        "messages": [message_json(m, fmt, metadataHeaders) for m in messages],
    }


@router.get(BASE + "/history", name="history.list")
def list_history(
    mailbox: MailboxDep,
    state: StateDep,
    startHistoryId: str | None = None,
    pageToken: str | None = None,
    maxResults: str | None = None,
    historyTypes: Annotated[list[str] | None, Query()] = None,
    labelId: str | None = None,
) -> dict[str, Any]:
    if startHistoryId is None or startHistoryId == "":
        raise invalid_argument("Missing required parameter: startHistoryId")
    if not startHistoryId.isdigit() or int(startHistoryId) >= 1 << 64:
        raise invalid_argument(f"Invalid value for startHistoryId: {startHistoryId!r}")
    start = int(startHistoryId)
    page_size = _int_param("maxResults", maxResults, DEFAULT_PAGE_SIZE, clamp=MAX_PAGE_SIZE)
    types: set[str] | None = None
    if historyTypes:
        types = set()
        for name in historyTypes:
            if name not in HISTORY_TYPES:
                raise invalid_argument(f"Invalid value for historyTypes: {name!r} (use {', '.join(HISTORY_TYPES)})")
            types.add(HISTORY_TYPES[name])
    after = start
    if pageToken:
        position = _decode_token(pageToken, "h").get("after")
        if not isinstance(position, int) or position < start:
            raise invalid_argument(f"Invalid pageToken: {pageToken!r}")
        after = position
    with state.lock:  # the records and the current history id must agree
        try:
            if start < mailbox.history_floor:  # no longer retained: the client must full-sync
                raise HistoryExpired(f"history before {mailbox.history_floor} expired")
            records = mailbox.history_since(after)
        except HistoryExpired:
            raise not_found() from None
        current = mailbox.history_id
    rendered: list[dict[str, Any]] = []
    more = False
    last_id = after
    for record, body in _render_history(records, types, labelId):
        if len(rendered) == page_size:
            more = True
            break
        rendered.append(body)
        last_id = record
    response: dict[str, Any] = {}
    if rendered:
        response["history"] = rendered
    if more:
        response["nextPageToken"] = _encode_token({"t": "h", "after": last_id})
    response["historyId"] = str(current)
    return response


def _render_history(
    records: list[HistoryRecord], types: set[str] | None, label_id: str | None
) -> Iterator[tuple[int, dict[str, Any]]]:
    for record in records:
        body = record.to_json(types, label_id)
        if body is not None:
            yield record.id, body
