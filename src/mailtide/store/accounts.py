"""Accounts and their sync state.

Credentials are encrypted at this edge: pass a SecretBox and the refresh token (and client secret)
are stored encrypted, and read back decrypted. Rows stored in plain text still read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailtide.db.schema import (
    STATUS_NEEDS_BACKFILL,
    accounts,
    attachments,
    credentials,
    job_steps,
    jobs,
    labels,
    messages,
    threads,
)
from mailtide.secrets import SecretBox, SecretUnreadable, is_encrypted
from mailtide.store.sql import now


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    status: str
    history_id: int | None
    anchor_history_id: int | None
    last_sync_at: float | None
    last_error: str | None
    messages_total: int | None
    backfill_listed: int
    backfill_started_at: float | None
    backfill_finished_at: float | None
    credential_id: int | None
    backfill_newer_than: str | None = None  # Gmail newer_than window ("90d", "6m", "2y"); None = everything
    include_spam_trash: bool = True


@dataclass(frozen=True)
class Credential:
    client_id: str
    client_secret: str | None
    refresh_token: str

    def __repr__(self) -> str:  # never show the secrets, e.g. in a traceback
        return f"Credential(client_id={self.client_id!r}, client_secret=***, refresh_token=***)"


@dataclass(frozen=True)
class AccountCredential:
    """An account's credential with what a client cache needs to know about it."""

    email: str
    status: str
    credential: Credential
    version: str  # changes whenever the stored credential changes (e.g. after `accounts reauth`)
    scopes: str | None = None  # space-separated, as granted


class AccountNotFound(LookupError):
    pass


class InvalidBackfillWindow(ValueError):
    """A backfill window that is not a Gmail `newer_than` operand."""


# Gmail's relative-date operand: a count and a unit (d = days, m = months, y = years).
_NEWER_THAN = re.compile(r"[1-9][0-9]{0,4}[dmy]")


def window_query(newer_than: str | None) -> str | None:
    """The messages.list `q` for a backfill window (None: the whole mailbox)."""
    if not newer_than:
        return None
    value = newer_than.strip().lower()
    if not _NEWER_THAN.fullmatch(value):
        raise InvalidBackfillWindow(f"backfill window {newer_than!r} is not a Gmail newer_than value: 30d, 6m, 2y")
    return f"newer_than:{value}"


def _seal(secrets: SecretBox | None, value: str | None) -> str | None:
    return value if secrets is None or value is None else secrets.encrypt(value)


def _open(secrets: SecretBox | None, value: str | None) -> str | None:
    if value is None or not is_encrypted(value):
        return value
    if secrets is None:
        raise SecretUnreadable("the credential is encrypted but no secret key was given to read it")
    return secrets.decrypt(value)


def _account(row: sa.Row) -> Account:
    return Account(**{f: getattr(row, f) for f in Account.__dataclass_fields__})


async def create_account(
    engine: AsyncEngine,
    email: str,
    *,
    client_id: str,
    client_secret: str | None,
    refresh_token: str,
    scopes: str | None = None,
    secrets: SecretBox | None = None,
) -> int:
    """Create an account (status needs_backfill) with its credential; an existing email is updated.

    With `secrets`, the refresh token and client secret are stored encrypted."""
    async with engine.begin() as conn:
        existing = (
            await conn.execute(sa.select(accounts.c.id, accounts.c.credential_id).where(accounts.c.email == email))
        ).first()
        values = {
            "client_id": client_id,
            "client_secret": _seal(secrets, client_secret),
            "refresh_token": _seal(secrets, refresh_token),
            "scopes": scopes,
        }
        if existing is not None and existing.credential_id is not None:
            await conn.execute(credentials.update().where(credentials.c.id == existing.credential_id).values(**values))
            return existing.id
        cred_id = (
            await conn.execute(credentials.insert().values(**values, created_at=now()).returning(credentials.c.id))
        ).scalar_one()
        if existing is not None:
            await conn.execute(accounts.update().where(accounts.c.id == existing.id).values(credential_id=cred_id))
            return existing.id
        return (
            await conn.execute(
                accounts.insert()
                .values(email=email, credential_id=cred_id, status=STATUS_NEEDS_BACKFILL, created_at=now())
                .returning(accounts.c.id)
            )
        ).scalar_one()


async def get_account(conn_or_engine: AsyncEngine | AsyncConnection, account_id: int) -> Account:
    query = sa.select(accounts).where(accounts.c.id == account_id)
    if isinstance(conn_or_engine, AsyncEngine):
        async with conn_or_engine.connect() as conn:
            row = (await conn.execute(query)).first()
    else:
        row = (await conn_or_engine.execute(query)).first()
    if row is None:
        raise AccountNotFound(f"no account with id {account_id}")
    return _account(row)


async def find_account(engine: AsyncEngine, email_or_id: str) -> Account:
    async with engine.connect() as conn:
        cond = accounts.c.email == email_or_id
        if email_or_id.isdigit():
            cond = sa.or_(cond, accounts.c.id == int(email_or_id))
        row = (await conn.execute(sa.select(accounts).where(cond))).first()
    if row is None:
        raise AccountNotFound(f"no account {email_or_id!r}")
    return _account(row)


async def list_accounts(engine: AsyncEngine) -> list[Account]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(accounts).order_by(accounts.c.id))).all()
    return [_account(r) for r in rows]


async def get_credential(engine: AsyncEngine, account_id: int, *, secrets: SecretBox | None = None) -> Credential:
    return (await load_account_credential(engine, account_id, secrets=secrets)).credential


async def load_account_credential(
    engine: AsyncEngine, account_id: int, *, secrets: SecretBox | None = None
) -> AccountCredential:
    """The decrypted credential plus the account's email and status, in one query."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    accounts.c.email,
                    accounts.c.status,
                    credentials.c.client_id,
                    credentials.c.client_secret,
                    credentials.c.refresh_token,
                    credentials.c.scopes,
                )
                .select_from(accounts.join(credentials, accounts.c.credential_id == credentials.c.id))
                .where(accounts.c.id == account_id)
            )
        ).first()
    if row is None:
        raise AccountNotFound(f"account {account_id} has no credential")
    version = hashlib.sha256(
        "\0".join((row.client_id, row.client_secret or "", row.refresh_token)).encode()
    ).hexdigest()[:16]
    credential = Credential(
        row.client_id, _open(secrets, row.client_secret), _open(secrets, row.refresh_token) or ""
    )
    return AccountCredential(row.email, row.status, credential, version, row.scopes)


async def encrypt_stored_credentials(engine: AsyncEngine, secrets: SecretBox) -> int:
    """Encrypt credentials still stored in plain text (written before encryption, or without a key).

    Also proves the key reads every encrypted credential: raises SecretUnreadable (naming the
    account) otherwise. Returns how many rows were encrypted."""
    encrypted = 0
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                sa.select(
                    credentials.c.id, credentials.c.client_secret, credentials.c.refresh_token, accounts.c.email
                )
                .select_from(credentials.outerjoin(accounts, accounts.c.credential_id == credentials.c.id))
                .order_by(credentials.c.id)
            )
        ).all()
        for row in rows:
            try:
                for value in (row.client_secret, row.refresh_token):
                    _open(secrets, value)
            except SecretUnreadable as exc:
                raise SecretUnreadable(f"credential of {row.email or f'credential {row.id}'}: {exc}") from None
            if is_encrypted(row.refresh_token) and (row.client_secret is None or is_encrypted(row.client_secret)):
                continue
            await conn.execute(
                credentials.update()
                .where(credentials.c.id == row.id)
                .values(
                    refresh_token=secrets.encrypt(row.refresh_token),
                    client_secret=_seal(secrets, row.client_secret),
                )
            )
            encrypted += 1
    return encrypted


async def delete_account(engine: AsyncEngine, account_id: int) -> None:
    """Delete an account with its mirror (messages, threads, labels, attachments), jobs and credential.

    Children are deleted explicitly: no reliance on ON DELETE CASCADE being enforced."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(sa.select(accounts.c.credential_id).where(accounts.c.id == account_id))
        ).first()
        if row is None:
            raise AccountNotFound(f"no account with id {account_id}")
        account_jobs = sa.select(jobs.c.id).where(jobs.c.account_id == account_id)
        await conn.execute(job_steps.delete().where(job_steps.c.job_id.in_(account_jobs)))
        await conn.execute(jobs.delete().where(jobs.c.account_id == account_id))
        for table in (attachments, messages, threads, labels):
            await conn.execute(table.delete().where(table.c.account_id == account_id))
        await conn.execute(accounts.delete().where(accounts.c.id == account_id))
        if row.credential_id is not None:
            await conn.execute(credentials.delete().where(credentials.c.id == row.credential_id))


async def update_account(engine: AsyncEngine | AsyncConnection, account_id: int, **values: object) -> None:
    stmt = accounts.update().where(accounts.c.id == account_id).values(**values)
    if isinstance(engine, AsyncEngine):
        async with engine.begin() as conn:
            await conn.execute(stmt)
    else:
        await engine.execute(stmt)


async def clear_last_error(engine: AsyncEngine, account_id: int, *, seen: str | None) -> None:
    """A sync step succeeded: forget the error the account showed when the step began. An error
    recorded meanwhile (by another job) differs from `seen` and stays."""
    if seen is None:
        return
    async with engine.begin() as conn:
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id, accounts.c.last_error == seen)
            .values(last_error=None)
        )


async def set_backfill_options(
    engine: AsyncEngine, account_id: int, *, newer_than: str | None, include_spam_trash: bool
) -> None:
    """Set what the next backfill lists; InvalidBackfillWindow for a window Gmail would not understand."""
    window_query(newer_than)
    await get_account(engine, account_id)  # AccountNotFound for an unknown id
    await update_account(
        engine,
        account_id,
        backfill_newer_than=newer_than.strip().lower() if newer_than else None,
        include_spam_trash=include_spam_trash,
    )


async def advance_history_id(engine: AsyncEngine, account_id: int, history_id: int, **values: object) -> bool:
    """Move the cursor forward to `history_id` (never backwards). Returns whether it moved."""
    async with engine.begin() as conn:
        result = await conn.execute(
            accounts.update()
            .where(accounts.c.id == account_id)
            .where(sa.or_(accounts.c.history_id.is_(None), accounts.c.history_id < history_id))
            .values(history_id=history_id, **values)
        )
        if values and result.rowcount == 0:
            await conn.execute(accounts.update().where(accounts.c.id == account_id).values(**values))
    return result.rowcount > 0
