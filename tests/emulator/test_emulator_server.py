"""Starting and stopping the server, serve_forever for the CLI, build_state_from_paths for the demo."""

from __future__ import annotations

import asyncio
import socket
import threading

import httpx
import pytest
from emulator_helpers import DEMO_DATA

from mailtide.emulator import EmulatorServer, EmulatorState, build_state_from_paths, serve_forever


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_start_stop_and_context_manager() -> None:
    state = EmulatorState(seed=1)
    server = EmulatorServer(state)
    with pytest.raises(RuntimeError):
        _ = server.url
    server.start()
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.token_url == server.url + "/token"
        assert httpx.get(server.url + "/_emulator/users").json() == {"users": []}
        with pytest.raises(RuntimeError):
            server.start()
    finally:
        server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/_emulator/users")

    port = free_port()
    with EmulatorServer(state, port=port) as fixed:
        assert fixed.url == f"http://127.0.0.1:{port}"
        assert httpx.get(fixed.url + "/_emulator/users").status_code == 200


def test_port_in_use_is_a_clear_error() -> None:
    with EmulatorServer(EmulatorState()) as running:
        port = int(running.url.rsplit(":", 1)[1])
        with pytest.raises(OSError):
            EmulatorServer(EmulatorState(), port=port).start()


def test_serve_forever_until_cancelled() -> None:
    state = build_state_from_paths([DEMO_DATA / "takeout"], email="cli@example.test", seed=5)
    port = free_port()
    loop = asyncio.new_event_loop()
    task: asyncio.Task[None] | None = None
    started = threading.Event()

    def run() -> None:
        nonlocal task

        async def main() -> None:
            nonlocal task
            task = asyncio.current_task()
            started.set()
            await serve_forever(state, "127.0.0.1", port, log_level="warning")

        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(5)
    token = state.access_token_for("cli@example.test")
    profile = None
    for _ in range(200):
        try:
            profile = httpx.get(
                f"http://127.0.0.1:{port}/gmail/v1/users/me/profile", headers={"Authorization": f"Bearer {token}"}
            ).json()
            break
        except httpx.ConnectError:
            threading.Event().wait(0.02)
    assert profile is not None and profile["messagesTotal"] == 39
    assert task is not None
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)
    assert not thread.is_alive()
    loop.close()


def test_build_state_from_demo_data() -> None:
    state = build_state_from_paths(
        [DEMO_DATA], email="demo@example.test", seed=9, label_ids=["INBOX", "UNREAD"], refresh_token="1//demo"
    )
    mailbox = state.mailbox("demo@example.test")
    assert mailbox.messages_total == 339
    assert state.credentials("demo@example.test").refresh_token == "1//demo"
    again = build_state_from_paths([DEMO_DATA], email="demo@example.test", seed=9, label_ids=["INBOX", "UNREAD"])
    assert again.mailbox("me").history_id == mailbox.history_id  # the seed makes it reproducible
    assert [m.id for m in again.mailbox("me").messages()] == [m.id for m in mailbox.messages()]
