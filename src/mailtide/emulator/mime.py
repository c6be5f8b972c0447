"""Best-effort reading of raw RFC 822 bytes: headers, dates, thread keys, snippets.

Everything here tolerates malformed input: a bad header or body yields an empty or raw value,
never an exception, because one broken message must not stop a mailbox from loading.
"""

from __future__ import annotations

import email.header
import email.utils
import html
import re
from email import policy
from email.message import Message
from email.parser import BytesParser

_MIME_PARSER = BytesParser(policy=policy.compat32)
_MSGID_RE = re.compile(r"<([^<>\s]+)>")
_WS_RE = re.compile(r"\s+")
_TAG_RE = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_REPLY_PREFIX_RE = re.compile(r"^\s*((re|fwd?|aw|sv)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_MAX_INTERNAL_MS = (1 << 43) - 1  # ids are internal ms << 20 in 64 bits
SNIPPET_LENGTH = 200


def clean_text(value: str) -> str:
    """Turn a str that may hold surrogate-escaped raw bytes into valid text (JSON-safe)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


class HeaderBlock:
    """A message's header fields in order, read leniently and fast (bulk loads parse thousands).

    Like the stdlib's compat32 parser: bytes are read as ASCII with surrogate escapes, values
    keep their folding, a leading mbox "From " line is skipped, and the first line that is
    neither a field nor a continuation ends the header block.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self._fields = fields
        self._index: dict[str, list[str]] = {}
        for name, value in fields:
            self._index.setdefault(name.lower(), []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    def get_content_type(self) -> str:
        value = (self.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        return value if value.count("/") == 1 and " " not in value else "text/plain"


_FIELD_RE = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*(.*)$", re.DOTALL)


def parse_headers(raw: bytes) -> HeaderBlock:
    """The header fields at the start of `raw` (only the header block needs to be passed)."""
    text = raw.decode("ascii", "surrogateescape")
    fields: list[tuple[str, str]] = []
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[0].startswith("From "):
        lines = lines[1:]
    for line in lines:
        if not line.strip():
            break
        if line[0] in " \t":
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, f"{value}\n{line}")
                continue
            break
        match = _FIELD_RE.match(line)
        if match is None:
            break
        fields.append((match[1], match[2]))
    return HeaderBlock(fields)


def parse_message(raw: bytes) -> Message:
    return _MIME_PARSER.parsebytes(raw)


def unfold(value: str) -> str:
    """RFC 5322 unfolding: drop the line breaks, keep the whitespace that follows them."""
    return value.replace("\r", "").replace("\n", "")


def decode_header_value(value: str | None) -> str:
    """RFC 2047-decode a header value; on any failure return the unfolded raw text."""
    if value is None:
        return ""
    if not isinstance(value, str):  # compat32 may hand back Header objects for odd input
        value = str(value)
    text = unfold(clean_text(value))
    if "=?" not in text:
        return text
    try:
        return clean_text(str(email.header.make_header(email.header.decode_header(text))))
    except Exception:  # malformed encoded words, unknown charsets
        return text


def header_text(message: HeaderBlock | Message, name: str) -> str:
    """All occurrences of a header, decoded and joined with ', '."""
    values = message.get_all(name) or []
    return ", ".join(decode_header_value(v) for v in values)


def parse_date_ms(value: str | None) -> int | None:
    """Epoch milliseconds of an RFC 5322 date, or None when it cannot be read."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(unfold(clean_text(str(value))).strip())
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed)  # a missing zone counts as UTC
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    ms = int(seconds * 1000)
    if ms < 0 or ms > _MAX_INTERNAL_MS:
        return None
    return ms


def internal_date_ms(message: HeaderBlock | Message, fallback_ms: int) -> int:
    """Date header, else the date of the first (most recent) Received header, else the fallback."""
    ms = parse_date_ms(message.get("Date"))
    if ms is not None:
        return ms
    received = message.get("Received")
    if received:
        _, _, date_part = clean_text(str(received)).rpartition(";")
        ms = parse_date_ms(date_part)
        if ms is not None:
            return ms
    return fallback_ms


def message_ids(value: str | None) -> list[str]:
    """Message-ids in a Message-ID / In-Reply-To / References value (brackets removed)."""
    if not value:
        return []
    text = clean_text(str(value))
    found = _MSGID_RE.findall(text)
    if found:
        return found
    bare = text.strip()
    return [bare] if bare and " " not in bare else []


def normalized_subject(subject: str) -> str:
    """Subject without Re:/Fwd:/Fw:/AW:/SV: prefixes, lowercased, whitespace collapsed."""
    stripped = _REPLY_PREFIX_RE.sub("", subject)
    return _WS_RE.sub(" ", stripped).strip().lower()


def _decoded_payload(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        payload = None
    if isinstance(payload, bytes):
        return payload
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def part_text(part: Message) -> str:
    """A leaf part's payload decoded to text with its charset (errors replaced)."""
    data = _decoded_payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:  # unknown charset name
        return data.decode("utf-8", errors="replace")


def is_attachment(part: Message) -> bool:
    if part.is_multipart():
        return False
    disposition = (part.get("Content-Disposition") or "").lower()
    return disposition.startswith("attachment") or bool(part_filename(part))


def part_filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:
        return ""
    return decode_header_value(name) if name else ""


def has_attachment(message: Message) -> bool:
    return any(is_attachment(part) for part in message.walk())


def snippet_of(message: Message) -> str:
    """The first text/plain part (else text/html without tags), whitespace collapsed, ~200 chars."""
    plain: Message | None = None
    markup: Message | None = None
    for part in message.walk():
        if part.is_multipart() or is_attachment(part):
            continue
        content_type = part.get_content_type()
        if content_type == "text/plain" and plain is None:
            plain = part
        elif content_type == "text/html" and markup is None:
            markup = part
    if plain is not None:
        text = part_text(plain)
    elif markup is not None:
        text = html.unescape(_TAG_RE.sub(" ", part_text(markup)))
    else:
        return ""
    text = _WS_RE.sub(" ", text).strip()
    return text[:SNIPPET_LENGTH]
