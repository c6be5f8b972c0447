"""Gmail's error envelope: {"error": {"code", "message", "errors": [{domain, reason, message}], "status"}}."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

NOT_FOUND_MESSAGE = "Requested entity was not found."
AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class GmailApiError(Exception):
    """An error answer in Gmail's shape. `detail` is the message inside errors[0] (default: message)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        detail: str | None = None,
        extra: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        domain: str = "global",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.detail = detail if detail is not None else message
        self.extra = extra or {}
        self.headers = headers or {}
        self.domain = domain

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [{"message": self.detail, "domain": self.domain, "reason": self.reason, **self.extra}],
                "status": _STATUS_NAMES.get(self.code, "UNKNOWN"),
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.code, headers=self.headers)


def not_found(message: str = NOT_FOUND_MESSAGE) -> GmailApiError:
    return GmailApiError(404, "notFound", message)


def invalid_argument(message: str) -> GmailApiError:
    return GmailApiError(400, "invalidArgument", message)


def unauthenticated() -> GmailApiError:
    return GmailApiError(
        401,
        "authError",
        AUTH_MESSAGE,
        detail="Invalid Credentials",
        extra={"location": "Authorization", "locationType": "header"},
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def forbidden(message: str) -> GmailApiError:
    return GmailApiError(403, "forbidden", message)


def conflict(message: str) -> GmailApiError:
    return GmailApiError(409, "duplicate", message)


def backend_error() -> GmailApiError:
    return GmailApiError(500, "backendError", "Backend Error")


def service_unavailable() -> GmailApiError:
    return GmailApiError(503, "backendError", "The service is currently unavailable.")


def _retry_after_headers(retry_after: float | None) -> dict[str, str]:
    return {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}


def user_rate_limited(style: str, retry_after: float | None, *, now: float) -> GmailApiError:
    """Over the per-user quota, as Gmail says it: 429 rateLimitExceeded (RESOURCE_EXHAUSTED, with the
    time to retry in the text) or, in the older style, 403 userRateLimitExceeded (PERMISSION_DENIED)."""
    headers = _retry_after_headers(retry_after)
    if style == "403":
        return GmailApiError(
            403, "userRateLimitExceeded", "User Rate Limit Exceeded", domain="usageLimits", headers=headers
        )
    when = datetime.fromtimestamp(now + (retry_after or 0), UTC).isoformat(timespec="milliseconds")
    message = f"User-rate limit exceeded.  Retry after {when.replace('+00:00', 'Z')}"
    return GmailApiError(429, "rateLimitExceeded", message, domain="usageLimits", headers=headers)


def too_many_concurrent() -> GmailApiError:
    return GmailApiError(429, "rateLimitExceeded", "Too many concurrent requests for user")


def project_rate_limited(style: str, retry_after: float | None) -> GmailApiError:
    message = (
        "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service "
        "'gmail.googleapis.com' for consumer 'project_number:mailtide-emulator'."
    )
    code = 403 if style == "403" else 429
    return GmailApiError(
        code, "rateLimitExceeded", message, domain="usageLimits", headers=_retry_after_headers(retry_after)
    )
