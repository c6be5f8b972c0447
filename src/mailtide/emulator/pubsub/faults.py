"""Fault modes of the emulator's Gmail notifications: what Pub/Sub and Gmail may do to them."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class NotificationFaults:
    """Rates are probabilities in [0, 1], applied to each notification independently.

    drop: never published. duplicate: published twice. delay: every copy published `delay_seconds`
    late. reorder: held back `reorder_seconds` more, so later notifications overtake it.
    """

    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    delay_seconds: float = 0.0
    reorder_rate: float = 0.0
    reorder_seconds: float = 1.0

    def __post_init__(self) -> None:
        for name in ("drop_rate", "duplicate_rate", "reorder_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")
        if self.delay_seconds < 0 or self.reorder_seconds < 0:
            raise ValueError("delay_seconds and reorder_seconds must be >= 0")

    @property
    def active(self) -> bool:
        return any((self.drop_rate, self.duplicate_rate, self.delay_seconds, self.reorder_rate))

    def plan(self, rng: random.Random) -> list[float]:
        """The delays (seconds from now) at which copies of one notification are published; [] = dropped."""
        if self.drop_rate and rng.random() < self.drop_rate:
            return []
        copies = 2 if self.duplicate_rate and rng.random() < self.duplicate_rate else 1
        delays = []
        for _ in range(copies):
            delay = self.delay_seconds
            if self.reorder_rate and rng.random() < self.reorder_rate:
                delay += self.reorder_seconds
            delays.append(delay)
        return delays

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
