"""Gmail quota profiles: what each method costs and how many units a user and a project may spend.

One table, read by both sides: the client's limiter paces itself by it and the emulator enforces it,
so "passes against the emulator" means "rides Gmail's real limits". Sources: GMAIL_FACTS.md (the
May 2026 quota update for new Cloud projects; the older table for projects created before).

`minute_seconds` is the length of the quota "minute": 60 for Gmail; tests and benchmarks shorten it
(`time_scale`) so a run that would take minutes against Gmail takes seconds, at the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

DEFAULT_PROFILE = "gmail-2026"
MAX_BATCH_CALLS = 100  # Gmail's documented hard limit of calls in one batch request
RECOMMENDED_BATCH_CALLS = 50  # Gmail rejects more than this with "Inner request count exceeds the limit"
UNKNOWN_METHOD_COST = 1

# Units per call under the 2026 table. threads.get/threads.list keep the older documented 10 (the
# 2026 figure is unverified); attachments.get follows messages.get.
_COSTS_2026: dict[str, int] = {
    "getProfile": 1,
    "labels.list": 1,
    "labels.get": 1,
    "messages.list": 5,
    "messages.get": 20,
    "messages.attachments.get": 20,
    "history.list": 2,
    "threads.list": 10,
    "threads.get": 10,
    "watch": 100,
    "stop": 50,
}
_COSTS_LEGACY: dict[str, int] = {**_COSTS_2026, "messages.get": 5, "messages.attachments.get": 5}


@dataclass(frozen=True)
class QuotaProfile:
    """Limits are None when there is no limit. Units are per `minute_seconds` (60 s unless scaled)."""

    name: str
    costs: Mapping[str, int] = field(default_factory=dict)
    user_units_per_minute: int | None = None
    project_units_per_minute: int | None = None
    max_concurrent_per_user: int | None = None
    max_batch_calls: int = RECOMMENDED_BATCH_CALLS
    minute_seconds: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "costs", MappingProxyType(dict(self.costs)))
        for name in ("user_units_per_minute", "project_units_per_minute", "max_concurrent_per_user"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None for no limit), not {value}")
        if any(cost < 0 for cost in self.costs.values()):
            raise ValueError("method costs must be >= 0")
        if not 1 <= self.max_batch_calls <= MAX_BATCH_CALLS:
            raise ValueError(f"max_batch_calls must be between 1 and {MAX_BATCH_CALLS}")
        if self.minute_seconds <= 0:
            raise ValueError("minute_seconds must be > 0")

    def cost(self, method: str) -> int:
        return self.costs.get(method, UNKNOWN_METHOD_COST)

    @property
    def limited(self) -> bool:
        return self.user_units_per_minute is not None or self.project_units_per_minute is not None

    @property
    def user_units_per_second(self) -> float | None:
        return None if self.user_units_per_minute is None else self.user_units_per_minute / self.minute_seconds

    @property
    def project_units_per_second(self) -> float | None:
        if self.project_units_per_minute is None:
            return None
        return self.project_units_per_minute / self.minute_seconds

    def time_scaled(self, scale: float) -> QuotaProfile:
        """The same limits, with a quota minute lasting 60/scale seconds (scale > 1 runs faster)."""
        if scale <= 0:
            raise ValueError("the quota time scale must be > 0")
        return replace(self, minute_seconds=self.minute_seconds / scale)

    def describe(self) -> str:
        user = "unlimited" if self.user_units_per_minute is None else f"{self.user_units_per_minute:,} units/user"
        minute = "min" if self.minute_seconds == 60 else f"{self.minute_seconds:g} s"
        return f"{self.name} ({user} per {minute}, messages.get {self.cost('messages.get')})"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "costs": dict(sorted(self.costs.items())),
            "userUnitsPerMinute": self.user_units_per_minute,
            "projectUnitsPerMinute": self.project_units_per_minute,
            "maxConcurrentPerUser": self.max_concurrent_per_user,
            "maxBatchCalls": self.max_batch_calls,
            "minuteSeconds": self.minute_seconds,
        }


PROFILES: Mapping[str, QuotaProfile] = MappingProxyType(
    {
        "gmail-2026": QuotaProfile(
            "gmail-2026",
            _COSTS_2026,
            user_units_per_minute=6_000,
            project_units_per_minute=1_200_000,
            max_concurrent_per_user=10,  # folklore (GMAIL_FACTS: ~10, unverified)
        ),
        "gmail-legacy": QuotaProfile(
            "gmail-legacy",
            _COSTS_LEGACY,
            user_units_per_minute=15_000,
            project_units_per_minute=1_200_000,
            max_concurrent_per_user=10,
        ),
        # Units are still counted (at 2026 prices) but nothing is limited; batches up to Gmail's hard 100.
        "unlimited": QuotaProfile("unlimited", _COSTS_2026, max_batch_calls=MAX_BATCH_CALLS),
    }
)
_ALIASES = {"2026": "gmail-2026", "legacy": "gmail-legacy"}


def profile_names() -> list[str]:
    return sorted(PROFILES)


def quota_profile(
    name: str = DEFAULT_PROFILE,
    *,
    user_units_per_minute: int | None = None,
    project_units_per_minute: int | None = None,
    max_concurrent_per_user: int | None = None,
    costs: Mapping[str, int] | None = None,
    time_scale: float = 1.0,
) -> QuotaProfile:
    """A named profile with optional custom numbers on top (the custom numbers are limits, not Nones)."""
    key = _ALIASES.get(name, name)
    try:
        base = PROFILES[key]
    except KeyError:
        raise ValueError(f"unknown quota profile {name!r}; known: {', '.join(profile_names())}") from None
    changes: dict[str, object] = {}
    if user_units_per_minute is not None:
        changes["user_units_per_minute"] = user_units_per_minute
    if project_units_per_minute is not None:
        changes["project_units_per_minute"] = project_units_per_minute
    if max_concurrent_per_user is not None:
        changes["max_concurrent_per_user"] = max_concurrent_per_user
    if costs:
        changes["costs"] = {**base.costs, **costs}
    if changes:
        base = replace(base, name=f"{key} (custom)", **changes)  # type: ignore[arg-type]
    return base.time_scaled(time_scale) if time_scale != 1.0 else base
