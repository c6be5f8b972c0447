"""The emulator's ASGI app: Gmail methods, the OAuth token endpoint and the /_emulator admin API."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailtide.emulator import admin, admin_limits, gmail_api, oauth
from mailtide.emulator import batch as gmail_batch
from mailtide.emulator.api_errors import GmailApiError, backend_error, invalid_argument, not_found
from mailtide.emulator.counters import RequestCounters
from mailtide.emulator.fault_middleware import FaultMiddleware
from mailtide.emulator.pubsub import http_api as pubsub_api
from mailtide.emulator.state import EmulatorState

logger = logging.getLogger(__name__)


class CountingMiddleware:
    """Counts requests and response statuses per Gmail method (the route's name)."""

    def __init__(self, app: ASGIApp, counters: RequestCounters) -> None:
        self.app = app
        self.counters = counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counted = False

        def count(status: int) -> None:
            nonlocal counted
            if counted:
                return
            counted = True
            name = getattr(scope.get("route"), "name", None) or "unmatched"
            if not name.startswith("_emulator."):
                self.counters.record_response(name, status)

        async def remember_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                count(message["status"])  # before the answer leaves, so a client never reads stale counters
            await send(message)

        try:
            await self.app(scope, receive, remember_status)
        finally:
            count(500)


def create_app(state: EmulatorState) -> FastAPI:
    app = FastAPI(title="mailtide Gmail emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state
    app.state.oauth_codes = oauth.AuthorizationCodes()
    app.include_router(gmail_api.router)
    app.include_router(gmail_batch.router)
    app.include_router(oauth.router)
    app.include_router(admin.router)
    app.include_router(admin_limits.router)
    app.include_router(pubsub_api.router)
    app.add_middleware(CountingMiddleware, counters=state.counters)
    app.add_middleware(FaultMiddleware)

    @app.exception_handler(GmailApiError)
    async def gmail_error(_request: Request, exc: GmailApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}"
            for err in exc.errors()
        )
        return invalid_argument(f"Invalid request: {problems}").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return not_found(f"Not found: no such method or path ({exc.detail})").response()
        return GmailApiError(exc.status_code, "invalid", str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("emulator.request.failed", extra={"path": request.url.path})
        return backend_error().response()

    return app
