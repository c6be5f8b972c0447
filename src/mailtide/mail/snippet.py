"""A short plain-text preview of a parsed message, like Gmail's snippet."""

from __future__ import annotations

import html
import re

from mailtide.mail.parser import ParsedMessage

SNIPPET_LENGTH = 200

_INVISIBLE_BLOCKS = re.compile(r"<(script|style|head|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"<!--.*?-->", re.DOTALL)
_TAGS = re.compile(r"<[^>]*>")
_WHITESPACE = re.compile(r"\s+")


def html_to_text(markup: str) -> str:
    """Crude HTML to text: drop invisible blocks, comments and tags, then unescape entities."""
    text = _INVISIBLE_BLOCKS.sub(" ", markup)
    text = _COMMENTS.sub(" ", text)
    text = _TAGS.sub(" ", text)
    return html.unescape(text)


def snippet_of(parsed: ParsedMessage, length: int = SNIPPET_LENGTH) -> str:
    """First `length` characters of the text body (HTML stripped when there is only HTML),
    whitespace collapsed."""
    if parsed.body_text and parsed.body_text.strip():
        source = parsed.body_text[: length * 20]  # collapsing never needs more than this
    elif parsed.body_html:
        source = html_to_text(parsed.body_html[: length * 200])
    else:
        return ""
    return _WHITESPACE.sub(" ", source).strip()[:length]
