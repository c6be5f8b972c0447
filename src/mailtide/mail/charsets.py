"""Turning mail bytes into text without ever failing.

Mail declares charsets that Python does not know (x-unknown, windows-874 spelled oddly), names that
are really supersets (gb2312 mail is usually GBK), or none at all while carrying 8-bit bytes. The
rule here: use the declared charset when it decodes cleanly, otherwise fall back (UTF-8, then
windows-1252) and replace what still does not decode. Never raise.
"""

from __future__ import annotations

import codecs
import functools
import re

# Labels whose real-world use is a superset, or that Python spells differently (WHATWG-style).
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "sjis": "cp932",
    "windows-31j": "cp932",
    "big5": "big5hkscs",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "x-mac-cyrillic": "mac_cyrillic",
    "unicode-1-1-utf-7": "utf-7",
    "x-user-defined": "cp1252",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso_8859-1": "cp1252",
}

# Labels that promise nothing beyond ASCII; 8-bit bytes under them are usually UTF-8.
_ASCII_LABELS = frozenset({"us-ascii", "ascii", "ansi_x3.4-1968", "us", "646", "unknown-8bit", "x-unknown"})

_LATIN1_LABELS = frozenset({"iso-8859-1", "latin1", "latin-1", "iso_8859-1"})

FALLBACK_CHARSET = "cp1252"


@functools.lru_cache(maxsize=256)
def resolve_charset(label: str | None) -> str | None:
    """Python codec name for a mail charset label, or None when unknown or not a text codec."""
    if not label:
        return None
    name = label.strip().strip('"').lower()
    if not name or len(name) > 64:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        codecs.lookup(name)
    except (LookupError, TypeError, ValueError):
        return None
    try:
        b"a".decode(name)  # LookupError for bytes-to-bytes codecs such as "base64"
    except LookupError:
        return None
    except Exception:
        pass  # a text codec that merely dislikes the sample byte
    return name


def decode_unlabelled(data: bytes) -> str:
    """Bytes of unknown charset: UTF-8 when they mostly are (a truncated or slightly broken UTF-8
    text stays readable), otherwise windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    as_utf8 = data.decode("utf-8", errors="replace")
    replaced = as_utf8.count("\ufffd")
    decoded_non_ascii = len(as_utf8) - len(as_utf8.encode("ascii", errors="ignore")) - replaced
    if decoded_non_ascii > replaced:
        return as_utf8
    return data.decode(FALLBACK_CHARSET, errors="replace")


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Decode body bytes by their declared charset; returns (text, problem or None)."""
    label = (declared or "").strip().lower()
    if not label or label in _ASCII_LABELS:
        # Undeclared 8-bit text: not a defect worth reporting when the label promised nothing.
        return decode_unlabelled(data), None
    codec = resolve_charset(label)
    if codec is None:
        return decode_unlabelled(data), f"unknown charset {label[:40]!r}"
    try:
        return data.decode(codec), None
    except UnicodeDecodeError:
        if label in _LATIN1_LABELS:  # bytes cp1252 leaves undefined are still valid latin-1
            return data.decode("latin-1"), None
    except Exception as exc:  # some codecs (utf-7, iso-2022) raise odd errors on bad input
        return data.decode(FALLBACK_CHARSET, errors="replace"), f"charset {label[:40]!r} failed: {exc}"
    try:
        return data.decode("utf-8"), f"text is not valid {label[:40]}; decoded as utf-8"
    except UnicodeDecodeError:
        pass
    fallback = FALLBACK_CHARSET if codec.replace("_", "-") in ("utf-8", "utf8") else codec
    try:
        text = data.decode(fallback, errors="replace")
    except Exception:
        text = data.decode(FALLBACK_CHARSET, errors="replace")
    return text, f"text is not valid {label[:40]}; decoded with replacements"


_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def clean_text(text: str) -> str:
    """Make a str storable anywhere: undo surrogate-escaped bytes, drop NULs (PostgreSQL refuses them)."""
    if has_surrogates(text):
        try:
            raw = text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:  # surrogates outside the escaped-byte range
            raw = text.encode("utf-8", errors="replace")
        text = decode_unlabelled(raw)
        if has_surrogates(text):  # lone surrogates that were never bytes
            text = text.encode("utf-8", errors="replace").decode("utf-8")
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text
