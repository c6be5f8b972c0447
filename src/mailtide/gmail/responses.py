"""Reading HTTP answers from Google: JSON bodies, Retry-After, short printable excerpts."""

from __future__ import annotations

import email.utils
import json
import re
import time
from datetime import datetime
from typing import Any

import httpx

from mailtide.gmail.errors import GmailError

MALFORMED = "malformedResponse"
EXCERPT_LENGTH = 160

_TAGS = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")
_RETRY_AFTER_TEXT = re.compile(r"Retry after (\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:\d\d)?)", re.IGNORECASE)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date. None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / infinity
        return None
    return max(0.0, seconds)


def retry_after_from_message(message: str, *, now: float | None = None) -> float | None:
    """Gmail sometimes says when to come back in the error text: "... Retry after 2026-05-01T12:00:00.000Z"."""
    match = _RETRY_AFTER_TEXT.search(message)
    if match is None:
        return None
    try:
        when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def excerpt(content: bytes, content_type: str) -> str:
    """A short one-line view of a body for error messages (HTML tags stripped)."""
    text = content[: EXCERPT_LENGTH * 8].decode("utf-8", errors="replace")
    if "html" in content_type.lower() or text.lstrip().startswith("<"):
        text = _TAGS.sub(" ", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text[:EXCERPT_LENGTH] + ("..." if len(text) > EXCERPT_LENGTH else "")


def body_excerpt(response: httpx.Response) -> str:
    return excerpt(response.content, response.headers.get("content-type", ""))


def parse_json_object(status: int, content: bytes, content_type: str, what: str) -> dict[str, Any]:
    """A body as a JSON object, or GmailError(status, "malformedResponse") saying what is wrong (with
    unreadable_body set when it is not JSON at all: a reply cut short, worth asking again)."""
    try:
        data = json.loads(content)
    except ValueError as exc:  # includes invalid UTF-8
        detail = f"{type(exc).__name__}: {str(exc)[:80]}"
        raise GmailError(
            status,
            MALFORMED,
            f"{what}: body is not JSON ({len(content)} bytes, {content_type or '?'}; {detail}): "
            f"{excerpt(content, content_type)!r}",
            unreadable_body=True,
        ) from None
    if not isinstance(data, dict):
        raise GmailError(status, MALFORMED, f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The body as a JSON object, or GmailError(status, "malformedResponse") saying what is wrong."""
    return parse_json_object(response.status_code, response.content, response.headers.get("content-type", ""), what)
