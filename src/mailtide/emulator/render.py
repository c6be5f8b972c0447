"""Messages in Gmail's JSON shapes: formats raw, minimal, metadata and full (MessagePart trees)."""

from __future__ import annotations

import base64
from collections.abc import Collection
from email.message import Message
from typing import Any

from mailtide.emulator import mime
from mailtide.emulator.message import MessageSnapshot
from mailtide.emulator.mime import HeaderBlock

MESSAGE_FORMATS = ("minimal", "full", "raw", "metadata")
_ATTACHMENT_PREFIX = "ANGjdJ"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def attachment_id(message_id: str, part_id: str) -> str:
    return _ATTACHMENT_PREFIX + b64url(f"{message_id}:{part_id}".encode()).rstrip("=")


def parse_attachment_id(value: str) -> tuple[str, str] | None:
    """(message id, part id) of an attachment id we issued, or None."""
    if not value.startswith(_ATTACHMENT_PREFIX):
        return None
    encoded = value[len(_ATTACHMENT_PREFIX) :]
    try:
        decoded = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    message_id, sep, part_id = decoded.partition(":")
    return (message_id, part_id) if sep else None


def message_json(
    message: MessageSnapshot, fmt: str = "full", metadata_headers: Collection[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": message.id,
        "threadId": message.thread_id,
        "labelIds": list(message.label_ids),
        "snippet": message.content.snippet,
        "sizeEstimate": message.size_estimate,
        "historyId": str(message.history_id),
        "internalDate": str(message.internal_date_ms),
    }
    if fmt == "raw":
        body["raw"] = b64url(message.raw)
    elif fmt == "metadata":
        body["payload"] = metadata_payload(message, metadata_headers)
    elif fmt == "full":
        body["payload"] = full_payload(message)
    return body


def _headers(part: Message | HeaderBlock, wanted: Collection[str] | None = None) -> list[dict[str, str]]:
    keep = {name.lower() for name in wanted} if wanted else None
    headers = []
    for name, value in part.items():
        if keep is not None and name.lower() not in keep:
            continue
        headers.append({"name": mime.clean_text(name), "value": mime.decode_header_value(value)})
    return headers


def metadata_payload(message: MessageSnapshot, wanted: Collection[str] | None) -> dict[str, Any]:
    headers = message.content.headers
    return {
        "partId": "",
        "mimeType": _mime_type(headers),
        "filename": "",
        "headers": _headers(headers, wanted),
        "body": {"size": 0},
    }


def _mime_type(part: Message | HeaderBlock) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def full_payload(message: MessageSnapshot) -> dict[str, Any]:
    try:
        root = message.content.parse()
    except Exception:  # unparseable: show the headers we have and the raw body
        return {
            "partId": "",
            "mimeType": "text/plain",
            "filename": "",
            "headers": _headers(message.content.headers),
            "body": {"size": message.size_estimate, "data": b64url(message.raw)},
        }
    return _part_json(message.id, root, "")


def _part_json(message_id: str, part: Message, part_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "partId": part_id,
        "mimeType": _mime_type(part),
        "filename": mime.part_filename(part),
        "headers": _headers(part),
    }
    children = _children(part)
    if children is not None:
        body["body"] = {"size": 0}
        prefix = f"{part_id}." if part_id else ""
        body["parts"] = [_part_json(message_id, child, f"{prefix}{i}") for i, child in enumerate(children)]
        return body
    data = part_data(part)
    if body["filename"]:
        body["body"] = {"attachmentId": attachment_id(message_id, part_id), "size": len(data)}
    else:
        body["body"] = {"size": len(data), "data": b64url(data)} if data else {"size": 0}
    return body


def _children(part: Message) -> list[Message] | None:
    payload = part.get_payload()
    if part.is_multipart() and isinstance(payload, list):
        return [child for child in payload if isinstance(child, Message)]
    return None


def part_data(part: Message) -> bytes:
    """A leaf part's body with its transfer encoding undone."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    return raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else b""


def find_part(root: Message, part_id: str) -> Message | None:
    """The part with this partId ("" = root, "1.0" = first child of the second child)."""
    current = root
    if part_id == "":
        return current
    for piece in part_id.split("."):
        children = _children(current)
        if children is None or not piece.isdigit() or int(piece) >= len(children):
            return None
        current = children[int(piece)]
    return current
