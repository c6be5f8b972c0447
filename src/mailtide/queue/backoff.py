"""Retry delays: exponential backoff with jitter."""

from __future__ import annotations

import random

BASE_SECONDS = 2.0
CAP_SECONDS = 300.0
JITTER = 0.25


def backoff_delay(
    attempts: int,
    *,
    base: float = BASE_SECONDS,
    cap: float = CAP_SECONDS,
    jitter: float = JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before the next try, after `attempts` tries so far (1 = the first failed).

    base * 2**(attempts-1), capped at `cap`, then spread by +-`jitter` (a fraction) so jobs that
    failed together (an outage, a quota burst) do not all come back in the same instant.
    """
    exponent = max(attempts, 1) - 1
    # Capping the exponent first keeps 2**n finite for absurd attempt counts.
    raw = cap if exponent >= 64 else min(cap, base * 2.0**exponent)
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, raw * (1.0 + spread))
