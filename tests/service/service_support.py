"""Service test support: `mailtide` run as a real subprocess against the emulator (or a slow Gmail
stand-in) over loopback HTTP, and the OAuth consent followed by the test instead of a browser."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState, Mailbox

EMAIL = "erin@mailtide.test"
CLIENT_ID, CLIENT_SECRET = "service-client", "service-secret"
API_TOKEN = "service-test-token-0123456789"
DEMO_DATA = Path(__file__).parents[2] / "src" / "mailtide" / "demo_data"
MAILTIDE = [sys.executable, "-m", "mailtide"]
CONSENT_URL = re.compile(r"^(http://\S+/o/oauth2/auth\?\S+)$", re.MULTILINE)


@dataclass
class Emulator:
    state: EmulatorState
    mailbox: Mailbox
    server: EmulatorServer

    def message_ids(self) -> set[str]:
        return {row["id"] for row in self.mailbox.snapshot()["messages"]}


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The Google Takeout sample (39 real messages with labels and threads)."""
    state = EmulatorState(seed=3)
    mailbox = state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    mailbox.load_path(DEMO_DATA / "takeout" / "takeout.mbox")
    with EmulatorServer(state) as server:
        yield Emulator(state, mailbox, server)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cli:
    """Runs `mailtide` in a subprocess with a clean MAILTIDE_* environment."""

    env: dict[str, str]
    cwd: Path

    @classmethod
    def for_gmail(cls, tmp_path: Path, gmail_url: str, **extra: str) -> Cli:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILTIDE_", "OAUTHLIB_"))}
        env.update(
            MAILTIDE_DATABASE_URL=f"sqlite:///{tmp_path / 'mirror.db'}",
            MAILTIDE_DATA_DIR=str(tmp_path / "data"),
            MAILTIDE_GMAIL_API_URL=gmail_url,
            MAILTIDE_TOKEN_URL=f"{gmail_url}/token",
            MAILTIDE_OAUTH_AUTH_URL=f"{gmail_url}/o/oauth2/auth",
            MAILTIDE_OAUTH_CLIENT_ID=CLIENT_ID,
            MAILTIDE_OAUTH_CLIENT_SECRET=CLIENT_SECRET,
            MAILTIDE_POLL_SECONDS="0.1",
            MAILTIDE_HEARTBEAT_SECONDS="1",
            COLUMNS="200",  # rich tables: no wrapping inside emails and messages
        )
        env.update(extra)
        return cls(env, tmp_path)

    @property
    def database_url(self) -> str:
        return self.env["MAILTIDE_DATABASE_URL"]

    def run(self, *args: str, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MAILTIDE, *args], env=self.env, cwd=self.cwd, input=input, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([*MAILTIDE, *args], env=self.env, cwd=self.cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)


@dataclass
class LineReader:
    """Collects a subprocess's stdout lines in a thread, so a test can wait for one with a timeout."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            match = pattern.search(line)
            if match:
                return match
        stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no line matching {pattern.pattern!r}; stdout={self.seen!r} stderr={stderr!r}")

    def rest(self, timeout: float = 60) -> tuple[str, str]:
        """Wait for exit; the remaining stdout and all of stderr."""
        self.proc.wait(timeout=timeout)
        time.sleep(0.05)
        out = "".join(self.seen)
        while not self.lines.empty():
            out += self.lines.get()
        err = self.proc.stderr.read() if self.proc.stderr else ""
        return out, err


def consent(url: str) -> httpx.Response:
    """What the user's browser does: open the consent page, follow the redirect to mailtide's loopback server."""
    return httpx.get(url, follow_redirects=True, timeout=30)


def add_account_via_consent(cli: Cli, *args: str) -> tuple[str, str, str]:
    """`mailtide accounts add`, with the test as the browser; returns (consent URL, stdout, stderr)."""
    proc = cli.start("accounts", "add", "--no-browser", *args)
    reader = LineReader(proc)
    url = reader.wait_for(CONSENT_URL).group(1)
    page = consent(url)
    assert page.status_code == 200 and "mailtide has access now" in page.text
    out, err = reader.rest()
    assert proc.returncode == 0, (out, err)
    return url, out, err


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> float:
    """Send `sig`; seconds until the process exited."""
    started = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    return time.monotonic() - started


def wait_until_ready(base_url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base_url} not ready after {timeout}s")


class SlowGmail:
    """A Gmail stand-in whose token endpoint and labels.list answer after `delay` seconds:
    mailtide's jobs are then in flight for as long as the test wants."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.requests = 0
        app = Starlette(routes=[
            Route("/token", self._token, methods=["POST"]),
            Route("/gmail/v1/users/{user}/labels", self._labels, methods=["GET"]),
        ])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._server.serve(sockets=[sock])), daemon=True)

    async def _token(self, _request: Request) -> JSONResponse:
        self.requests += 1
        await asyncio.sleep(self.delay)
        return JSONResponse({"access_token": "ya29.slow", "expires_in": 3600, "token_type": "Bearer"})

    async def _labels(self, _request: Request) -> JSONResponse:
        await asyncio.sleep(self.delay)
        return JSONResponse({"labels": [{"id": "INBOX", "name": "INBOX", "type": "system"}]})

    def __enter__(self) -> SlowGmail:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._server.force_exit = True
        self._thread.join(5)
        self._sock.close()
