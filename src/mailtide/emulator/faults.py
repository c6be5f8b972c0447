"""Seedable faults of the emulator's Gmail API, per method: 500 backendError, 503, a connection reset
in the middle of the body, a 200 whose JSON is cut short, and added latency.

Rules are keyed by Gmail method name (the route names: "messages.get", "history.list", "batch", ...)
with "*" as the default for methods without their own rule. Push-notification faults (delay, drop)
live with the Pub/Sub emulator (pubsub/faults.py) and are set through the same CLI and admin API.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["error500", "error503", "reset", "truncate"]
ANY_METHOD = "*"
_KINDS: tuple[FaultKind, ...] = ("error500", "error503", "reset", "truncate")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


class FaultSpecError(ValueError):
    """A fault rule that cannot be understood; the message says what is wrong."""


@dataclass(frozen=True)
class MethodFaults:
    """Probabilities (each call draws once; their sum is at most 1) and a latency added to every call."""

    error500: float = 0.0
    error503: float = 0.0
    reset: float = 0.0
    truncate: float = 0.0
    latency: float = 0.0  # seconds

    def __post_init__(self) -> None:
        for kind in _KINDS:
            value = getattr(self, kind)
            if not 0.0 <= value <= 1.0:
                raise FaultSpecError(f"{kind} must be a probability between 0 and 1, not {value}")
        if sum(getattr(self, kind) for kind in _KINDS) > 1.0 + 1e-9:
            raise FaultSpecError("fault probabilities of one method add up to more than 1")
        if self.latency < 0:
            raise FaultSpecError("latency must be >= 0")

    @property
    def active(self) -> bool:
        return self.latency > 0 or any(getattr(self, kind) for kind in _KINDS)

    def to_json(self) -> dict[str, float]:
        return {
            "error500": self.error500,
            "error503": self.error503,
            "reset": self.reset,
            "truncate": self.truncate,
            "latencyMs": round(self.latency * 1000, 3),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MethodFaults:
        known = {"error500", "error503", "reset", "truncate", "latencyMs"}
        unknown = set(data) - known
        if unknown:
            raise FaultSpecError(f"unknown fault fields {sorted(unknown)}; known: {sorted(known)}")
        try:
            values = {kind: float(data.get(kind, 0.0)) for kind in _KINDS}
            latency = float(data.get("latencyMs", 0.0)) / 1000
        except (TypeError, ValueError) as exc:
            raise FaultSpecError(f"fault values must be numbers ({exc})") from None
        return cls(**values, latency=latency)


NO_FAULTS = MethodFaults()


@dataclass(frozen=True)
class Fault:
    """What to do to one call: an injected failure (or None) and the latency to add first."""

    kind: FaultKind | None = None
    latency: float = 0.0


class FaultInjector:
    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._rules: dict[str, MethodFaults] = {}
        self.injected: Counter[tuple[str, str]] = Counter()  # (method, kind)

    def configure(self, rules: Mapping[str, MethodFaults], *, seed: int | None = None) -> None:
        """Replace every rule; with `seed`, restart the random sequence (reproducible runs)."""
        with self._lock:
            self._rules = {method: faults for method, faults in rules.items() if faults.active}
            if seed is not None:
                self._rng = random.Random(seed)

    def rules(self) -> dict[str, MethodFaults]:
        with self._lock:
            return dict(self._rules)

    def decide(self, method: str) -> Fault:
        with self._lock:
            faults = self._rules.get(method) or self._rules.get(ANY_METHOD)
            if faults is None:
                return Fault()
            draw = self._rng.random()
            for kind in _KINDS:
                draw -= getattr(faults, kind)
                if draw < 0:
                    self.injected[(method, kind)] += 1
                    return Fault(kind, faults.latency)
            return Fault(None, faults.latency)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            injected: dict[str, dict[str, int]] = {}
            for (method, kind), count in sorted(self.injected.items()):
                injected.setdefault(method, {})[kind] = count
            return {
                "methods": {method: faults.to_json() for method, faults in sorted(self._rules.items())},
                "injected": injected,
            }


def check_fault_methods(methods: Iterable[str], known: Collection[str]) -> None:
    """FaultSpecError naming the known methods when a rule names another one (a typo would never fire)."""
    unknown = sorted(set(methods) - set(known) - {ANY_METHOD})
    if unknown:
        raise FaultSpecError(
            f"unknown Gmail method {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))} "
            f"(or {ANY_METHOD!r} for every method)"
        )


def _duration(text: str) -> float:
    match = _DURATION.match(text)
    if match is None:
        raise FaultSpecError(f"not a duration: {text!r} (e.g. 50ms, 0.2s)")
    value = float(match.group(1))
    return value if match.group(2) == "s" else value / 1000


def _probability(text: str) -> float:
    text = text.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise FaultSpecError(f"not a probability: {text!r} (e.g. 0.05 or 5%)") from None
    return value


def parse_fault_spec(spec: str) -> tuple[str, MethodFaults]:
    """`[METHOD:]key=value,...` with keys 500, 503, 5xx (split evenly), reset, truncate (probabilities,
    0.05 or 5%) and latency (50ms, 0.2s). Without METHOD the rule is the default for every method.

    >>> parse_fault_spec("messages.get:5xx=5%,reset=0.02,latency=20ms")[0]
    'messages.get'
    """
    method, sep, body = spec.partition(":")
    if not sep:
        method, body = ANY_METHOD, spec
    method = method.strip() or ANY_METHOD
    values: dict[str, float] = {}
    for item in filter(None, (piece.strip() for piece in body.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise FaultSpecError(f"expected key=value in fault rule {spec!r}, got {item!r}")
        key = key.strip().lower()
        if key == "latency":
            values["latency"] = _duration(raw)
        elif key in ("500", "503"):
            values[f"error{key}"] = values.get(f"error{key}", 0.0) + _probability(raw)
        elif key == "5xx":
            half = _probability(raw) / 2
            values["error500"] = values.get("error500", 0.0) + half
            values["error503"] = values.get("error503", 0.0) + half
        elif key in ("reset", "truncate"):
            values[key] = _probability(raw)
        else:
            raise FaultSpecError(f"unknown fault {key!r} in {spec!r}; use 500, 503, 5xx, reset, truncate, latency")
    if not values:
        raise FaultSpecError(f"fault rule {spec!r} names no fault")
    return method, MethodFaults(**values)
