"""Fixtures for the Gmail client tests: the emulator over real HTTP, and a scriptable raw HTTP peer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from gmail_testkit import CLIENT_ID, CLIENT_SECRET, EMAIL, REFRESH_TOKEN, TOKEN_OK, RawPeer

from mailtide.emulator.server import EmulatorServer
from mailtide.emulator.state import EmulatorState


@pytest.fixture
def state() -> EmulatorState:
    emulator_state = EmulatorState(seed=7)
    emulator_state.add_user(EMAIL, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN)
    return emulator_state


@pytest.fixture
def emulator(state: EmulatorState) -> Iterator[EmulatorServer]:
    with EmulatorServer(state) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
async def raw_peer() -> AsyncIterator[Callable[..., object]]:
    """Start RawPeer servers: `await raw_peer(respond, token=..., delay=...)`; all stop at teardown."""
    peers: list[RawPeer] = []

    async def start(respond: Callable[[str, str], bytes | None], *, token: bytes = TOKEN_OK, delay: float = 0.0):
        def route(method: str, target: str) -> bytes | None:
            return token if target == "/token" else respond(method, target)

        peer = await RawPeer(route, delay=delay).start()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        await peer.stop()
