"""A private emulator per test (its own quota and faults, so the session-wide one stays untouched)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from emulator_helpers import make_message

from mailtide.emulator import EmulatorServer, EmulatorState, Mailbox
from mailtide.gmail.quota import QuotaProfile


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Private:
    state: EmulatorState
    server: EmulatorServer
    mailbox: Mailbox
    email: str
    token: str
    admin: httpx.Client  # server root, no auth
    api: httpx.Client  # /gmail/v1/users/me, authorised

    def fill(self, count: int) -> list[str]:
        return [self.mailbox.add_message(make_message(f"message {n}", message_id=f"m{n}@x")) for n in range(count)]

    def user(self, email: str) -> httpx.Client:
        """Another authorised user of the same emulator (same project)."""
        self.state.add_user(email)
        token = self.state.access_token_for(email)
        return httpx.Client(
            base_url=f"{self.server.url}/gmail/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


@contextmanager
def private_emulator(profile: QuotaProfile | str = "gmail-2026", **options: object) -> Iterator[Private]:
    state = EmulatorState(seed=5, quota_profile=profile, **options)  # type: ignore[arg-type]
    email = "quota@example.test"
    mailbox = state.add_user(email)
    token = state.access_token_for(email)
    with (
        EmulatorServer(state) as server,
        httpx.Client(base_url=server.url, timeout=10) as admin,
        httpx.Client(
            base_url=f"{server.url}/gmail/v1/users/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as api,
    ):
        yield Private(state, server, mailbox, email, token, admin, api)
