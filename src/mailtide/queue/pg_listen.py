"""PostgreSQL LISTEN/NOTIFY wake-ups.

Every transaction that makes work available sends a notification (`NOTIFY_EXPRESSION`: the
enqueue INSERTs return it as an extra column, so it costs no round trip of its own; other changes
run `NOTIFY_NEW_WORK`). PostgreSQL delivers it at commit, once per transaction, to every listening
session, so a worker on another machine starts a new job within a
round trip instead of at its next poll. The channel is named after the schema (current_schema()
on both sides), so several mailtide installations in one database, or parallel test schemas, do not
wake each other.

`PostgresWakeUp` listens on a connection of its own, taken from the engine's pool (same URL and
connect arguments) and never returned to it. A supervisor task re-connects and re-issues LISTEN
whenever that connection drops (server restart, pg_terminate_backend, network failure found by a
periodic health check); while it is down, workers simply keep polling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)

# Channel names are identifiers: at most 63 bytes. A clipped name can only cause spurious wake-ups.
CHANNEL_EXPRESSION = "left('mailtide_jobs_' || coalesce(current_schema(), ''), 63)"
CHANNEL_QUERY = f"SELECT {CHANNEL_EXPRESSION}"
# Identical notifications of one transaction are folded into one, so per-row use is cheap.
NOTIFY_EXPRESSION = f"pg_notify({CHANNEL_EXPRESSION}, '')"
NOTIFY_NEW_WORK = sa.text(f"SELECT {NOTIFY_EXPRESSION}")

RECONNECT_FIRST_DELAY_SECONDS = 0.05
RECONNECT_MAX_DELAY_SECONDS = 5.0
HEALTH_CHECK_SECONDS = 30.0
HEALTH_CHECK_TIMEOUT_SECONDS = 10.0


class PostgresWakeUp:
    """Wakes waiters on NOTIFY from any process, or on `notify()` from this one.

    The listening connection is opened lazily by the first `wait()`, so processes that only
    enqueue (the CLI, the API) never hold one.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        health_check_seconds: float = HEALTH_CHECK_SECONDS,
        reconnect_max_delay_seconds: float = RECONNECT_MAX_DELAY_SECONDS,
    ) -> None:
        self._engine = engine
        self._health_check_seconds = health_check_seconds
        self._reconnect_max_delay = reconnect_max_delay_seconds
        self._event = asyncio.Event()
        self._listening = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self.channel: str | None = None
        self.backend_pid: int | None = None  # of the listening session, for operators and tests
        self.sessions = 0  # how many times LISTEN was issued (1 + reconnects)

    # ------------------------------------------------------------------ the WakeUp protocol

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll interval, not a deadline
        self.start()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    async def close(self) -> None:
        self._closed = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)

    # ------------------------------------------------------------------ listening

    def start(self) -> None:
        """Start listening in the background (idempotent; restarts a supervisor that died)."""
        if self._closed:
            raise RuntimeError("PostgresWakeUp is closed")
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise(), name="mailtide-pg-listen")

    async def wait_until_listening(self, timeout: float) -> None:  # noqa: ASYNC109
        """Start, then wait until LISTEN is in effect (raises TimeoutError)."""
        self.start()
        await asyncio.wait_for(self._listening.wait(), timeout)

    async def _supervise(self) -> None:
        delay = RECONNECT_FIRST_DELAY_SECONDS
        while True:
            sessions_before = self.sessions
            try:
                async with self._engine.connect() as conn:
                    try:
                        await self._listen_until_lost(conn)
                    finally:
                        # Never hand a LISTENing (or broken) session back to the pool.
                        await asyncio.shield(conn.invalidate())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("queue.listen_failed channel=%s error=%s: %s", self.channel, type(exc).__name__, exc)
            finally:
                self._listening.clear()
                self.backend_pid = None
            if self.sessions > sessions_before:
                delay = RECONNECT_FIRST_DELAY_SECONDS
            # Whatever was announced while we were deaf: let waiters claim once.
            self._event.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_delay)

    async def _listen_until_lost(self, conn: AsyncConnection) -> None:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # the asyncpg.Connection
        lost = asyncio.Event()
        driver.add_termination_listener(lambda _connection: lost.set())
        self.channel = await driver.fetchval(CHANNEL_QUERY)
        await driver.add_listener(self.channel, self._on_notification)
        self.backend_pid = driver.get_server_pid()
        self.sessions += 1
        self._listening.set()
        # Jobs enqueued before LISTEN took effect sent their NOTIFY to nobody: look once now.
        self._event.set()
        logger.info("queue.listening channel=%s backend_pid=%s session=%d",
                    self.channel, self.backend_pid, self.sessions)
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), self._health_check_seconds)
            except TimeoutError:
                # A silent network failure closes nothing: ask the server, or give up on the session.
                await asyncio.wait_for(driver.fetchval("SELECT 1"), HEALTH_CHECK_TIMEOUT_SECONDS)
        logger.warning("queue.listen_connection_lost channel=%s backend_pid=%s", self.channel, self.backend_pid)

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._event.set()
