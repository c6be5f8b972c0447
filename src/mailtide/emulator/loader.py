"""Bulk-loading a mailbox from mail exports: mbox files, .eml trees, maildirs, Google Takeout.

Raw bytes are stored exactly as in the source (minus an mbox envelope line). Labels come from
Takeout's X-Gmail-Labels header when present, else from the caller's defaults adjusted by the
folder (spam/, Trash/, Sent/ ...) and by maildir conventions (new/ -> UNREAD, flag S -> read,
flag F -> STARRED). Threads come from X-GM-THRID, else from References/In-Reply-To, else from
the normalised subject (see Mailbox._assign_thread).
"""

from __future__ import annotations

import logging
import mailbox as stdlib_mailbox
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailtide.emulator import mime
from mailtide.emulator.labels import FOLDER_SYSTEM_LABELS, takeout_labels
from mailtide.emulator.mailbox import ID_RE, Mailbox, NewMessage, format_id

logger = logging.getLogger(__name__)

DEFAULT_LOAD_LABELS: tuple[str, ...] = ("INBOX",)
MBOX_SUFFIXES = {".mbox", ".mbx"}
# Files in a mail tree that are documentation or data, never mail.
NON_MAIL_SUFFIXES = frozenset(
    {".md", ".rst", ".csv", ".xml", ".json", ".yaml", ".yml", ".toml", ".sqlite", ".db", ".py", ".sh"}
    | {".gz", ".zip", ".tar", ".tgz", ".bz2", ".xz", ".pdf", ".html", ".htm"}
)
NON_MAIL_NAMES = re.compile(r"^(readme|license|licence|copying|notice|changelog)(\..*)?$", re.IGNORECASE)
_ENVELOPE_RE = re.compile(
    rb"From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
)
_TAKEOUT_ENVELOPE_RE = re.compile(rb"^From (\d{1,20})@xxx ")
# An RFC 5322 header field: a name of printable ASCII without ':' or space, then ':'.
_HEADER_LINE_RE = re.compile(rb"[!-9;-~]+[ \t]*:")


@dataclass
class LoadReport:
    """What a load did: the new message ids, the files it left out and the files loaded although
    they do not look like mail (path, reason)."""

    message_ids: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    doubtful: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.message_ids)


@dataclass
class CollectedMessages:
    """Messages read from sources but not yet inserted, the files left out, and the files loaded
    although they do not look like mail (path, why): a README or a binary given by mistake."""

    items: list[NewMessage] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    doubtful: list[tuple[str, str]] = field(default_factory=list)

    def extend(self, other: CollectedMessages) -> None:
        self.items.extend(other.items)
        self.skipped.extend(other.skipped)
        self.doubtful.extend(other.doubtful)


# ---------------------------------------------------------------- public API
def load_path(
    mailbox: Mailbox, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
) -> LoadReport:
    """Load a file (one message, or an mbox) or a directory tree (eml files, maildirs, mbox files)."""
    mailbox.check_label_ids(_defaults(label_ids))
    return _load(mailbox, collect_path(path, label_ids=label_ids), record_history)


def load_mbox(
    mailbox: Mailbox, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
) -> LoadReport:
    path = _existing(path)
    mailbox.check_label_ids(_defaults(label_ids))
    if not path.is_file():
        raise ValueError(f"not an mbox file: {path}")
    collected = CollectedMessages()
    _collect_mbox(path, _defaults(label_ids), (), collected)
    return _load(mailbox, collected, record_history)


def load_eml_dir(
    mailbox: Mailbox, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
) -> LoadReport:
    """Every regular file in the tree is one message (mbox files and maildirs are recognised too)."""
    path = _existing(path)
    mailbox.check_label_ids(_defaults(label_ids))
    if not path.is_dir():
        raise ValueError(f"not a directory: {path}")
    return _load(mailbox, collect_path(path, label_ids=label_ids), record_history)


def load_maildir(
    mailbox: Mailbox, path: str | Path, *, label_ids: Sequence[str] | None = None, record_history: bool = False
) -> LoadReport:
    path = _existing(path)
    mailbox.check_label_ids(_defaults(label_ids))
    if not path.is_dir() or not any((path / part).is_dir() for part in ("cur", "new")):
        raise ValueError(f"not a maildir (no cur/ or new/ folder): {path}")
    return _load(mailbox, collect_path(path, label_ids=label_ids), record_history)


def collect_path(path: str | Path, *, label_ids: Sequence[str] | None = None) -> CollectedMessages:
    """Read messages from a file or tree without inserting them (so several paths load as one)."""
    path = _existing(path)
    defaults = _defaults(label_ids)
    collected = CollectedMessages()
    if path.is_file():
        if _is_mbox(path):
            _collect_mbox(path, defaults, (), collected)
        else:
            _collect_file(path, defaults, (), collected)
        return collected
    for file_path, folders in _walk(path):
        try:
            data = file_path.read_bytes()
            if _is_mbox(file_path, data):
                _collect_mbox(file_path, defaults, (*folders, file_path.stem), collected)
            else:
                _collect_file(file_path, defaults, folders, collected, data)
        except OSError as exc:
            collected.skipped.append((str(file_path), f"unreadable: {exc}"))
            logger.warning("emulator.load.unreadable", extra={"path": str(file_path), "error": str(exc)})
    return collected


def load_collected(mailbox: Mailbox, collected: CollectedMessages, *, record_history: bool = False) -> LoadReport:
    return _load(mailbox, collected, record_history)


# ------------------------------------------------------------------ internals
def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    return path


def _defaults(label_ids: Sequence[str] | None) -> tuple[str, ...]:
    if label_ids is None:
        return DEFAULT_LOAD_LABELS
    if isinstance(label_ids, str):
        raise TypeError("label_ids must be a sequence of label ids, not a string")
    return tuple(label_ids)


def _load(mailbox: Mailbox, collected: CollectedMessages, record_history: bool) -> LoadReport:
    ids = mailbox.add_messages(collected.items, record_history=record_history)
    logger.info(
        "emulator.load.done",
        extra={"email": mailbox.email, "messages": len(ids), "skipped": len(collected.skipped)},
    )
    return LoadReport(message_ids=ids, skipped=list(collected.skipped), doubtful=list(collected.doubtful))


def _walk(root: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """Regular files under root in a stable order, with the folder names between root and file."""
    for dirpath, dirnames, filenames in os.walk(root):
        current = Path(dirpath)
        # Hidden folders are skipped, except Maildir++ subfolders (.Sent, .Junk ...).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") or _is_maildir(current / d))
        if current.name == "tmp" and _is_maildir(current.parent):
            continue  # deliveries in progress
        folders = current.relative_to(root).parts
        for name in sorted(filenames):
            file_path = current / name
            if name.startswith(".") or not file_path.is_file():
                continue
            if file_path.suffix.lower() in NON_MAIL_SUFFIXES or NON_MAIL_NAMES.match(name):
                logger.debug("emulator.load.not_mail", extra={"path": str(file_path)})
                continue
            yield file_path, folders


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _is_mbox(path: Path, head: bytes | None = None) -> bool:
    """By name (.mbox, .mbx, mbox), else by content: more than one envelope line."""
    if path.suffix.lower() in MBOX_SUFFIXES or path.name.lower() == "mbox":
        return True
    if head is None:
        with path.open("rb") as handle:
            head = handle.read(1 << 20)
    if not head.startswith(b"From "):
        return False
    # A single message with an envelope line (SpamAssassin corpus) has no second envelope.
    position = head.find(b"\n\nFrom ")
    while position != -1:
        if _ENVELOPE_RE.match(head, position + 2):
            return True
        position = head.find(b"\n\nFrom ", position + 2)
    return False


def _collect_mbox(path: Path, defaults: tuple[str, ...], folders: Sequence[str], out: CollectedMessages) -> None:
    box = stdlib_mailbox.mbox(str(path), create=False)
    found_before = len(out.items)
    try:
        for key in box.iterkeys():
            try:
                data = box.get_bytes(key, from_=True)
            except Exception as exc:  # a damaged entry must not stop the rest
                out.skipped.append((f"{path}#{key}", f"unreadable mbox entry: {exc}"))
                continue
            envelope, _, raw = data.partition(b"\n")
            if envelope.endswith(b"\r") and raw.endswith(b"\r\n\r\n"):
                # The blank line that separates messages. The stdlib strips it only when it is
                # b"\n"; CRLF exports (Takeout, Vault) keep it as b"\r\n".
                raw = raw[:-2]
            preferred = None
            takeout = _TAKEOUT_ENVELOPE_RE.match(envelope)
            if takeout and int(takeout.group(1)) < (1 << 64):
                preferred = format_id(int(takeout.group(1)))
            out.items.append(_new_message(raw, defaults, folders, preferred_id=preferred))
    finally:
        box.close()
    if len(out.items) == found_before and path.stat().st_size > 0:
        out.skipped.append((str(path), "no message found (an mbox starts each message with a 'From ' line)"))


def _collect_file(
    path: Path,
    defaults: tuple[str, ...],
    folders: Sequence[str],
    out: CollectedMessages,
    data: bytes | None = None,
) -> None:
    raw = path.read_bytes() if data is None else data
    if raw.startswith(b"From "):
        _, _, raw = raw.partition(b"\n")  # the mbox envelope line of a single-message file
    if not raw.strip():
        out.skipped.append((str(path), "empty file"))
        return
    if not looks_like_message(raw):
        out.doubtful.append((str(path), "no header lines at the top (not an RFC 822 message, nor an mbox)"))
    stem = path.name.split(":", 1)[0]
    stem = stem.rsplit(".", 1)[0] if stem.lower().endswith(".eml") else stem
    preferred = stem if ID_RE.match(stem) else None  # GYB names files by Gmail id
    labels = list(defaults)
    if len(folders) >= 1 and folders[-1] in ("new", "cur"):
        labels = _apply_maildir_flags(labels, folders[-1], path.name)
    out.items.append(_new_message(raw, tuple(labels), folders, preferred_id=preferred))


def looks_like_message(raw: bytes) -> bool:
    """Whether the bytes start as an RFC 822 message does: with a header field line."""
    return _HEADER_LINE_RE.match(raw.lstrip(b"\r\n")) is not None


def _apply_maildir_flags(labels: list[str], subdir: str, name: str) -> list[str]:
    if subdir == "new" and "UNREAD" not in labels:
        labels.append("UNREAD")
    _, sep, info = name.rpartition(":2,")
    flags = info if sep else ""
    if "S" in flags and "UNREAD" in labels:
        labels.remove("UNREAD")
    if "F" in flags and "STARRED" not in labels:
        labels.append("STARRED")
    return labels


def _folder_labels(defaults: Sequence[str], folders: Sequence[str]) -> list[str]:
    """A special folder's system label (spam/, Trash/, Sent/ ...) replaces INBOX in the defaults."""
    labels = list(defaults)
    special = None
    for folder in folders:
        key = folder.lower().lstrip(".").removeprefix("[gmail].").removeprefix("[gmail]/").strip()
        special = FOLDER_SYSTEM_LABELS.get(key, special)
    if special is None or special == "INBOX":
        return labels
    labels = [label for label in labels if label != "INBOX"]
    if special in ("SENT", "DRAFT"):
        labels = [label for label in labels if label != "UNREAD"]
    if special not in labels:
        labels.insert(0, special)
    return labels


def _thread_hint(value: str | None) -> str | None:
    text = (value or "").strip()
    if not text.isdigit() or int(text) >= (1 << 64):
        return None
    return format_id(int(text))


def _new_message(
    raw: bytes, defaults: Sequence[str], folders: Sequence[str], *, preferred_id: str | None
) -> NewMessage:
    item = NewMessage(raw)
    headers = item.content.headers
    gmail_labels = headers.get("X-Gmail-Labels")
    if gmail_labels is not None:
        mapped = takeout_labels(mime.decode_header_value(gmail_labels))
        item.label_ids = mapped.system_ids
        item.label_names = mapped.user_names
    else:
        item.label_ids = _folder_labels(defaults, folders)
    item.thread_id = _thread_hint(mime.clean_text(str(headers.get("X-GM-THRID") or "")))
    item.preferred_id = preferred_id
    return item
