"""The HTTP API: a FastAPI app over a Runtime (health, readiness, metrics, accounts, jobs, mirror)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailtide import __version__
from mailtide.api.auth import ApiTokenMiddleware
from mailtide.api.context import ApiContext
from mailtide.api.errors import install_error_handlers
from mailtide.api.routes import accounts, health, jobs, messages, metrics
from mailtide.config import Settings
from mailtide.observability.metrics import ServiceMetrics
from mailtide.runtime import Runtime

DESCRIPTION = """\
mailtide keeps a complete, queryable local mirror of Gmail mailboxes.

When the server listens on a non-loopback address every endpoint but `/healthz` needs
`Authorization: Bearer <api_token>`. Errors are JSON: `{"error": {"status", "code", "message", "details"?}}`.
"""


class RequestMetricsMiddleware:
    """Counts API requests by route template (not raw path: ids would explode the label set) and status."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def remember(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, remember)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http_requests.labels(route, str(status)).inc()


def create_api(
    runtime: Runtime,
    settings: Settings | None = None,
    *,
    worker_running: Callable[[], bool] | None = None,
    extra_routers: Iterable[APIRouter] = (),
    public_paths: Iterable[str] = (),
) -> FastAPI:
    """The API app.

    worker_running: a probe for /readyz (None: no worker in this process, so not ready).
    extra_routers: more routes (e.g. the Pub/Sub push endpoint); they get the API token check
      unless their paths are listed in `public_paths` (exact paths, or prefixes ending in "/").
    """
    settings = settings or runtime.settings
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    # Documents the bearer scheme in the OpenAPI schema; ApiTokenMiddleware does the checking.
    security = [Depends(HTTPBearer(auto_error=False, description="The api_token setting"))] if token else []
    app = FastAPI(title="mailtide", version=__version__, description=DESCRIPTION)
    app.state.mailtide = ApiContext(runtime, settings, worker_running)
    install_error_handlers(app)
    app.include_router(health.router)
    for router in (metrics.router, accounts.router, jobs.router, messages.router):
        app.include_router(router, dependencies=security)
    for router in extra_routers:
        app.include_router(router)
    if token is not None:
        app.add_middleware(ApiTokenMiddleware, token=token, public_paths=tuple(public_paths))
    app.add_middleware(RequestMetricsMiddleware, metrics=runtime.telemetry.metrics)
    return app
