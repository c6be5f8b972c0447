"""What the sync handlers need: the database, the queue, settings and a Gmail client per account."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from mailtide.config import Settings
from mailtide.db.schema import STATUS_NEEDS_REAUTH
from mailtide.gmail import (
    GmailClient,
    GmailError,
    QuotaLimiter,
    build_gmail_client,
    create_http_client,
    project_bucket,
    settings_quota_profile,
)
from mailtide.gmail.limiter import TokenBucket
from mailtide.queue.job_queue import JobQueue
from mailtide.secrets import SecretBox
from mailtide.store.accounts import load_account_credential


@dataclass
class GmailClients:
    """One GmailClient per account (its token cache and concurrency cap) over one shared connection pool."""

    engine: AsyncEngine
    settings: Settings
    # Instrumentation seam: a layer around the HTTP transport (metrics and traces of every Gmail request).
    wrap_transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None
    secrets: SecretBox | None = None  # decrypts stored credentials; from settings when not given
    http: httpx.AsyncClient = field(init=False)
    _clients: dict[int, tuple[str, GmailClient]] = field(default_factory=dict, init=False)
    # Quota pacing outlives a rebuilt client: one limiter per account, one project bucket for all.
    _limiters: dict[int, QuotaLimiter] = field(default_factory=dict, init=False)
    _project_bucket: TokenBucket | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.http = create_http_client(self.settings, wrap_transport=self.wrap_transport)
        self._project_bucket = project_bucket(settings_quota_profile(self.settings))
        if self.secrets is None:
            self.secrets = SecretBox.from_settings(self.settings)

    async def for_account(self, account_id: int) -> GmailClient:
        """The account's client; rebuilt when its stored credential changed (e.g. `accounts reauth`
        in another process). An account waiting for re-authorisation gets no client: its jobs park."""
        stored = await load_account_credential(self.engine, account_id, secrets=self.secrets)
        if stored.status == STATUS_NEEDS_REAUTH:
            raise GmailError(400, "invalid_grant", f"account {stored.email} is waiting for re-authorisation")
        cached = self._clients.get(account_id)
        if cached is not None and cached[0] == stored.version:
            return cached[1]
        cred = stored.credential
        client = build_gmail_client(
            self.http,
            self.settings,
            client_id=cred.client_id,
            client_secret=cred.client_secret or "",
            refresh_token=cred.refresh_token,
            limiter=self._limiter(account_id),
        )
        self._clients[account_id] = (stored.version, client)
        return client

    def _limiter(self, account_id: int) -> QuotaLimiter:
        limiter = self._limiters.get(account_id)
        if limiter is None:
            profile = settings_quota_profile(self.settings)
            limiter = self._limiters[account_id] = QuotaLimiter(profile, project_bucket=self._project_bucket)
        return limiter

    def forget(self, account_id: int) -> None:
        """Drop a cached client (after its credential changed)."""
        self._clients.pop(account_id, None)

    def built(self) -> dict[int, GmailClient]:
        """The clients this process has built, by account id (their counters feed /metrics)."""
        return {account_id: client for account_id, (_, client) in self._clients.items()}

    async def aclose(self) -> None:
        await self.http.aclose()


@dataclass
class SyncServices:
    engine: AsyncEngine
    queue: JobQueue
    settings: Settings
    gmail: GmailClients
