"""parse_message never raises and always returns storable text, whatever the bytes."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path

import pytest

from mailtide.mail import MAX_DEPTH, MAX_PARTS, ParsedMessage, parse_message, snippet_of

DATA = Path(__file__).resolve().parents[1] / "data" / "mime"


def all_text(parsed: ParsedMessage) -> list[str]:
    texts: list[str] = []
    for field in fields(parsed):
        value = getattr(parsed, field.name)
        if isinstance(value, str):
            texts.append(value)
    texts.extend(part for header in parsed.headers for part in header)
    for attachment in parsed.attachments:
        texts.extend(v for v in (attachment.filename, attachment.content_id, attachment.content_type) if v)
    return texts


def assert_storable(parsed: ParsedMessage) -> None:
    """Every string must encode as UTF-8 (no lone surrogates) and hold no NUL (PostgreSQL)."""
    for text in all_text(parsed):
        text.encode("utf-8")
        assert "\x00" not in text
    json.dumps([list(header) for header in parsed.headers])
    snippet_of(parsed).encode("utf-8")


@pytest.mark.parametrize("value", ["a string", None, 42, ["list"]])
def test_non_bytes_input_is_reported_not_raised(value):
    parsed = parse_message(value)  # type: ignore[arg-type]
    assert parsed.parse_error is not None and "not bytes" in parsed.parse_error
    assert parsed.headers == () and parsed.body_text is None


def test_empty_input():
    parsed = parse_message(b"")
    assert parsed.parse_error == "input: empty message"
    assert parsed.subject is None and parsed.attachments == ()


def test_bytearray_and_memoryview_are_accepted():
    raw = b"Subject: hi\r\n\r\nbody\r\n"
    assert parse_message(bytearray(raw)).subject == "hi"
    assert parse_message(memoryview(raw)).body_text == "body\n"


def test_random_bytes_never_raise():
    rng = random.Random(20260801)
    for _ in range(300):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
        assert_storable(parse_message(blob))


def test_truncated_and_corrupted_real_messages_never_raise():
    rng = random.Random(7)
    for path in sorted(DATA.glob("*.eml")):
        raw = path.read_bytes()
        for _ in range(6):
            cut = raw[: rng.randrange(1, len(raw) + 1)]
            assert_storable(parse_message(cut))
            damaged = bytearray(raw)
            for _ in range(20):
                damaged[rng.randrange(len(damaged))] = rng.choice(b'\x00\xff\r\n-=?:;"<>\x80\xe9')
            assert_storable(parse_message(bytes(damaged)))


def nested_multipart(depth: int) -> bytes:
    body = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        boundary = b"b%d" % level
        body = (
            b"Content-Type: multipart/mixed; boundary="
            + boundary
            + b"\r\n\r\n--"
            + boundary
            + b"\r\n"
            + body
            + b"--"
            + boundary
            + b"--\r\n"
        )
    return b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body


def test_nesting_beyond_the_limit_stops_and_is_reported():
    parsed = parse_message(nested_multipart(MAX_DEPTH + 5))
    assert parsed.subject == "deep"
    assert parsed.parse_error is not None
    assert f"MIME nesting deeper than {MAX_DEPTH} levels" in parsed.parse_error


def test_nesting_within_the_limit_finds_the_body():
    parsed = parse_message(nested_multipart(MAX_DEPTH - 2))
    assert parsed.body_text == "innermost"  # the CRLF before a boundary belongs to the boundary
    assert parsed.parse_error is None


def test_hostile_nesting_falls_back_to_headers():
    raw = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(3000):
        raw = b"Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n" % level + raw
    parsed = parse_message(raw)
    assert parsed.subject == "level 2999"
    assert parsed.parse_error is not None


def test_part_count_limit():
    parts = b"".join(b"--x\r\nContent-Type: application/octet-stream\r\n\r\nAAAA\r\n" for _ in range(1500))
    raw = b"Subject: many\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" + parts + b"--x--\r\n"
    parsed = parse_message(raw)
    assert len(parsed.attachments) < MAX_PARTS
    assert parsed.parse_error == f"message: more than {MAX_PARTS} MIME parts; the rest was not read"


def test_unknown_charsets_in_encoded_words_and_bodies():
    raw = (
        b"Subject: =?x-unknown?Q?caf=E9?= =?gb2312?B?xOO6ww==?= =?utf-8?B?w6k?=\r\n"
        b"Content-Type: text/plain; charset=klingon-8\r\n\r\nna\xc3\xafve\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.subject == "café你好é"
    assert parsed.body_text == "naïve\n"
    assert parsed.parse_error == "plain body: unknown charset 'klingon-8'"


def test_non_text_codec_as_charset_and_wrong_utf8():
    parsed = parse_message(b"Content-Type: text/plain; charset=base64\r\n\r\nd2h5Pw==\r\n")
    assert parsed.body_text == "d2h5Pw==\n"
    assert "unknown charset 'base64'" in (parsed.parse_error or "")
    parsed = parse_message(b"Content-Type: text/plain; charset=utf-8\r\n\r\nAndr\xe9\r\n")
    assert parsed.body_text == "André\n"  # latin-1 bytes labelled UTF-8
    assert parsed.parse_error == "plain body: text is not valid utf-8; decoded with replacements"


def test_nul_bytes_do_not_survive():
    parsed = parse_message(b"Subject: a\x00b\r\n\r\nx\x00y\r\n")
    assert parsed.subject == "a\ufffdb"
    assert parsed.body_text == "x\ufffdy\n"


def test_unparseable_address_list_keeps_text():
    parsed = parse_message(b"From: =?utf-8?Q?J=C3=B6rg?= <joerg@example.com>\r\nTo: a@b@c, ,\r\n\r\nhi\r\n")
    assert parsed.from_addr == "Jörg <joerg@example.com>"
    assert parsed.to_addrs == "a@b@c, ,"
    assert parsed.parse_error is not None and parsed.parse_error.startswith("header To:")


def test_repeated_recipient_headers_are_joined():
    parsed = parse_message(b"To: a@example.com\r\nTo: B <b@example.com>\r\nFrom: x@e.com\r\nFrom: y@e.com\r\n\r\n")
    assert parsed.to_addrs == "a@example.com, B <b@example.com>"
    assert parsed.from_addr == "x@e.com"


def test_single_part_attachment_is_not_the_body():
    raw = (
        b"Subject: file\r\nContent-Type: text/plain; name=notes.txt\r\n"
        b"Content-Disposition: attachment; filename=notes.txt\r\n\r\nmy notes\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.body_text is None
    assert [(a.filename, a.content_type, a.size, a.part_path) for a in parsed.attachments] == [
        ("notes.txt", "text/plain", 10, "1")
    ]


def test_snippet_from_html_only():
    raw = (
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><title>T</title><style>p {color: red}</style></head>"
        b"<body><script>var x = 1;</script><p>Caf&eacute;\r\n   &amp;  <b>cr\xc3\xa8me</b></p><!-- hidden --></body>"
    )
    parsed = parse_message(raw)
    assert parsed.body_text is None
    assert snippet_of(parsed) == "Café & crème"


def test_snippet_collapses_whitespace_and_is_bounded():
    parsed = parse_message(b"Subject: s\r\n\r\n  first\r\n\r\n\tsecond   " + b"word " * 100)
    snippet = snippet_of(parsed)
    assert snippet.startswith("first second word word")
    assert len(snippet) == 200
    assert snippet_of(parse_message(b"Subject: no body\r\n\r\n")) == ""
