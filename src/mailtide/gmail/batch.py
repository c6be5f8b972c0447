"""Gmail batch requests: encoding the multipart/mixed request and reading the reply part by part.

The reply is parsed as it streams in, so a batch of large raw messages is never held in memory at
once: each inner response is handed on as soon as its closing boundary arrives.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

_BOUNDARY_PARAM = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_STATUS_LINE = re.compile(rb"^HTTP/\d(?:\.\d)?\s+(\d{3})")


class BatchFormatError(ValueError):
    """The batch reply is not the multipart/mixed Gmail promises."""


@dataclass(frozen=True)
class InnerRequest:
    content_id: str
    path: str  # path and query, e.g. /gmail/v1/users/me/messages/abc?format=raw


@dataclass
class InnerResponse:
    content_id: str  # as sent back, without "response-" and angle brackets
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def new_boundary() -> str:
    return "batch_mailtide_" + secrets.token_hex(12)


def encode_batch(requests: list[InnerRequest], boundary: str) -> bytes:
    """A multipart/mixed body of `GET path` calls (CRLF line ends, as Google's own clients send)."""
    chunks = []
    for request in requests:
        chunks.append(
            f"--{boundary}\r\n"
            "Content-Type: application/http\r\n"
            f"Content-ID: <{request.content_id}>\r\n"
            "\r\n"
            f"GET {request.path} HTTP/1.1\r\n"
            "Accept: application/json\r\n"
            "\r\n"
        )
    chunks.append(f"--{boundary}--\r\n")
    return "".join(chunks).encode("utf-8")


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/"):
        raise BatchFormatError(f"batch reply is not multipart ({content_type or 'no content type'})")
    match = _BOUNDARY_PARAM.search(content_type)
    if match is None:
        raise BatchFormatError(f"batch reply has no boundary ({content_type})")
    return match.group(1) or match.group(2)


def _split_head(block: bytes) -> tuple[bytes, bytes]:
    """Headers and body of a MIME part or an HTTP message (CRLF or LF line ends)."""
    crlf = block.find(b"\r\n\r\n")
    lf = block.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return block[:crlf], block[crlf + 4 :]
    if lf >= 0:
        return block[:lf], block[lf + 2 :]
    return block, b""


def _headers(head: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


def parse_part(part: bytes) -> InnerResponse:
    """One part of the reply: MIME headers (Content-ID), then an HTTP response (status, headers, body)."""
    mime_head, http_message = _split_head(part.lstrip(b"\r\n"))
    content_id = _headers(mime_head).get("content-id", "").strip().strip("<>")
    content_id = content_id.removeprefix("response-")
    http_head, body = _split_head(http_message.lstrip(b"\r\n"))
    status_line, _, header_lines = http_head.partition(b"\n")
    match = _STATUS_LINE.match(status_line.strip())
    if match is None:
        raise BatchFormatError(f"batch part {content_id or '?'} has no HTTP status line: {status_line[:60]!r}")
    return InnerResponse(content_id, int(match.group(1)), _headers(header_lines), body)


class MultipartReader:
    """Feed bytes as they arrive; get back each complete part (the bytes between two boundaries)."""

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the buffer already searched without finding a delimiter
        self._started = False
        self.finished = False

    def feed(self, data: bytes) -> list[bytes]:
        if self.finished:
            return []
        self._buffer += data
        parts: list[bytes] = []
        while not self.finished:
            start = max(0, self._scanned - len(self._delimiter) - 2)
            index = self._find_delimiter(start)
            if index < 0:
                self._scanned = len(self._buffer)
                break
            after = index + len(self._delimiter)
            line_end = self._buffer.find(b"\n", after)
            closing = self._buffer[after : after + 2] == b"--"
            if line_end < 0 and not closing:
                self._scanned = index  # wait for the rest of the delimiter line
                break
            body = bytes(self._buffer[:index])
            if self._started:
                parts.append(body[:-2] if body.endswith(b"\r\n") else body[:-1] if body.endswith(b"\n") else body)
            self._started = True
            if closing:
                self.finished = True
                self._buffer.clear()
                break
            del self._buffer[: line_end + 1]
            self._scanned = 0
        return parts

    def _find_delimiter(self, start: int) -> int:
        """A delimiter at the start of the buffer (the first one) or right after a line end."""
        if not self._started and self._buffer.startswith(self._delimiter):
            return 0
        index = self._buffer.find(b"\n" + self._delimiter, start)
        return -1 if index < 0 else index + 1
