"""Fidelity cases found while comparing with stalwart's expected results and the shared corpora:
8-bit text inside encoded words, whitespace between adjacent encoded words, characters split across
words, obsolete `Name :` field syntax, bare CR line ends, broken containers, very long address lists."""

from __future__ import annotations

import time

from mailtide.mail import parse_message
from mailtide.mail.headers import LARGE_ADDRESS_LIST


def message(headers: bytes, body: bytes = b"body\r\n") -> bytes:
    return headers + b"\r\n" + body


def test_raw_8bit_text_inside_an_encoded_word_is_decoded() -> None:
    # Outlook put raw Latin-1 bytes inside Q-encoded words (Hunny Software samples).
    parsed = parse_message(
        message(b"To: Heinz =?iso-8859-1?Q?M\xfcller?= <mueller@example.com>\r\n"
                b"Subject: =?iso-8859-1?Q?Die_Hasen_und_die_Fr\xf6sche?=\r\n")
    )
    assert parsed.subject == "Die Hasen und die Frösche"
    assert parsed.to_addrs == "Heinz Müller <mueller@example.com>"


def test_whitespace_between_adjacent_encoded_words_is_not_text() -> None:
    parsed = parse_message(message(b"To: =?iso-8859-1?Q?J=FCrgen?= =?iso-8859-1?Q?_Schm=FCrgen?= <j@example.com>\r\n"))
    assert parsed.to_addrs == "Jürgen Schmürgen <j@example.com>"  # the stdlib alone gives two spaces


def test_a_character_split_across_two_encoded_words_survives() -> None:
    # "€" is E2 82 AC in UTF-8; a mailer cut it after two bytes.
    parsed = parse_message(message(b"Subject: =?utf-8?b?4oI=?= =?utf-8?b?rA==?= rates\r\n"))
    assert parsed.subject == "€ rates"
    assert parsed.parse_error is None


def test_an_encoded_display_name_with_a_comma_in_adjacent_words_stays_one_mailbox() -> None:
    parsed = parse_message(message(b"From: =?utf-8?q?Doe=2C?= =?utf-8?q?_John?= <j@example.com>\r\n"))
    assert parsed.from_addr == '"Doe, John" <j@example.com>'


def test_obsolete_white_space_before_the_colon_of_a_field_name() -> None:
    parsed = parse_message(message(b"From : Ann <ann@example.com>\r\nSubject\t: hello\r\nTo: b@example.com\r\n"))
    assert (parsed.from_addr, parsed.subject, parsed.to_addrs) == ("Ann <ann@example.com>", "hello", "b@example.com")
    assert parsed.body_text == "body\n"
    assert "obsolete syntax" in (parsed.parse_error or "")


def test_bare_cr_line_ends_are_parsed_and_reported() -> None:
    raw = (b"From: Ann <a@example.org>\rTo: b@example.org\rSubject: bare cr\r"
           b"Content-Type: multipart/alternative; boundary=XX\r\r"
           b"--XX\rContent-Type: text/plain\r\rline1\rline2\r--XX\rContent-Type: text/html\r\r<p>hi</p>\r--XX--\r")
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.from_addr, parsed.to_addrs) == ("bare cr", "Ann <a@example.org>", "b@example.org")
    assert parsed.body_text == "line1\nline2"
    assert parsed.body_html == "<p>hi</p>"
    assert "bare CR line endings" in (parsed.parse_error or "")


def test_a_multipart_without_its_boundary_is_body_text_not_an_attachment() -> None:
    parsed = parse_message(message(b'Content-Type: multipart/mixed; boundary="ab"\r\n', b"just text\r\n"))
    assert parsed.body_text == "just text\n"
    assert parsed.attachments == ()
    assert parsed.parse_error is not None


def test_a_huge_address_list_is_formatted_quickly() -> None:
    mailboxes = b", ".join(b'"Name, %d" <user%d@example.com>' % (i, i) for i in range(4000))
    header = b"To: " + mailboxes + b", =?utf-8?q?J=C3=BCrgen?= <j@example.com>\r\n"
    assert len(header) > LARGE_ADDRESS_LIST
    started = time.perf_counter()
    parsed = parse_message(message(header))
    elapsed = time.perf_counter() - started
    to = parsed.to_addrs or ""
    assert to.startswith('"Name, 0" <user0@example.com>, "Name, 1" <user1@example.com>')
    assert to.endswith("Jürgen <j@example.com>")
    assert to.count("@example.com") == 4001
    print(f"4001 mailboxes formatted in {elapsed:.2f} s")
