"""Which account the current task works for, so Gmail requests can be attributed to it."""

from __future__ import annotations

from contextvars import ContextVar

current_account_id: ContextVar[int | None] = ContextVar("mailtide_current_account_id", default=None)
