"""RFC 5322 / MIME parsing of raw messages into the fields the mirror stores."""

from mailtide.mail.parser import MAX_DEPTH, MAX_PARTS, Attachment, ParsedMessage, parse_message
from mailtide.mail.snippet import snippet_of

__all__ = ["MAX_DEPTH", "MAX_PARTS", "Attachment", "ParsedMessage", "parse_message", "snippet_of"]
