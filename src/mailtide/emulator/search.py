"""Gmail search syntax (the `q` of messages.list) compiled into a predicate over messages.

Supported: from: to: cc: bcc: subject: (case-insensitive substring of the decoded header; "quoted
phrases"), label: in: is: category: has:attachment|userlabels|nouserlabels, after: before:
(YYYY/MM/DD, YYYY-MM-DD at midnight Pacific time, or epoch seconds), newer_than: older_than:
(Nh, Nd, Nm, Ny), larger: smaller: (bytes, K or M suffix), rfc822msgid:, negation with a leading
'-', implicit AND, AND, OR and parentheses.

Anything else (bare words, unknown operators, { } groups) raises QueryError: the emulator has no
full-text search, and a wrong answer would be worse than a clear refusal.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from mailtide.emulator import mime
from mailtide.emulator.labels import Label, name_key
from mailtide.emulator.message import MessageSnapshot

Predicate = Callable[[MessageSnapshot], bool]

SUPPORTED_OPERATORS = (
    "from:, to:, cc:, bcc:, subject:, label:, in:, is:, category:, has:, after:, before:, "
    "newer_than:, older_than:, larger:, smaller:, rfc822msgid:"
)


class QueryError(ValueError):
    """The query uses syntax the emulator does not support; the message names the part."""


def _pacific() -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("America/Los_Angeles")
    except Exception:  # no tz database: Gmail documents the dates as midnight PST
        return timezone(timedelta(hours=-8), "PST")


_PACIFIC = _pacific()

_IN_LABELS = {
    "inbox": "INBOX",
    "sent": "SENT",
    "spam": "SPAM",
    "trash": "TRASH",
    "draft": "DRAFT",
    "drafts": "DRAFT",
    "starred": "STARRED",
    "important": "IMPORTANT",
    "unread": "UNREAD",
    "chat": "CHAT",
    "chats": "CHAT",
}
_CATEGORIES = {
    "primary": "CATEGORY_PERSONAL",
    "personal": "CATEGORY_PERSONAL",
    "social": "CATEGORY_SOCIAL",
    "promotions": "CATEGORY_PROMOTIONS",
    "updates": "CATEGORY_UPDATES",
    "forums": "CATEGORY_FORUMS",
}
_IS_LABELS = {"unread": "UNREAD", "starred": "STARRED", "important": "IMPORTANT"}
_HEADER_OPERATORS = {
    "from": ("From",),
    "to": ("To", "Cc", "Bcc"),
    "cc": ("Cc",),
    "bcc": ("Bcc",),
    "subject": ("Subject",),
}
_SPAM_TRASH = {"SPAM", "TRASH"}
_RELATIVE_RE = re.compile(r"^(\d+)([hdmy])$")
_DATE_RE = re.compile(r"^(\d{4})[/-](\d{1,2})[/-](\d{1,2})$")
_SIZE_RE = re.compile(r"^(\d+)([km]?)$")


@dataclass(frozen=True)
class Query:
    """A compiled query. explicit_spam_trash: it asks for spam/trash itself (in:spam, in:anywhere ...)."""

    text: str
    predicate: Predicate
    explicit_spam_trash: bool

    def matches(self, message: MessageSnapshot) -> bool:
        return self.predicate(message)


def parse_query(text: str, *, labels: Sequence[Label], now: float) -> Query:
    """Compile `text`; `labels` resolves label names, `now` (epoch seconds) anchors newer_than:."""
    tokens = _tokenize(text)
    if not tokens:
        return Query(text, lambda _m: True, False)
    compiler = _Compiler(tokens, labels, now)
    predicate = compiler.parse()
    return Query(text, predicate, compiler.explicit_spam_trash)


# ---------------------------------------------------------------- tokenizer
@dataclass(frozen=True)
class _Token:
    kind: str  # "(" | ")" | "-" | "OR" | "AND" | "TERM"
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char))
            i += 1
        elif char in "{}":
            raise QueryError(f"unsupported search syntax {char!r}: {{ }} groups are not supported; use OR")
        elif char == "-" and i + 1 < n and not text[i + 1].isspace():
            tokens.append(_Token("-", "-"))
            i += 1
        elif char == '"':
            end = text.find('"', i + 1)
            phrase = text[i : end + 1] if end != -1 else text[i:]
            raise QueryError(f"unsupported search term {phrase}: full-text search is not supported")
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "()":
                if text[i] == ":" and i + 1 < n and text[i + 1] == '"':
                    end = text.find('"', i + 2)
                    if end == -1:
                        raise QueryError(f"unterminated quote in {text[start:]!r}")
                    i = end + 1
                    break
                if text[i] == ":" and i + 1 < n and text[i + 1] in "({":
                    raise QueryError(
                        f"unsupported search syntax {text[start : i + 2]!r}: grouped operator values are not supported"
                    )
                i += 1
            word = text[start:i]
            tokens.append(_Token(word if word in ("OR", "AND") else "TERM", word))
    return tokens


# ------------------------------------------------------------------- parser
class _Compiler:
    def __init__(self, tokens: list[_Token], labels: Sequence[Label], now: float) -> None:
        self.tokens = tokens
        self.pos = 0
        self.labels = labels
        self.now = now
        self.explicit_spam_trash = False
        self._negations = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Predicate:
        predicate = self._or()
        leftover = self._peek()
        if leftover is not None:
            raise QueryError(f"unexpected {leftover.text!r} in search query")
        return predicate

    def _or(self) -> Predicate:
        options = [self._and()]
        while (token := self._peek()) is not None and token.kind == "OR":
            self._take()
            options.append(self._and())
        if len(options) == 1:
            return options[0]
        return lambda m: any(p(m) for p in options)

    def _and(self) -> Predicate:
        parts: list[Predicate] = []
        while (token := self._peek()) is not None and token.kind not in (")", "OR"):
            if token.kind == "AND":
                self._take()
                if not parts:
                    raise QueryError("AND needs a search term before it")
                continue
            parts.append(self._unary())
        if not parts:
            found = self._peek()
            raise QueryError(f"missing search term before {found.text!r}" if found else "missing search term")
        if len(parts) == 1:
            return parts[0]
        return lambda m: all(p(m) for p in parts)

    def _unary(self) -> Predicate:
        token = self._take()
        if token.kind == "-":
            if self._peek() is None:
                raise QueryError("'-' must be followed by a search term")
            self._negations += 1
            inner = self._unary()
            self._negations -= 1
            return lambda m: not inner(m)
        if token.kind == "(":
            inner = self._or()
            closing = self._peek()
            if closing is None or closing.kind != ")":
                raise QueryError("unbalanced parentheses in search query")
            self._take()
            return inner
        if token.kind == "TERM":
            return self._term(token.text)
        raise QueryError(f"unexpected {token.text!r} in search query")

    # ------------------------------------------------------------------ terms
    def _term(self, word: str) -> Predicate:
        operator, sep, value = word.partition(":")
        if not sep or not operator:
            raise QueryError(
                f"unsupported search term {word!r}: full-text search is not supported; use one of {SUPPORTED_OPERATORS}"
            )
        operator = operator.lower()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        value = value.strip()
        if not value:
            raise QueryError(f"search operator {operator}: needs a value in {word!r}")
        handler = getattr(self, f"_op_{operator}", None)
        if operator in _HEADER_OPERATORS:
            return self._header(_HEADER_OPERATORS[operator], value)
        if handler is None:
            raise QueryError(f"unsupported search operator {operator + ':'!r} in {word!r}")
        predicate: Predicate = handler(value, word)
        return predicate

    def _note_label(self, label_id: str | None) -> None:
        if label_id in _SPAM_TRASH and self._negations % 2 == 0:
            self.explicit_spam_trash = True

    def _label_predicate(self, label_id: str | None) -> Predicate:
        self._note_label(label_id)
        if label_id is None:
            return lambda _m: False  # Gmail: a label that does not exist matches nothing
        return lambda m: label_id in m.label_ids

    def _resolve_label(self, value: str) -> str | None:
        for label in self.labels:
            if label.id == value:
                return label.id
        key = name_key(value)
        for label in self.labels:
            if name_key(label.name) == key or name_key(label.id) == key:
                return label.id
        return None

    @staticmethod
    def _header(names: tuple[str, ...], value: str) -> Predicate:
        needle = value.casefold()
        return lambda m: any(needle in m.content.header(name).casefold() for name in names)

    def _op_label(self, value: str, _word: str) -> Predicate:
        return self._label_predicate(self._resolve_label(value))

    def _op_in(self, value: str, _word: str) -> Predicate:
        key = value.lower()
        if key == "anywhere":
            if self._negations % 2 == 0:
                self.explicit_spam_trash = True
            return lambda _m: True
        if key in _IN_LABELS:
            return self._label_predicate(_IN_LABELS[key])
        return self._label_predicate(self._resolve_label(value))

    def _op_is(self, value: str, word: str) -> Predicate:
        key = value.lower()
        if key == "read":
            return lambda m: "UNREAD" not in m.label_ids
        if key in _IS_LABELS:
            return self._label_predicate(_IS_LABELS[key])
        raise QueryError(f"unsupported search term {word!r}: is: supports unread, read, starred, important")

    def _op_category(self, value: str, word: str) -> Predicate:
        label_id = _CATEGORIES.get(value.lower())
        if label_id is None:
            raise QueryError(f"unknown category in {word!r}: use one of {', '.join(sorted(_CATEGORIES))}")
        return self._label_predicate(label_id)

    def _op_has(self, value: str, word: str) -> Predicate:
        key = value.lower()
        user_ids = {label.id for label in self.labels if label.type == "user"}
        if key == "attachment":
            return lambda m: m.content.has_attachment
        if key == "userlabels":
            return lambda m: any(label in user_ids for label in m.label_ids)
        if key == "nouserlabels":
            return lambda m: not any(label in user_ids for label in m.label_ids)
        raise QueryError(f"unsupported search term {word!r}: has: supports attachment, userlabels, nouserlabels")

    def _op_after(self, value: str, word: str) -> Predicate:
        ms = _absolute_ms(value, word)
        return lambda m: m.internal_date_ms >= ms

    def _op_before(self, value: str, word: str) -> Predicate:
        ms = _absolute_ms(value, word)
        return lambda m: m.internal_date_ms < ms

    def _op_newer_than(self, value: str, word: str) -> Predicate:
        ms = _relative_ms(value, word, self.now)
        return lambda m: m.internal_date_ms > ms

    def _op_older_than(self, value: str, word: str) -> Predicate:
        ms = _relative_ms(value, word, self.now)
        return lambda m: m.internal_date_ms < ms

    def _op_larger(self, value: str, word: str) -> Predicate:
        size = _size(value, word)
        return lambda m: m.size_estimate > size

    def _op_smaller(self, value: str, word: str) -> Predicate:
        size = _size(value, word)
        return lambda m: m.size_estimate < size

    def _op_rfc822msgid(self, value: str, _word: str) -> Predicate:
        wanted = value.strip("<>")
        return lambda m: wanted in mime.message_ids(m.content.headers.get("Message-ID"))


# -------------------------------------------------------------------- values
def _absolute_ms(value: str, word: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    match = _DATE_RE.match(value)
    if match:
        try:
            day = datetime(int(match[1]), int(match[2]), int(match[3]), tzinfo=_PACIFIC)
        except ValueError:
            raise QueryError(f"invalid date in {word!r}") from None
        return int(day.timestamp() * 1000)
    raise QueryError(f"invalid date in {word!r}: use YYYY/MM/DD, YYYY-MM-DD or epoch seconds")


def _relative_ms(value: str, word: str, now: float) -> int:
    match = _RELATIVE_RE.match(value.lower())
    if not match:
        raise QueryError(f"invalid period in {word!r}: use a number and h, d, m or y (e.g. 2d)")
    amount, unit = int(match[1]), match[2]
    current = datetime.fromtimestamp(now, UTC)
    try:
        if unit == "h":
            then = current - timedelta(hours=amount)
        elif unit == "d":
            then = current - timedelta(days=amount)
        else:
            months = amount * (12 if unit == "y" else 1)
            year, month = divmod(current.year * 12 + current.month - 1 - months, 12)
            then = _replace_month(current, year, month + 1)
    except (OverflowError, ValueError):
        return 0  # further back than any message
    return int(then.timestamp() * 1000)


def _replace_month(moment: datetime, year: int, month: int) -> datetime:
    if year < 1:
        raise ValueError("before year 1")
    for day in (moment.day, 30, 29, 28):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise ValueError("no such day")


def _size(value: str, word: str) -> int:
    match = _SIZE_RE.match(value.lower())
    if not match:
        raise QueryError(f"invalid size in {word!r}: use bytes or a K/M suffix (e.g. 10K)")
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024 * 1024}[match[2]]
