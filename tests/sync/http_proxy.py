"""A real HTTP peer between mailtide and the emulator: a reverse proxy on loopback that forwards
every request and lets a test rewrite requests and history.list answers, to reproduce answers
Gmail gives that the emulator does not (a page without a `history` key, duplicated records).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HISTORY_PATH_SUFFIX = "/history"
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


@dataclass
class HistoryCall:
    """One history.list request as the proxy saw it."""

    params: dict[str, str]
    answer: dict[str, Any] = field(default_factory=dict)


# (query params, upstream answer or None when the proxy answers alone) -> answer to send
HistoryRewrite = Callable[[dict[str, str], dict[str, Any] | None], dict[str, Any] | None]
# query params -> params to send upstream, or None to answer without asking upstream
ParamsRewrite = Callable[[dict[str, str]], dict[str, str] | None]


class RewritingProxy:
    def __init__(
        self,
        upstream: str,
        *,
        history_params: ParamsRewrite | None = None,
        history_answer: HistoryRewrite | None = None,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.history_params = history_params
        self.history_answer = history_answer
        self.history_calls: list[HistoryCall] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._client: httpx.AsyncClient | None = None  # created in the proxy's own event loop
        self.url = ""

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self.upstream)
        return self._client

    async def _forward(self, request: Request) -> Response:
        params = dict(request.query_params)
        is_history = request.method == "GET" and request.url.path.endswith(HISTORY_PATH_SUFFIX)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        if is_history:
            sent = self.history_params(params) if self.history_params else params
            answer: dict[str, Any] | None = None
            if sent is not None:
                upstream = await self.client.get(request.url.path, params=sent, headers=headers)
                if upstream.status_code != 200:
                    return Response(upstream.content, upstream.status_code, media_type="application/json")
                answer = upstream.json()
            if self.history_answer is not None:
                answer = self.history_answer(params, answer)
            assert answer is not None, "a history rewrite must answer requests it did not forward"
            self.history_calls.append(HistoryCall(params, answer))
            return JSONResponse(answer)
        upstream = await self.client.request(
            request.method,
            request.url.path,
            params=list(request.query_params.multi_items()),
            headers=headers,
            content=await request.body(),
        )
        return Response(
            upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type")
        )

    def __enter__(self) -> RewritingProxy:
        app = Starlette(routes=[Route("/{path:path}", self._forward, methods=["GET", "POST", "DELETE", "PUT"])])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "proxy did not start"
            time.sleep(0.005)
        self._server, self._thread, self._socket = server, thread, sock
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()


def small_pages(size: int) -> ParamsRewrite:
    """Ask the emulator for `size` records per history page, whatever the client asked."""

    def rewrite(params: dict[str, str]) -> dict[str, str]:
        return {**params, "maxResults": str(size)}

    return rewrite
