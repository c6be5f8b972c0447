"""Bearer API token: required on every path but /healthz (and paths with their own authentication)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

ALWAYS_PUBLIC = ("/healthz",)


class ApiTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str, public_paths: Iterable[str] = ()) -> None:
        self.app = app
        self._token = token.encode()
        # Exact paths, or prefixes ending in "/" (e.g. "/pubsub/" for a push endpoint with its own OIDC check).
        self._public = (*ALWAYS_PUBLIC, *public_paths)

    def _is_public(self, path: str) -> bool:
        return any(path == p or (p.endswith("/") and path.startswith(p)) for p in self._public)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, presented = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(presented.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_public(scope["path"]) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": {"status": 401, "code": "unauthorized",
                       "message": "this endpoint needs the API token: Authorization: Bearer <api_token>"}}
        ).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="mailtide"'),
            ],
        })
        await send({"type": "http.response.body", "body": body})
