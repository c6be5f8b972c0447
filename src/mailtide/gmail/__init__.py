"""Gmail API client: OAuth token refresh, typed read methods, one error type."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from mailtide.config import Settings
from mailtide.gmail.auth import OAuthTokenSource
from mailtide.gmail.client import GmailClient
from mailtide.gmail.errors import GmailError
from mailtide.gmail.limiter import QuotaLimiter, TokenBucket, project_bucket
from mailtide.gmail.quota import QuotaProfile, quota_profile

__all__ = [
    "GmailClient",
    "GmailError",
    "OAuthTokenSource",
    "QuotaLimiter",
    "QuotaProfile",
    "build_gmail_client",
    "create_http_client",
    "project_bucket",
    "settings_quota_profile",
]


def create_http_client(
    settings: Settings,
    *,
    wrap_transport: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """An httpx client sized for Gmail traffic (timeouts from settings, no redirects).

    `wrap_transport` lets the caller put a layer around the transport (metrics, traces)."""
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=max(10, settings.gmail_concurrency * 2))
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout_seconds, connect=min(10.0, settings.http_timeout_seconds)),
        transport=wrap_transport(transport) if wrap_transport is not None else transport,
        follow_redirects=False,
    )


def settings_quota_profile(settings: Settings) -> QuotaProfile:
    """The quota profile the settings describe (name, custom numbers, time scale)."""
    return quota_profile(
        settings.quota_profile,
        user_units_per_minute=settings.quota_user_units_per_minute,
        project_units_per_minute=settings.quota_project_units_per_minute,
        costs=settings.quota_costs,
        time_scale=settings.quota_time_scale,
    )


def build_gmail_client(
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    limiter: QuotaLimiter | None = None,
    project_bucket: TokenBucket | None = None,
) -> GmailClient:
    """A client for one account, pointed at settings.gmail_api_url / settings.token_url, pacing itself by
    the settings' quota profile. Pass the account's `limiter` to keep its pacing across rebuilt clients,
    or a `project_bucket` that every account of the process shares."""
    tokens = OAuthTokenSource(
        http,
        token_url=settings.token_url,
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
    )
    limiter = limiter or QuotaLimiter(settings_quota_profile(settings), project_bucket=project_bucket)
    return GmailClient(
        http,
        tokens,
        api_url=settings.gmail_api_url,
        max_concurrency=settings.gmail_concurrency,
        max_retries=settings.gmail_max_retries,
        limiter=limiter,
    )
