"""Decoding header values: unfolding, raw 8-bit bytes, RFC 2047 encoded words, address lists.

Every function returns text plus, at most, a short problem note; none raises.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from email import errors, policy

from mailtide.mail.charsets import FALLBACK_CHARSET, clean_text, resolve_charset

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(\*[^?\s]*)?\?([QqBb])\?([^?\s]*)\?=")
_ANY_WORD = r"=\?[^?\s*]+(?:\*[^?\s]*)?\?[QqBb]\?[^?\s]*\?="
_ADJACENT_WORDS = re.compile(rf"{_ANY_WORD}(?:[ \t]+{_ANY_WORD})+")
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+|[^\x00-\x7f]+")
# Plain `a@b.c` or `Simple Name <a@b.c>` lists: formatted by hand exactly as the stdlib would, because
# its address parser is slow (a 50 KB To header takes a second) and most headers look like this.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE_ADDRESS = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_SIMPLE_MAILBOX = re.compile(rf"(?:({_ATEXT}+(?: {_ATEXT}+)*) <({_SIMPLE_ADDRESS})>)|({_SIMPLE_ADDRESS})")
# Obsolete-but-readable syntax, and RFC 6532 UTF-8 local parts, still format faithfully.
_HARMLESS_ADDRESS_DEFECTS = (errors.ObsoleteHeaderDefect, errors.NonASCIILocalPartDefect)
# Beyond this many characters the stdlib's structured address parser takes over half a second.
LARGE_ADDRESS_LIST = 16_384
_NEEDS_QUOTES = re.compile(r'[][()<>@,:;".\\]')
# Any header name the registry does not know is parsed as unstructured text (RFC 2047 decoding only).
_UNSTRUCTURED_NAME = "x-mailtide-unstructured"


def raw_header_text(raw_value: str) -> str:
    """Unfold a header value as stored by the parser and turn escaped 8-bit bytes into text."""
    # Escaped 8-bit bytes become text: RFC 6532 UTF-8 headers, or legacy 8-bit ones (windows-1252).
    return clean_text(_LINE_BREAK.sub("", raw_value).strip())


def _decode_word_payload(encoding: str, payload: str) -> bytes:
    data = payload.encode("ascii", errors="replace")
    try:
        if encoding in "Bb":
            return base64.b64decode(data + b"=" * (-len(data) % 4))
        return binascii.a2b_qp(data, header=True)
    except (binascii.Error, ValueError):
        return data


def _utf8_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _decode_mixed_payload(codec: str | None, encoding: str, payload: str) -> str:
    """An encoded word carrying raw 8-bit text (Outlook did this): decode the encoded runs, keep
    the characters that arrived as text."""
    pieces = []
    for run in _ASCII_RUNS.findall(payload):
        if not run.isascii():
            pieces.append(run)
            continue
        data = _decode_word_payload(encoding, run)
        try:
            pieces.append(data.decode(codec or "utf-8"))
        except (UnicodeDecodeError, LookupError):
            pieces.append(data.decode(FALLBACK_CHARSET, errors="replace"))
    return "".join(pieces)


def _repair_encoded_word(match: re.Match[str]) -> str:
    """Rewrite an encoded word whose charset Python would mis-decode into one it decodes well."""
    charset, _language, encoding, payload = match.groups()
    codec = resolve_charset(charset)
    if not payload.isascii():
        return _utf8_word(_decode_mixed_payload(codec, encoding, payload))
    if codec is not None:
        if encoding in "Bb" and len(payload) % 4:  # unpadded base64 is common and harmless
            payload += "=" * (-len(payload) % 4)
        elif codec == charset.lower():
            return match.group(0)
        return f"=?{codec}?{encoding}?{payload}?="
    data = _decode_word_payload(encoding, payload)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode(FALLBACK_CHARSET, errors="replace")
    return _utf8_word(text)


def _decode_word_bytes(data: bytes, charset: str | None) -> str:
    codec = resolve_charset(charset)
    for candidate in (codec, "utf-8"):
        if candidate is None:
            continue
        try:
            return data.decode(candidate)
        except (UnicodeDecodeError, LookupError):
            continue
        except Exception:  # stateful codecs (iso-2022, utf-7) raise other errors on bad input
            break
    return data.decode(FALLBACK_CHARSET, errors="replace")


def _join_adjacent_words(match: re.Match[str]) -> str:
    """RFC 2047 6.2: the whitespace between adjacent encoded words is not text (the stdlib's address
    parser keeps it). The bytes of consecutive words in one charset are joined before decoding, so a
    character a mailer split across two words survives."""
    pieces: list[str] = []
    pending = bytearray()
    pending_charset: str | None = None
    for word in _ENCODED_WORD.finditer(match.group(0)):
        charset, _language, encoding, payload = word.groups()
        if pending and (not payload.isascii() or charset.lower() != pending_charset):
            pieces.append(_decode_word_bytes(bytes(pending), pending_charset))
            pending.clear()
        if not payload.isascii():
            pieces.append(_decode_mixed_payload(resolve_charset(charset), encoding, payload))
            continue
        pending_charset = charset.lower()
        pending += _decode_word_payload(encoding, payload)
    if pending:
        pieces.append(_decode_word_bytes(bytes(pending), pending_charset))
    return _utf8_word("".join(pieces))


def _prepare(text: str) -> str:
    if "=?" not in text:
        return text
    return _ENCODED_WORD.sub(_repair_encoded_word, _ADJACENT_WORDS.sub(_join_adjacent_words, text))


def decode_unstructured(text: str) -> tuple[str, str | None]:
    """RFC 2047-decode unfolded header text; falls back to the text itself."""
    if "=?" not in text:
        return text, None
    try:
        return clean_text(str(policy.default.header_factory(_UNSTRUCTURED_NAME, _prepare(text)))), None
    except Exception as exc:
        return text, f"encoded words not decodable ({type(exc).__name__})"


def _format_simple_addresses(text: str) -> str | None:
    if not text.isascii() or "=?" in text:
        return None
    formatted = []
    for item in text.split(","):
        match = _SIMPLE_MAILBOX.fullmatch(item.strip())
        if match is None:
            return None
        display_name, angle_address, bare_address = match.groups()
        formatted.append(f"{display_name} <{angle_address}>" if display_name else bare_address)
    return ", ".join(formatted)


def _format_mailbox(display_name: str, address: str) -> str:
    if not display_name:
        return address
    if _NEEDS_QUOTES.search(display_name):
        display_name = '"' + display_name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{display_name} <{address}>"


def _format_large_address_list(text: str) -> tuple[str, str | None]:
    """A very long list (mass mail, mailing-list digests) by the stdlib's cheaper, laxer parser."""
    mailboxes = [(n, a) for n, a in email.utils.getaddresses([text]) if a]
    if not mailboxes:
        return decode_unstructured(text)[0], "no address found; kept as text"
    formatted = (_format_mailbox(decode_unstructured(n)[0].strip(), a.strip()) for n, a in mailboxes)
    return clean_text(", ".join(formatted)), None


def decode_addresses(name: str, text: str) -> tuple[str, str | None]:
    """Format an address header as `Name <a@b>, c@d`; unparseable lists stay as decoded text."""
    if not text:
        return text, None
    simple = _format_simple_addresses(text)
    if simple is not None:
        return simple, None
    if len(text) > LARGE_ADDRESS_LIST:
        return _format_large_address_list(text)
    try:
        header = policy.default.header_factory(name, _prepare(text))
        serious = [d for d in header.defects if not isinstance(d, _HARMLESS_ADDRESS_DEFECTS)]
        if not serious and header.groups:
            return clean_text(str(header)), None
        reason = (str(serious[0]) or type(serious[0]).__name__) if serious else "no address found"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    decoded, _ = decode_unstructured(text)
    return decoded, f"{reason[:80]}; kept as text"
