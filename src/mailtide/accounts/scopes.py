"""Gmail OAuth scopes mailtide asks for, and the check of what was granted.

gmail.readonly is enough to mirror; gmail.modify is offered for tools built on the mirror that
change mail. gmail.metadata is never requested: Gmail enforces its limits (no `q` search, no
format=raw) even when a broader scope is granted alongside it, and mailtide needs raw messages.
"""

from __future__ import annotations

from collections.abc import Iterable

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
GMAIL_METADATA = "https://www.googleapis.com/auth/gmail.metadata"
MAIL_GOOGLE_COM = "https://mail.google.com/"

SCOPE_CHOICES: dict[str, str] = {"readonly": GMAIL_READONLY, "modify": GMAIL_MODIFY}
_ENOUGH_TO_MIRROR = frozenset({GMAIL_READONLY, GMAIL_MODIFY, MAIL_GOOGLE_COM})


class ScopeProblem(ValueError):
    """The granted scopes cannot mirror the mailbox."""


def scopes_for(choice: str) -> list[str]:
    try:
        return [SCOPE_CHOICES[choice]]
    except KeyError:
        raise ScopeProblem(f"unknown scope {choice!r}: choose one of {', '.join(SCOPE_CHOICES)}") from None


def choice_of(stored_scopes: str | None) -> str:
    """The --scope choice matching scopes stored with an account (readonly when unknown)."""
    return "modify" if stored_scopes and GMAIL_MODIFY in stored_scopes.split() else "readonly"


def check_granted(granted: Iterable[str]) -> list[str]:
    scopes = sorted(set(granted))
    if GMAIL_METADATA in scopes:
        raise ScopeProblem(
            "the grant includes gmail.metadata, which forbids the raw message downloads mailtide needs "
            "(Google enforces it even next to broader scopes); revoke mailtide's access in your Google "
            "account settings and add the account again"
        )
    if not _ENOUGH_TO_MIRROR & set(scopes):
        raise ScopeProblem(f"the grant ({' '.join(scopes) or 'no scope'}) does not allow reading mail")
    return scopes
