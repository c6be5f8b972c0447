"""Cheap views of a whole mailbox built from messages.list (5 quota units per 500 ids).

Recovery and `mailtide verify` both need "which ids exist, in which thread, carrying which labels"
without a messages.get per message; these helpers answer that by listing, once per label.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailtide.gmail.client import MAX_PAGE_SIZE, GmailClient
from mailtide.gmail.models import Label
from mailtide.store.accounts import Account, window_query


@dataclass(frozen=True)
class Scope:
    """Which messages an account mirrors on backfill: a window and whether SPAM/TRASH count."""

    query: str | None = None
    include_spam_trash: bool = True

    @property
    def is_everything(self) -> bool:
        return self.query is None and self.include_spam_trash

    @classmethod
    def of(cls, account: Account) -> Scope:
        """The account's options; InvalidBackfillWindow when its stored window is not valid."""
        return cls(window_query(account.backfill_newer_than), account.include_spam_trash)


async def list_ids(
    client: GmailClient,
    *,
    label_id: str | None = None,
    query: str | None = None,
    include_spam_trash: bool = True,
) -> dict[str, str]:
    """Every matching message id with its thread id, all pages."""
    found: dict[str, str] = {}
    token: str | None = None
    while True:
        page = await client.list_messages(
            q=query,
            label_ids=[label_id] if label_id else None,
            page_token=token,
            max_results=MAX_PAGE_SIZE,
            include_spam_trash=include_spam_trash,
        )
        found.update((m.id, m.thread_id) for m in page.messages)
        token = page.next_page_token
        if not token:
            return found


async def label_membership(client: GmailClient, labels: list[Label]) -> dict[str, set[str]]:
    """message id -> the ids of the listed labels it carries, by listing each label's messages."""
    membership: dict[str, set[str]] = {}
    for label in labels:
        for message_id in await list_ids(client, label_id=label.id):
            membership.setdefault(message_id, set()).add(label.id)
    return membership
