"""The polling fallback's choice of accounts: the safety net under Pub/Sub.

Notifications can be delayed or dropped (and there are none without Pub/Sub), so an account that
nothing was heard from for `history_poll_seconds` (no notification and no history sync) gets a
history sync anyway: a lost notification costs latency, never mail. The periodic
`history.poll.gmail` job (sync/schedules.py) runs this check every `realtime_check_seconds`.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from mailtide.db.schema import STATUS_NORMAL, accounts
from mailtide.sync.services import SyncServices


async def quiet_accounts(services: SyncServices, *, now: float | None = None) -> list[int]:
    """Accounts in normal sync whose last notification and last history sync are both older than
    `history_poll_seconds` (accounts with a healthy Pub/Sub channel are left alone)."""
    now = time.time() if now is None else now
    cutoff = now - services.settings.history_poll_seconds
    query = (
        sa.select(accounts.c.id, accounts.c.last_notification_at, accounts.c.last_sync_at)
        .where(accounts.c.status == STATUS_NORMAL, accounts.c.history_id.is_not(None))
        .order_by(accounts.c.id)
    )
    async with services.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        row.id
        for row in rows
        if max(row.last_notification_at or 0.0, row.last_sync_at or 0.0) < cutoff
    ]
