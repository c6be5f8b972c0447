from __future__ import annotations

import random

import pytest

from mailtide.queue.backoff import backoff_delay


@pytest.mark.parametrize(("attempts", "nominal"), [(1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (8, 256.0)])
def test_exponential_within_jitter(attempts: int, nominal: float) -> None:
    rng = random.Random(7)
    delays = [backoff_delay(attempts, rng=rng) for _ in range(500)]
    assert all(nominal * 0.75 <= d <= nominal * 1.25 for d in delays)
    # The jitter really spreads: not all equal, both sides of nominal reached.
    assert min(delays) < nominal * 0.9 and max(delays) > nominal * 1.1


def test_capped_at_five_minutes_even_for_huge_attempt_counts() -> None:
    rng = random.Random(1)
    for attempts in (9, 20, 1_000, 10**9):
        assert 225.0 <= backoff_delay(attempts, rng=rng) <= 375.0


def test_zero_attempts_and_no_jitter() -> None:
    assert backoff_delay(0, jitter=0.0) == 2.0
    assert backoff_delay(4, jitter=0.0) == 16.0
    assert backoff_delay(4, base=1.0, cap=5.0, jitter=0.0) == 5.0
