"""Parse raw RFC 5322 / MIME bytes into the fields the mirror stores.

`parse_message` never raises: every defect the stdlib parser reports and every exception met while
decoding a part is written into `parse_error`, and the fields hold whatever could be recovered.
Part paths are IMAP section numbers ("1", "2.1", ...): the parts of a message/rfc822 at "2" are
"2.1", "2.2", ...
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import BytesParser
from typing import Any

from mailtide.mail.charsets import clean_text, decode_bytes
from mailtide.mail.headers import decode_addresses, decode_unstructured, raw_header_text
from mailtide.mail.problems import ProblemLog

logger = logging.getLogger(__name__)

MAX_DEPTH = 20
MAX_PARTS = 1000

# message/* types whose content is a whole message to descend into (feedparser parses them so).
ENCAPSULATED_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
# Text parts without a file name of these types are body text, not attachments.
BODY_TEXT_TYPES = frozenset({"text/plain", "text/html", "text/enriched", "text/richtext", "text/watch-html"})
_ADDRESS_FIELDS = ("from", "to", "cc", "bcc")
_LINE_ENDING = re.compile(r"\r\n?")


@dataclass(frozen=True, slots=True)
class Attachment:
    """One attachment-like part. `size` is the decoded size in bytes (for an attached message:
    the sum of the decoded parts inside it)."""

    filename: str | None
    content_type: str
    size: int
    content_id: str | None
    inline: bool
    part_path: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Decoded fields of one message. `headers` is ((name, value), ...) in message order; it
    serialises to JSON as a list of [name, value] pairs."""

    message_id_header: str | None
    subject: str | None
    from_addr: str | None
    to_addrs: str | None
    cc_addrs: str | None
    bcc_addrs: str | None
    date_header: str | None
    headers: tuple[tuple[str, str], ...]
    body_text: str | None
    body_html: str | None
    attachments: tuple[Attachment, ...]
    parse_error: str | None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw message bytes. Never raises, whatever the input."""
    problems = ProblemLog()
    try:
        if not isinstance(raw, bytes | bytearray | memoryview):
            problems.add("input", f"not bytes but {type(raw).__name__}")
            return _empty(problems)
        data = bytes(raw)
        if not data.strip():
            problems.add("input", "empty message")
            return _empty(problems)
        return _parse_full(data, problems)
    except Exception as exc:  # the last line of defence: the contract is to never raise
        problems.add("parser", f"failed: {type(exc).__name__}: {str(exc)[:200]}")
        logger.debug("mime.parse_failed error=%s", type(exc).__name__)
        try:
            return _parse_headers_only(bytes(raw), problems)
        except Exception as second:
            problems.add("parser", f"headers unreadable: {type(second).__name__}")
            return _empty(problems)


class _MemoHeaderFactory:
    """policy.default's header factory, remembering its results for the duration of one parse.

    The stdlib re-parses a structured header on every access (get_content_type() alone parses
    Content-Type again each time); header objects are immutable, so reusing them is safe.
    """

    def __init__(self) -> None:
        self._registry = policy.default.header_factory
        self._cache: dict[tuple[str, str], Any] = {}

    def __call__(self, name: str, value: str) -> Any:
        key = (name, value)
        header = self._cache.get(key)
        if header is None:
            header = self._cache[key] = self._registry(name, value)
        return header


def _parser() -> BytesParser:
    return BytesParser(policy=policy.default.clone(header_factory=_MemoHeaderFactory()))


def _empty(problems: ProblemLog) -> ParsedMessage:
    return ParsedMessage(None, None, None, None, None, None, None, (), None, None, (), problems.text())


def _parse_headers_only(data: bytes, problems: ProblemLog) -> ParsedMessage:
    msg = _parser().parsebytes(data, headersonly=True)
    fields = _HeaderFields(msg, problems)
    return fields.build(None, None, (), problems)


_BARE_CR = re.compile(rb"\r(?!\n)")
_HEADER_BLOCK_END = re.compile(rb"\r?\n\r?\n|\r\r")
# RFC 5322 4.5 obsolete syntax `Name WSP ":"`, which the stdlib takes for the start of the body.
_OBSOLETE_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)


def _repair_header_block(data: bytes, problems: ProblemLog) -> bytes:
    """The bytes to parse: the top-level field names freed of white space before their colon."""
    end = _HEADER_BLOCK_END.search(data)
    cut = end.start() if end else len(data)
    head, count = _OBSOLETE_FIELD_NAME.subn(rb"\1:", data[:cut])
    if not count:
        return data
    problems.add("headers", f"{count} field name(s) followed by white space (obsolete syntax)")
    return head + data[cut:]


def _parse_full(data: bytes, problems: ProblemLog) -> ParsedMessage:
    if b"\r" in data and _BARE_CR.search(data):
        problems.add("message", "bare CR line endings")
    msg = _parser().parsebytes(_repair_header_block(data, problems))
    fields = _HeaderFields(msg, problems)
    walk = _PartWalk(msg, problems)
    plain_part, html_part = _select_body_parts(msg, problems)
    body_text = walk.text_of(plain_part, "plain body") if plain_part is not None else None
    body_html = walk.text_of(html_part, "html body") if html_part is not None else None
    attachments = walk.attachments(skip={id(plain_part), id(html_part)})
    return fields.build(body_text, body_html, attachments, problems)


class _HeaderFields:
    """The header list and the typed header fields of the top-level message."""

    def __init__(self, msg: Message, problems: ProblemLog) -> None:
        self.headers: list[tuple[str, str]] = []
        self.raw_by_name: dict[str, list[str]] = {}
        self.first_decoded: dict[str, str] = {}
        for raw_name, raw_value in msg.raw_items():
            name = clean_text(str(raw_name))
            text = raw_header_text(str(raw_value))
            decoded, problem = decode_unstructured(text)
            if problem:
                problems.add(f"header {name}", problem)
            self.headers.append((name, decoded))
            self.raw_by_name.setdefault(name.lower(), []).append(text)
            self.first_decoded.setdefault(name.lower(), decoded)
        self.problems = problems

    def _addresses(self, name: str) -> str | None:
        texts = self.raw_by_name.get(name)
        if not texts:
            return None
        if name == "from":
            texts = texts[:1]
        formatted = []
        for text in texts:
            value, problem = decode_addresses(name, text)
            if problem:
                self.problems.add(f"header {name.capitalize()}", problem)
            if value:
                formatted.append(value)
        return ", ".join(formatted)

    def build(
        self,
        body_text: str | None,
        body_html: str | None,
        attachments: tuple[Attachment, ...],
        problems: ProblemLog,
    ) -> ParsedMessage:
        addresses = {name: self._addresses(name) for name in _ADDRESS_FIELDS}
        return ParsedMessage(
            message_id_header=self.first_decoded.get("message-id"),
            subject=self.first_decoded.get("subject"),
            from_addr=addresses["from"],
            to_addrs=addresses["to"],
            cc_addrs=addresses["cc"],
            bcc_addrs=addresses["bcc"],
            date_header=self.first_decoded.get("date"),
            headers=tuple(self.headers),
            body_text=body_text,
            body_html=body_html,
            attachments=attachments,
            parse_error=problems.text(),
        )


def _describe_defect(defect: object) -> str:
    name = type(defect).__name__
    detail = str(defect)
    return f"{name} ({detail[:80]})" if detail and detail != name else name


def _list_payload(part: Message) -> list[Message] | None:
    payload = part.get_payload()
    return payload if isinstance(payload, list) else None


def _join(path: str, index: int) -> str:
    return f"{path}.{index}" if path else str(index)


@dataclass(slots=True)
class _Leaf:
    part: Message
    path: str
    content_type: str
    size: int


class _PartWalk:
    """Visits every part once, in document order, within the depth and part-count bounds.

    Collects the defects of each part, the decoded payload of each leaf, and the attached
    messages; iterative so that hostile nesting cannot exhaust the Python stack.
    """

    def __init__(self, root: Message, problems: ProblemLog) -> None:
        self.problems = problems
        self.leaves: list[_Leaf] = []
        self.containers: list[tuple[Message, str, str]] = []
        self._payloads: dict[int, bytes] = {}
        root_path = "" if _list_payload(root) is not None and not _is_encapsulated(root) else "1"
        stack: list[tuple[Message, str, int]] = [(root, root_path, 0)]
        visited = 0
        while stack:
            part, path, depth = stack.pop()
            visited += 1
            if visited > MAX_PARTS:
                problems.add("message", f"more than {MAX_PARTS} MIME parts; the rest was not read")
                break
            where = f"part {path}" if path else "message"
            try:
                children = self._visit(part, path)
            except Exception as exc:
                problems.add(where, f"unreadable: {type(exc).__name__}: {str(exc)[:120]}")
                children = []
            for defect in getattr(part, "defects", ()):
                problems.add(where, _describe_defect(defect))
            if children and depth >= MAX_DEPTH:
                problems.add(where, f"MIME nesting deeper than {MAX_DEPTH} levels; not read further")
                continue
            stack.extend((child, child_path, depth + 1) for child, child_path in reversed(children))

    def _visit(self, part: Message, path: str) -> list[tuple[Message, str]]:
        payload = _list_payload(part)
        content_type = part.get_content_type()
        if payload is not None and part.get_content_maintype() == "multipart":
            return [(child, _join(path, index)) for index, child in enumerate(payload, 1)]
        if payload is not None and content_type in ENCAPSULATED_TYPES and payload:
            self.containers.append((part, path, clean_text(content_type)))
            inner = payload[0]
            for defect in getattr(inner, "defects", ()):
                self.problems.add(f"part {path}", _describe_defect(defect))
            inner_parts = _list_payload(inner)
            if inner_parts is not None and inner.get_content_maintype() == "multipart":
                return [(child, _join(path, index)) for index, child in enumerate(inner_parts, 1)]
            return [(inner, _join(path, 1))]
        leaf_type = clean_text(content_type)
        self.leaves.append(_Leaf(part, path or "1", leaf_type, self._leaf_size(part, payload)))
        return []

    def _leaf_size(self, part: Message, payload: list[Message] | None) -> int:
        if payload is not None:  # message/delivery-status and other parsed message/* leaves
            size = 0
            for block in payload:
                try:
                    size += len(block.as_bytes())
                except Exception:
                    pass
            return size
        return len(self.payload_of(part))

    def payload_of(self, part: Message) -> bytes:
        """Decoded (transfer-encoding undone) bytes of a leaf part; cached."""
        key = id(part)
        if key not in self._payloads:
            data = part.get_payload(decode=True)
            self._payloads[key] = data if isinstance(data, bytes) else b""
        return self._payloads[key]

    def text_of(self, part: Message, what: str) -> str | None:
        try:
            data = self.payload_of(part)
            charset = part.get_content_charset()
            text, problem = decode_bytes(data, charset)
            if problem:
                self.problems.add(what, problem)
            return clean_text(_LINE_ENDING.sub("\n", text))
        except Exception as exc:
            self.problems.add(what, f"not decodable: {type(exc).__name__}: {str(exc)[:120]}")
            return None

    def attachments(self, skip: set[int]) -> tuple[Attachment, ...]:
        found: list[Attachment] = []
        for part, path, content_type in self.containers:
            inner_size = sum(leaf.size for leaf in self.leaves if leaf.path.startswith(path + "."))
            found.append(self._record(part, path, content_type, inner_size))
        for leaf in self.leaves:
            if id(leaf.part) in skip:
                continue
            try:
                filename = _filename(leaf.part)
                disposition = leaf.part.get_content_disposition()
            except Exception as exc:
                self.problems.add(f"part {leaf.path}", f"bad headers: {type(exc).__name__}")
                filename, disposition = None, None
            if disposition != "attachment" and not filename and leaf.content_type in BODY_TEXT_TYPES:
                continue  # extra inline text, or the body of an attached message
            if leaf.content_type.startswith("multipart/"):
                continue  # a container whose boundary is missing: its text is kept as body, not a file
            found.append(self._record(leaf.part, leaf.path, leaf.content_type, leaf.size))
        found.sort(key=lambda item: [int(n) if n.isdigit() else 0 for n in item.part_path.split(".")])
        return tuple(found)

    def _record(self, part: Message, path: str, content_type: str, size: int) -> Attachment:
        try:
            filename = _filename(part)
            disposition = part.get_content_disposition()
            content_id = _content_id(part)
        except Exception as exc:
            self.problems.add(f"part {path}", f"bad attachment headers: {type(exc).__name__}: {str(exc)[:120]}")
            return Attachment(None, content_type, size, None, False, path or "1")
        inline = disposition == "inline" or (disposition is None and content_id is not None)
        return Attachment(filename, content_type, size, content_id, inline, path or "1")


def _is_encapsulated(part: Message) -> bool:
    return part.get_content_type() in ENCAPSULATED_TYPES


def _filename(part: Message) -> str | None:
    name = part.get_filename()
    if name is None:
        return None
    text = clean_text(str(name)).strip()
    if "=?" in text:  # RFC 2047 inside a quoted parameter: not allowed, but widespread
        text = decode_unstructured(text)[0].strip()
    return text or None


def _content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if value is None:
        return None
    text = raw_header_text(str(value)).strip().strip("<>").strip()
    return text or None


def _select_body_parts(root: Message, problems: ProblemLog) -> tuple[Message | None, Message | None]:
    """The best text/plain and text/html parts, by the multipart/alternative and related rules:
    attachments and attached messages are never the body; in multipart/related only the root
    (the `start` part, else the first) counts; the first candidate of each type wins."""
    found: dict[str, Message] = {}
    try:
        single_text = _list_payload(root) is None and root.get_content_maintype() == "text"
        if single_text and root.get_content_disposition() != "attachment":
            subtype = root.get_content_subtype()
            found["html" if subtype == "html" else "plain"] = root  # a single-part message is its body
        else:
            _collect_bodies(root, 0, found)
    except Exception as exc:
        problems.add("body", f"structure unreadable: {type(exc).__name__}: {str(exc)[:120]}")
    return found.get("plain"), found.get("html")


def _collect_bodies(part: Message, depth: int, found: dict[str, Message]) -> None:
    if depth > MAX_DEPTH or len(found) == 2:
        return
    if part.get_content_disposition() == "attachment" or part.get_filename() is not None:
        return
    maintype = part.get_content_maintype()
    subtype = part.get_content_subtype()
    if maintype == "text":
        if subtype in ("plain", "html"):
            found.setdefault(subtype, part)
        return
    if maintype != "multipart":
        return
    children = _list_payload(part)
    if children is None:  # a multipart without a usable boundary: keep its text as the body
        found.setdefault("plain", part)
        return
    if subtype == "related" and children:
        start = part.get_param("start")
        root = children[0]
        if isinstance(start, str):
            for child in children:
                if str(child.get("content-id", "")).strip() == start.strip():
                    root = child
                    break
        _collect_bodies(root, depth + 1, found)
        return
    for child in children:
        _collect_bodies(child, depth + 1, found)
