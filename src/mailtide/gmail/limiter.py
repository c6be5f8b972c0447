"""Riding Gmail's quota: a cost-aware token bucket per account, a shared one per project, an adaptive
concurrency cap, and back-off that shrinks the rate on a rate-limit reply and recovers it gradually.

The bucket has the shape Gmail enforces (GMAIL_FACTS.md): it holds at most one minute's allowance
(the burst) and refills continuously at allowance/minute. Spending from a local copy of that bucket
keeps a single process under the limit without ever asking; a rate-limit reply (another client of
the same user, a clock that disagrees) drains it, halves the refill rate and pauses. Successes then
raise the rate back, in proportion to the units they spent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from mailtide.gmail.quota import MAX_BATCH_CALLS, QuotaProfile, quota_profile

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

MIN_RATE_FACTOR = 1 / 16
# Gmail counts a call when it arrives, a moment after we counted it here: keep this share of the burst
# in reserve so its count never runs ahead of ours. It costs one slightly smaller burst, once; the rate
# is untouched.
HEADROOM = 0.03
RECOVERY_PER_ALLOWANCE = 0.5  # spending a full minute's allowance successfully gives back half the rate
CONCURRENCY_RECOVERY_SUCCESSES = 20
EPSILON_UNITS = 1e-6


class TokenBucket:
    """`capacity` units, refilled at `rate` units per second (times a factor the caller chooses); starts full."""

    def __init__(self, capacity: float, rate: float, *, clock: Clock = time.monotonic) -> None:
        if capacity <= 0 or rate <= 0:
            raise ValueError("capacity and rate must be > 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def refill(self, factor: float = 1.0) -> float:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate * factor)
        self._stamp = now
        return self._tokens

    def wait_time(self, units: float, factor: float = 1.0) -> float:
        """Seconds until `units` can be taken (0 when they can be now). Units beyond capacity wait for a full bucket."""
        shortfall = min(units, self.capacity) - self.refill(factor)
        # A rounding crumb is no shortfall: waiting for it could never end once the clock stops moving.
        return 0.0 if shortfall <= EPSILON_UNITS else shortfall / (self.rate * factor)

    def take(self, units: float) -> None:
        self._tokens -= min(units, self.capacity)

    def drain(self) -> None:
        self._tokens = min(self._tokens, 0.0)

    @property
    def tokens(self) -> float:
        return self._tokens


@dataclass
class LimiterStats:
    waited_seconds: float = 0.0  # time callers spent waiting for units or a pause
    units: int = 0  # units acquired
    rate_limited: int = 0  # rate-limit replies reported
    concurrency_limited: int = 0


class QuotaLimiter:
    """The pacing of one account's requests. `acquire(units)` waits for the units (FIFO: a large batch is
    never starved by small calls), `on_success` / `on_rate_limited` adapt the rate."""

    def __init__(
        self,
        profile: QuotaProfile | None = None,
        *,
        project_bucket: TokenBucket | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.profile = profile or quota_profile("unlimited")
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        rate = self.profile.user_units_per_second
        allowance = self.profile.user_units_per_minute
        self._bucket = (
            TokenBucket(allowance * (1 - HEADROOM), rate, clock=clock)
            if allowance is not None and rate is not None
            else None
        )
        self._project = project_bucket
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self._strikes = 0
        self.rate_factor = 1.0
        self.stats = LimiterStats()

    @property
    def backoff_base(self) -> float:
        """Google asks for back-off starting at >= 1 s; a time-scaled quota minute scales it too."""
        return max(0.02, self.profile.minute_seconds / 60)

    def max_calls(self, method: str) -> int:
        """How many calls of `method` one acquisition may cover (a batch never costs more than a full bucket)."""
        cost = self.profile.cost(method)
        if self._bucket is None or cost <= 0:
            return MAX_BATCH_CALLS
        return max(1, int(self._bucket.capacity // cost))

    async def acquire(self, units: int) -> None:
        if units <= 0 and self._paused_until <= self._clock():
            return
        started = self._clock()
        async with self._lock:
            while True:
                now = self._clock()
                wait = self._paused_until - now
                if self._bucket is not None:
                    wait = max(wait, self._bucket.wait_time(units, self.rate_factor))
                if self._project is not None:
                    wait = max(wait, self._project.wait_time(units))
                if wait <= 0:
                    break
                await self._sleep(wait)
            if self._bucket is not None:
                self._bucket.take(units)
            if self._project is not None:
                self._project.take(units)
        self.stats.units += units
        self.stats.waited_seconds += self._clock() - started

    def on_success(self, units: int) -> None:
        self._strikes = 0
        if self.rate_factor < 1.0 and self._bucket is not None:
            self._bucket.refill(self.rate_factor)  # account the time spent at the old rate first
            step = RECOVERY_PER_ALLOWANCE * units / self._bucket.capacity
            self.rate_factor = min(1.0, self.rate_factor + step)
        elif self.rate_factor < 1.0:
            self.rate_factor = 1.0

    def on_rate_limited(self, retry_after: float | None) -> float:
        """Gmail said "too fast": empty the bucket, halve the rate, pause. Returns the pause in seconds."""
        self._strikes += 1
        self.stats.rate_limited += 1
        if self._bucket is not None:
            self._bucket.refill(self.rate_factor)
            self._bucket.drain()
        self.rate_factor = max(MIN_RATE_FACTOR, self.rate_factor / 2)
        if retry_after is not None:
            delay = retry_after
        else:
            exponential = self.backoff_base * 2 ** min(self._strikes - 1, 10)
            delay = min(exponential, self.profile.minute_seconds) * self._rng.uniform(0.75, 1.25)
        self._paused_until = max(self._paused_until, self._clock() + delay)
        logger.info(
            "gmail.limiter.rate_limited strikes=%s rate_factor=%.3f pause=%.2f", self._strikes, self.rate_factor, delay
        )
        return delay


    def on_concurrency_limited(self, retry_after: float | None) -> float:
        """"Too many concurrent requests": the rate is fine, so no slower refill, only a short pause
        (the caller also lowers its concurrency). Returns the pause in seconds."""
        self.stats.concurrency_limited += 1
        delay = retry_after if retry_after is not None else self.backoff_base * self._rng.uniform(0.5, 1.5)
        self._paused_until = max(self._paused_until, self._clock() + delay)
        return delay


class ConcurrencyCap:
    """An async semaphore whose limit shrinks on "too many concurrent requests" and grows back slowly."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.max_limit = limit
        self.limit = limit
        self.in_use = 0
        self._successes = 0
        self._changed = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        async with self._changed:
            self.in_use -= 1
            self._changed.notify_all()

    def shrink(self) -> None:
        self._successes = 0
        if self.limit > 1:
            self.limit -= 1
            logger.info("gmail.concurrency.shrunk limit=%s", self.limit)

    async def note_success(self) -> None:
        if self.limit >= self.max_limit:
            return
        self._successes += 1
        if self._successes >= CONCURRENCY_RECOVERY_SUCCESSES:
            self._successes = 0
            async with self._changed:
                self.limit += 1
                self._changed.notify_all()


def project_bucket(profile: QuotaProfile, *, clock: Clock = time.monotonic) -> TokenBucket | None:
    """The bucket all accounts of one process share for the per-project limit (None when unlimited)."""
    rate = profile.project_units_per_second
    if profile.project_units_per_minute is None or rate is None:
        return None
    return TokenBucket(profile.project_units_per_minute, rate, clock=clock)
