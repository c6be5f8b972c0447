"""Gmail's usage limits, enforced: a rolling per-user quota, a per-project quota, and a per-user cap on
requests in flight. Over a limit the caller gets the error Gmail gives (api_errors) and is not charged.

"Rolling" means the units spent decay continuously: a user may spend a whole minute's allowance at
once, then regains it at allowance/minute (the shape of gmail/quota.py, shared with the client).
Thread-safe: the Gmail routes run in a thread pool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from mailtide.gmail.quota import QuotaProfile, quota_profile

logger = logging.getLogger(__name__)

RejectionStyle = Literal["429", "403"]
RejectionKind = Literal["user", "project", "concurrency"]


class QuotaRejection(Exception):
    """A limit said no. retry_after: seconds until the units would be there (None for concurrency)."""

    def __init__(self, kind: RejectionKind, method: str, retry_after: float | None) -> None:
        super().__init__(f"{kind} limit: {method}")
        self.kind = kind
        self.method = method
        self.retry_after = retry_after


class _RollingUsage:
    """Units spent, decaying at `rate` per second; never above what was admitted."""

    def __init__(self, now: float) -> None:
        self.used = 0.0
        self.stamp = now

    def current(self, rate: float, now: float) -> float:
        self.used = max(0.0, self.used - (now - self.stamp) * rate)
        self.stamp = now
        return self.used


class QuotaEnforcer:
    def __init__(
        self,
        profile: QuotaProfile | None = None,
        *,
        rejection_style: RejectionStyle = "429",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.profile = profile or quota_profile()
        self.rejection_style: RejectionStyle = rejection_style
        self._users: dict[str, _RollingUsage] = {}
        self._project = _RollingUsage(clock())
        self._in_flight: dict[str, int] = {}

    def configure(self, profile: QuotaProfile, *, rejection_style: RejectionStyle | None = None) -> None:
        """Switch profile (usage so far is kept, measured against the new limits)."""
        with self._lock:
            self.profile = profile
            if rejection_style is not None:
                self.rejection_style = rejection_style
        logger.info("emulator.quota.configured profile=%s style=%s", profile.describe(), self.rejection_style)

    def admit(self, email: str, method: str, *, prepaid: bool = False) -> int:
        """Charge `method` to `email` (unless `prepaid`) and count it in flight; returns the units charged.
        Raises QuotaRejection (nothing charged, nothing in flight) when a limit says no."""
        key = email.lower()
        with self._lock:
            cap = self.profile.max_concurrent_per_user
            if cap is not None and self._in_flight.get(key, 0) >= cap:
                raise QuotaRejection("concurrency", method, None)
            cost = 0 if prepaid else self._charge(key, method)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            return cost

    def charge(self, email: str, method: str) -> int:
        """Charge without entering (a batch's calls, paid for when the batch arrives); QuotaRejection if over."""
        with self._lock:
            return self._charge(email.lower(), method)

    def _charge(self, key: str, method: str) -> int:
        """Under the lock: the units, if the user's and the project's allowances have room for them."""
        profile = self.profile
        cost = profile.cost(method)
        now = self._clock()
        user = self._users.setdefault(key, _RollingUsage(now))
        user_rate = profile.user_units_per_second
        if profile.user_units_per_minute is not None and user_rate is not None:
            wait = self._wait(user, profile.user_units_per_minute, user_rate, cost, now)
            if wait > 0:
                raise QuotaRejection("user", method, wait)
        project_rate = profile.project_units_per_second
        if profile.project_units_per_minute is not None and project_rate is not None:
            wait = self._wait(self._project, profile.project_units_per_minute, project_rate, cost, now)
            if wait > 0:
                raise QuotaRejection("project", method, wait)
        user.used += cost
        self._project.used += cost
        return cost

    def release(self, email: str) -> None:
        key = email.lower()
        with self._lock:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)

    def in_flight(self, email: str) -> int:
        with self._lock:
            return self._in_flight.get(email.lower(), 0)

    def usage(self, email: str) -> float:
        """Units the user has spent that still count against the rolling allowance."""
        with self._lock:
            user = self._users.get(email.lower())
            rate = self.profile.user_units_per_second
            if user is None:
                return 0.0
            return user.current(rate or 0.0, self._clock()) if rate else user.used

    def reset(self) -> None:
        """Forget usage (not what is in flight): every user starts with a full allowance."""
        with self._lock:
            self._users.clear()
            self._project = _RollingUsage(self._clock())

    @staticmethod
    def _wait(usage: _RollingUsage, allowance: int, rate: float, cost: int, now: float) -> float:
        """Seconds until `cost` more units fit under `allowance`; 0 when they fit now. A call dearer than
        the whole allowance fits once nothing else is counted (it could never succeed otherwise)."""
        used = usage.current(rate, now)
        over = used + min(cost, allowance) - allowance
        return 0.0 if over <= 1e-6 else over / rate  # a rounding crumb is not "over"
