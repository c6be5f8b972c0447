"""The one error type of the Gmail client."""

from __future__ import annotations

# 403 reasons that mean "over a usage limit" (retry later) rather than "not allowed".
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded", "RESOURCE_EXHAUSTED"}
)
# 403 reasons that mean the grant or the domain refuses access: fatal until the account is fixed.
ACCESS_DENIED_REASONS = frozenset({"forbidden", "insufficientPermissions", "domainPolicy", "PERMISSION_DENIED"})


class GmailError(Exception):
    """A Gmail API call failed.

    status: HTTP status (0 when no HTTP answer arrived: connection error, timeout).
    reason: Gmail's machine-readable reason (e.g. "notFound", "rateLimitExceeded", "invalid_grant",
            "malformedResponse", "connectionError").
    unreadable_body: a 2xx whose body is not JSON at all (cut short on the way, or garbled): unlike a
            well-formed answer of the wrong shape, asking again will most likely get a good one.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        *,
        retry_after: float | None = None,
        unreadable_body: bool = False,
    ) -> None:
        super().__init__(f"Gmail API error {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.unreadable_body = unreadable_body

    @property
    def is_not_found(self) -> bool:
        return self.status == 404

    @property
    def is_auth_revoked(self) -> bool:
        """The refresh token no longer works: the account needs re-authorisation."""
        return self.reason == "invalid_grant"

    @property
    def is_rate_limited(self) -> bool:
        """Gmail says "too fast" (429, or 403 with a usage-limit reason): slow down and try again."""
        return self.status == 429 or (self.status == 403 and self.reason in RATE_LIMIT_REASONS)

    @property
    def is_concurrency_limited(self) -> bool:
        """ "Too many concurrent requests for user": fewer requests in flight, not a slower rate, helps."""
        return self.is_rate_limited and "concurrent" in self.message.lower()

    @property
    def is_access_denied(self) -> bool:
        """The account's grant or its domain does not allow this: retrying cannot help until someone acts."""
        return self.status == 403 and self.reason in ACCESS_DENIED_REASONS

    @property
    def is_server_error(self) -> bool:
        """No answer, or a 5xx: retry soon with jittered back-off."""
        return self.status == 0 or self.status >= 500

    @property
    def is_retried_like_server_error(self) -> bool:
        """A 5xx, no answer, or a 2xx body that could not be read: retry soon with jittered back-off."""
        return self.is_server_error or self.unreadable_body

    @property
    def is_transient(self) -> bool:
        """Worth retrying later: rate limits, server errors, network failures, bodies cut short."""
        return self.is_retried_like_server_error or self.is_rate_limited
