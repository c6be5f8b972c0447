"""Request counters: requests and response statuses per Gmail method, quota units charged per user
and per method, and quota rejections per method and kind."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any

from mailtide.gmail.quota import DEFAULT_PROFILE, PROFILES, quota_profile

# The shared profile table (gmail/quota.py), as {profile: {method: units}}.
QUOTA_PROFILES: dict[str, dict[str, int]] = {name: dict(profile.costs) for name, profile in PROFILES.items()}
DEFAULT_QUOTA_PROFILE = DEFAULT_PROFILE


def quota_costs(profile: str = DEFAULT_QUOTA_PROFILE) -> dict[str, int]:
    return dict(quota_profile(profile).costs)


class RequestCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self._units: Counter[str] = Counter()
        self._method_units: Counter[str] = Counter()
        self._rejections: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def record_response(self, method: str, status: int) -> None:
        with self._lock:
            self._requests[method] += 1
            self._statuses[method][status] += 1

    def charge(self, email: str, units: int, method: str | None = None) -> None:
        with self._lock:
            self._units[email] += units
            if method:
                self._method_units[method] += units

    def record_rejection(self, method: str, kind: str) -> None:
        """A call refused by a usage limit (kind: user, project or concurrency); it was not charged."""
        with self._lock:
            self._rejections[method][kind] += 1

    def requests(self, method: str) -> int:
        with self._lock:
            return self._requests[method]

    def responses(self, method: str, status: int) -> int:
        with self._lock:
            return self._statuses[method][status]

    def quota_units(self, email: str) -> int:
        with self._lock:
            return self._units[email]

    def method_units(self, method: str) -> int:
        with self._lock:
            return self._method_units[method]

    def rejections(self, method: str | None = None) -> int:
        with self._lock:
            if method is not None:
                return sum(self._rejections[method].values())
            return sum(sum(kinds.values()) for kinds in self._rejections.values())

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
            self._units.clear()
            self._method_units.clear()
            self._rejections.clear()

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: {"methods": {name: {"requests", "responses": {status: n}[, "units"][, "rejected"]}},
        "quotaUnits": {email: units}}."""
        with self._lock:
            methods: dict[str, dict[str, Any]] = {}
            for method, count in sorted(self._requests.items()):
                entry: dict[str, Any] = {
                    "requests": count,
                    "responses": {str(status): n for status, n in sorted(self._statuses[method].items())},
                }
                if self._method_units[method]:
                    entry["units"] = self._method_units[method]
                if self._rejections[method]:
                    entry["rejected"] = dict(sorted(self._rejections[method].items()))
                methods[method] = entry
            return {"methods": methods, "quotaUnits": dict(sorted(self._units.items()))}
