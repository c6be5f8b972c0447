"""Gmail push notifications: the `{emailAddress, historyId}` payload and Pub/Sub's push envelope.

Tolerant where Gmail and Pub/Sub are loose (historyId as a JSON number or string; data in standard
or URL-safe base64, padded or not; both spellings of the envelope's id and time fields) and strict
about everything else: anything else raises MalformedNotification, which callers log and acknowledge.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_HISTORY_ID = (1 << 64) - 1
MAX_DATA_BYTES = 64 * 1024  # a Gmail notification is ~60 bytes; anything huge is not one
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-]*={0,2}")


class MalformedNotification(ValueError):
    """The payload is not a Gmail notification; `reason` says why (logged, then acknowledged)."""


@dataclass(frozen=True)
class GmailNotification:
    email: str
    history_id: int


@dataclass(frozen=True)
class PushEnvelope:
    """What a push request carries besides the notification itself (for logs and deduplication)."""

    data: bytes
    message_id: str | None
    publish_time: str | None
    subscription: str | None
    attributes: dict[str, str] = field(default_factory=dict)


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not (Pub/Sub sends standard; some proxies re-encode)."""
    compact = "".join(text.split())
    if not _BASE64.fullmatch(compact):
        raise MalformedNotification("data is not base64")
    compact = compact.rstrip("=").replace("-", "+").replace("_", "/")
    if len(compact) % 4 == 1:
        raise MalformedNotification("data is not base64 (bad length)")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedNotification(f"data is not base64 ({exc})") from None


def parse_notification(data: bytes) -> GmailNotification:
    """The decoded message data (JSON) -> GmailNotification."""
    if len(data) > MAX_DATA_BYTES:
        raise MalformedNotification(f"data is {len(data)} bytes; a Gmail notification is tiny")
    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedNotification(f"data is not JSON ({exc.__class__.__name__})") from None
    except RecursionError:
        raise MalformedNotification("data is JSON nested too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedNotification("data is not a JSON object")
    email = payload.get("emailAddress")
    if not isinstance(email, str) or "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise MalformedNotification(f"emailAddress is missing or not an address: {email!r}")
    return GmailNotification(email, _history_id(payload.get("historyId")))


def _history_id(value: Any) -> int:
    # JSON number in real traffic, string in Google's documentation: accept both, nothing else.
    if isinstance(value, bool):
        raise MalformedNotification(f"historyId is not a number: {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise MalformedNotification(f"historyId is missing or not an unsigned integer: {value!r}")
    if not 0 < number <= MAX_HISTORY_ID:
        raise MalformedNotification(f"historyId {number} is out of range")
    return number


def parse_push_body(body: bytes) -> PushEnvelope:
    """A push request body -> PushEnvelope with the decoded message data."""
    try:
        envelope = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedNotification("push body is not JSON") from None
    except RecursionError:  # json's parser recurses once per nesting level
        raise MalformedNotification("push body is JSON nested too deeply") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("message"), dict):
        raise MalformedNotification("push body has no 'message' object")
    message: dict[str, Any] = envelope["message"]
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise MalformedNotification("push message has no 'data'")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        attributes = {}
    subscription = envelope.get("subscription")
    return PushEnvelope(
        data=decode_base64(data),
        message_id=_text(message.get("messageId", message.get("message_id"))),
        publish_time=_text(message.get("publishTime", message.get("publish_time"))),
        subscription=subscription if isinstance(subscription, str) else None,
        attributes={str(k): str(v) for k, v in attributes.items()},
    )


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
