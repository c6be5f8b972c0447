"""Helpers for the Gmail client tests: client/token factories, a fake clock, and RawPeer, a scriptable
raw HTTP/1.1 server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from mailtide.gmail import GmailClient, OAuthTokenSource

EMAIL = "alice@mailtide.test"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
REFRESH_TOKEN = "1//test-refresh-token"


def token_source(http: httpx.AsyncClient, base_url: str, **overrides: object) -> OAuthTokenSource:
    options: dict[str, object] = {
        "token_url": base_url + "/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        **overrides,
    }
    return OAuthTokenSource(http, **options)  # type: ignore[arg-type]


def gmail_client(http: httpx.AsyncClient, base_url: str, tokens: OAuthTokenSource | None = None, **options: object):
    tokens = tokens or token_source(http, base_url)
    options.setdefault("retry_base_delay", 0.01)
    return GmailClient(http, tokens, api_url=base_url, **options)  # type: ignore[arg-type]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------- raw HTTP peer
def http_response(status: int, body: bytes | str, *, content_type: str = "application/json", **headers: str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Type: {content_type}", f"Content-Length: {len(data)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


TOKEN_OK = http_response(200, '{"access_token": "ya29.peer", "expires_in": 3600, "token_type": "Bearer"}')


@dataclass
class RawPeer:
    """A tiny HTTP/1.1 server on loopback: `respond(method, target)` returns the raw bytes to send
    (None: say nothing and hold the connection). POST /token answers TOKEN_OK unless overridden."""

    respond: Callable[[str, str], bytes | None]
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0
    _server: asyncio.AbstractServer | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            length = 0
            for line in head.decode().split("\r\n")[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            if length:
                await reader.readexactly(length)
            self.requests.append((method, target))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.delay:
                    await asyncio.sleep(self.delay)
                answer = self.respond(method, target)
            finally:
                self.in_flight -= 1
            if answer is None:
                await asyncio.sleep(30)
                return
            writer.write(answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def start(self) -> RawPeer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def api_requests(self) -> list[tuple[str, str]]:
        return [request for request in self.requests if request[1] != "/token"]
