"""OAuth 2.0 access tokens from a refresh token (the refresh_token grant), cached and shared.

google-auth is the field's library for this, but its Credentials object refreshes synchronously
and `from_authorized_user_info` ignores a token_uri given in the user info (GMAIL_FACTS.md), which
the emulator needs. The grant itself is one form POST, so a small async implementation over the
application's httpx client is simpler and safer here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from mailtide.gmail.errors import GmailError
from mailtide.gmail.responses import MALFORMED, body_excerpt, json_object, parse_retry_after

logger = logging.getLogger(__name__)

DEFAULT_EXPIRES_IN = 3600.0


class OAuthTokenSource:
    """Hands out a valid access token; refreshes it when it is within `refresh_margin_seconds` of
    expiry. Concurrent callers share one refresh. Tokens are never logged."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        refresh_margin_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not refresh_token:
            raise ValueError("refresh_token must not be empty")
        if not client_id:
            raise ValueError("client_id must not be empty")
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._refresh_token = refresh_token
        self._margin = max(0.0, float(refresh_margin_seconds))
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refreshes = 0

    @property
    def refresh_count(self) -> int:
        """How many times the token endpoint answered with a new token (for metrics and tests)."""
        return self._refreshes

    def _usable(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self._margin

    async def access_token(self) -> str:
        if self._usable():
            assert self._token is not None
            return self._token
        seen = self._refreshes
        async with self._lock:
            # Someone refreshed while we waited: use theirs (even if its lifetime is under the margin).
            if (self._refreshes != seen and self._token is not None) or self._usable():
                assert self._token is not None
                return self._token
            token = await self._refresh()
            return token

    def invalidate(self, token: str | None = None) -> None:
        """Forget the cached token (after a 401). With `token`, only if it is still the cached one,
        so that many requests failing with the same old token cause one refresh, not many."""
        if token is None or token == self._token:
            self._token = None
            self._expires_at = 0.0

    async def _refresh(self) -> str:
        form = {
            "grant_type": "refresh_token",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "refresh_token": self._refresh_token,
        }
        started = self._clock()
        try:
            response = await self._http.post(self._token_url, data=form, headers={"Accept": "application/json"})
        except httpx.TransportError as exc:
            logger.warning("oauth.refresh.unreachable error=%s", type(exc).__name__)
            raise GmailError(0, "connectionError", f"token endpoint unreachable: {type(exc).__name__}") from exc
        if not 200 <= response.status_code < 300:
            raise self._error(response)
        data = json_object(response, "token endpoint")
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise GmailError(response.status_code, MALFORMED, "token endpoint: no access_token in the answer")
        try:
            expires_in = float(data.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            problem = f"token endpoint: expires_in is not a number: {data.get('expires_in')!r}"
            raise GmailError(response.status_code, MALFORMED, problem) from None
        self._token = token
        self._expires_at = started + max(0.0, expires_in)
        self._refreshes += 1
        logger.info("oauth.refresh.ok expires_in=%s", int(expires_in))
        return token

    def _error(self, response: httpx.Response) -> GmailError:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        try:
            data = json_object(response, "token endpoint")
        except GmailError:
            data = {}
        code = data.get("error")
        description = data.get("error_description")
        reason = code if isinstance(code, str) and code else ("backendError" if status >= 500 else "oauthError")
        message = description if isinstance(description, str) and description else body_excerpt(response)
        logger.warning("oauth.refresh.failed status=%s reason=%s", status, reason)
        return GmailError(status, reason, f"token endpoint: {message}", retry_after=retry_after)
