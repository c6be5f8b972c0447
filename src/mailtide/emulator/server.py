"""Running the emulator: in a background thread (tests, demo) or in the foreground (the CLI)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import uvicorn

from mailtide.emulator.app import create_app
from mailtide.emulator.fault_middleware import silence_injected_resets
from mailtide.emulator.loader import CollectedMessages, collect_path, load_collected
from mailtide.emulator.state import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EmulatorState

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
DEFAULT_EMAIL = "demo@mailtide.test"


def _config(state: EmulatorState, *, log_level: str, access_log: bool) -> uvicorn.Config:
    silence_injected_resets()
    return uvicorn.Config(
        create_app(state),
        log_level=log_level,
        access_log=access_log,
        lifespan="off",
        loop="asyncio",
        timeout_graceful_shutdown=2,
    )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only when it does, and
    # without it every response (headers and body are written separately) stalls ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class EmulatorServer:
    """The emulator on a real socket, served by uvicorn in a background thread with its own loop.

    with EmulatorServer(state) as server:
        httpx.get(server.url + "/gmail/v1/users/me/profile", headers=...)
    """

    def __init__(
        self,
        state: EmulatorState,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        log_level: str = "warning",
        access_log: bool = False,
    ) -> None:
        self.state = state
        self.host = host
        self.port = port
        self._log_level = log_level
        self._access_log = access_log
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (known once started)."""
        if self._url is None:
            raise RuntimeError("the emulator server is not started")
        return self._url

    @property
    def token_url(self) -> str:
        return self.url + "/token"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Bind, start serving, and return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the emulator server is already started")
        sock = _bind(self.host, self.port)
        server = uvicorn.Server(_config(self.state, log_level=self._log_level, access_log=self._access_log))
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="mailtide-emulator", daemon=True
        )
        self._socket, self._server, self._thread = sock, server, thread
        self._url = _url(sock)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.005)
        logger.info("emulator.server.started", extra={"url": self._url})
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("emulator.server.stop_timeout", extra={"url": self._url})
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def serve_forever(
    state: EmulatorState,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve in the running event loop until cancelled or interrupted (the `mailtide emulator` command)."""
    sock = _bind(host, port)
    server = uvicorn.Server(_config(state, log_level=log_level, access_log=access_log))
    logger.info("emulator.server.listening", extra={"url": _url(sock)})
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()


def build_state_from_paths(
    paths: Iterable[str | Path],
    *,
    email: str = DEFAULT_EMAIL,
    seed: int | None = None,
    label_ids: Sequence[str] | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    refresh_token: str | None = None,
) -> EmulatorState:
    """A state with one user whose mailbox holds every message found under `paths`.

    All paths load as one batch, so threads span files and the history starts after the load.
    """
    state = EmulatorState(seed=seed)
    mailbox = state.add_user(email, client_id=client_id, client_secret=client_secret, refresh_token=refresh_token)
    if label_ids is not None:
        mailbox.check_label_ids(label_ids)  # fail once, not once per message
    collected = CollectedMessages()
    for path in paths:
        collected.extend(collect_path(path, label_ids=label_ids))
    for skipped_path, reason in collected.skipped:
        logger.warning("emulator.load.skipped", extra={"path": skipped_path, "reason": reason})
    for doubtful_path, reason in collected.doubtful:
        logger.warning("emulator.load.not_mail", extra={"path": doubtful_path, "reason": reason})
    load_collected(mailbox, collected)
    return state
