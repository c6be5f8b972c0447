"""An httpx transport layer that times, counts and traces every request to Gmail."""

from __future__ import annotations

import re
import time

import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from mailtide.observability.context import current_account_id
from mailtide.observability.metrics import ServiceMetrics

_USER_PATH = re.compile(r"/gmail/v1/users/[^/]+(?P<rest>/.*)?$")


def gmail_method(request: httpx.Request) -> str:
    """Gmail's name for the call ("messages.get", "history.list", ...), from the HTTP method and path."""
    path = request.url.path
    if path.startswith("/batch"):
        return "batch"
    match = _USER_PATH.search(path)
    if match is None:
        return "oauth.token" if path.rstrip("/").endswith("/token") else "other"
    parts = [p for p in (match.group("rest") or "").split("/") if p]
    if not parts:
        return "other"
    if parts[0] in ("profile", "getProfile"):
        return "getProfile"
    if parts[0] in ("watch", "stop"):
        return parts[0]
    collection = parts[0]
    if len(parts) >= 4 and parts[2] == "attachments":
        return "attachments.get"
    if len(parts) == 1:
        return f"{collection}.list" if request.method == "GET" else f"{collection}.{request.method.lower()}"
    if len(parts) == 2:
        return f"{collection}.get" if request.method == "GET" else f"{collection}.{request.method.lower()}"
    return f"{collection}.{parts[-1]}"  # e.g. messages/{id}/modify


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """Wraps the real transport; a span per request (child of the running job's span) and metrics."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: ServiceMetrics, tracer: trace.Tracer) -> None:
        self._inner = inner
        self._metrics = metrics
        self._tracer = tracer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        method = gmail_method(request)
        account_id = current_account_id.get()
        started = time.perf_counter()
        # Only the path: query strings carry page tokens and search terms, not worth a span attribute.
        attributes = {"http.request.method": request.method, "url.path": request.url.path, "gmail.method": method}
        if account_id is not None:
            attributes["mailtide.account_id"] = account_id
        with self._tracer.start_as_current_span(
            f"gmail {method}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                response = await self._inner.handle_async_request(request)
            except Exception as exc:
                self._metrics.record_gmail_request(method, 0, time.perf_counter() - started)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_status(Status(StatusCode.ERROR, f"HTTP {response.status_code}"))
        self._metrics.record_gmail_request(method, response.status_code, time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
