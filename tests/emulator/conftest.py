"""Fixtures: one emulator server on loopback for the session, a fresh user (mailbox) per test.

Tests are isolated by user: each gets its own email address, mailbox and access token. Tests that
change state-wide settings (clock, token lifetime, counters) restore them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from emulator_helpers import User, new_user

from mailtide.emulator import EmulatorServer, EmulatorState


@pytest.fixture(scope="session")
def state() -> EmulatorState:
    return EmulatorState(seed=20240501)


@pytest.fixture(scope="session")
def server(state: EmulatorState) -> Iterator[EmulatorServer]:
    with EmulatorServer(state) as running:
        yield running


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    """Unauthenticated client at the server root (token endpoint, admin API)."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def user(state: EmulatorState, server: EmulatorServer) -> Iterator[User]:
    made = new_user(state, server)
    yield made
    made.api.close()


@pytest.fixture
def fixed_clock(state: EmulatorState) -> Iterator[EmulatorState]:
    """The state with its clock fixed at 2002-10-01 12:00 UTC (the corpus era); restored after."""
    state.set_now(datetime(2002, 10, 1, 12, 0, tzinfo=UTC))
    yield state
    state.set_now(None)
