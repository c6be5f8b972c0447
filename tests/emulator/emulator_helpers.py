"""Helpers shared by the emulator tests (messages to load, a user with an authorised client)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx

from mailtide.emulator import EmulatorServer, EmulatorState, Mailbox

REPO = Path(__file__).resolve().parents[2]
DEMO_DATA = REPO / "src" / "mailtide" / "demo_data"
SHARED_CORPUS = Path("/work/shared/corpus/mailbox")
MIME_SAMPLES = REPO / "tests" / "data" / "mime"

_user_numbers = itertools.count(1)


@dataclass
class User:
    email: str
    mailbox: Mailbox
    api: httpx.Client  # base URL /gmail/v1/users/me, authorised
    token: str


def new_user(state: EmulatorState, server: EmulatorServer) -> User:
    email = f"user{next(_user_numbers)}@example.test"
    mailbox = state.add_user(email)
    token = state.access_token_for(email)
    api = httpx.Client(
        base_url=f"{server.url}/gmail/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    return User(email=email, mailbox=mailbox, api=api, token=token)


def make_message(
    subject: str = "hello",
    *,
    sender: str = "Alice <alice@example.org>",
    to: str = "Bob <bob@example.org>",
    date: datetime | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    body: str = "Hello there.\n",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A small RFC 822 message (CRLF line ends, so byte-exactness tests see real line endings)."""
    headers = {
        "From": sender,
        "To": to,
        "Subject": subject,
        "Date": format_datetime(date or datetime(2002, 9, 1, 10, 0, tzinfo=UTC)),
    }
    if message_id:
        headers["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        headers["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        headers["References"] = references
    headers.update(extra_headers or {})
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


def ids_of(listing: dict) -> list[str]:
    return [m["id"] for m in listing.get("messages", [])]
