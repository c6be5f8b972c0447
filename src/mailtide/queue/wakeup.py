"""Waking idle workers when work arrives.

Anything with `notify()`, `wait(timeout)` and `close()` can be given to JobQueue. Workers always
poll as well (the poll interval is the fallback), so a missed wake-up only costs latency.

- `LocalWakeUp` sees enqueues made in this process only: SQLite, where every worker of a file is
  usually one process, and other processes are found by polling.
- `PostgresWakeUp` (queue/pg_listen.py) also hears the NOTIFY that every enqueue transaction sends
  on PostgreSQL, from any process on any machine.

`wakeup_for(engine)` picks the right one from the engine's dialect.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine


class WakeUp(Protocol):
    def notify(self) -> None:
        """Work may be available (called after an enqueue in this process)."""

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll interval, not a deadline
        """Return True early when notified, or False after `timeout` seconds."""

    async def close(self) -> None:
        """Release what the wake-up holds (connections, tasks)."""


class LocalWakeUp:
    """An in-process wake-up over an asyncio.Event.

    The flag stays set until a waiter consumes it, so a notification that arrives between a
    worker's empty claim and its wait is not lost.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll interval, not a deadline
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True

    async def close(self) -> None:
        return None


def wakeup_for(engine: AsyncEngine) -> WakeUp:
    """LISTEN/NOTIFY on PostgreSQL, in-process events on SQLite."""
    if engine.dialect.name == "postgresql":
        from mailtide.queue.pg_listen import PostgresWakeUp

        return PostgresWakeUp(engine)
    return LocalWakeUp()
