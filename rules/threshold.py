"""Threshold with for-duration and hysteresis — a pure state machine.

Why both: a demand peak of a few seconds is not worth waking anyone
(``for_s``), and a value hovering at the limit must not flap between firing and
resolved (``clear_below`` < ``above``).

States: ``ok`` → ``pending`` (above the limit, not for long enough yet) →
``firing`` → ``ok`` again once the value falls below ``clear_below`` (a
``resolved`` transition). Time is the reading's timestamp, so replayed history
gives the same alerts as live data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"


@dataclass(frozen=True, slots=True)
class Threshold:
    above: float
    clear_below: float
    for_s: float = 0.0

    def __post_init__(self) -> None:
        if self.clear_below > self.above:
            raise ValueError(f"clear_below {self.clear_below} must not exceed above {self.above}")
        if self.for_s < 0:
            raise ValueError("for_s must be >= 0")


@dataclass(frozen=True, slots=True)
class Transition:
    """``firing`` or ``resolved``: what a notifier and the ``alert`` history record."""

    kind: str
    ts_ms: int
    value: float
    since_ms: int


@dataclass(slots=True)
class Tracker:
    """Follows one series (one device's quantity) through the threshold's states."""

    rule: Threshold
    state: State = State.OK
    since_ms: int = 0

    def feed(self, ts_ms: int, value: float) -> Transition | None:
        if ts_ms < self.since_ms:  # out-of-order reading: cannot move time backwards
            return None
        r = self.rule
        if self.state is State.OK:
            if value > r.above:
                self.state, self.since_ms = State.PENDING, ts_ms
                return self._maybe_fire(ts_ms, value)
            return None
        if self.state is State.PENDING:
            if value <= r.above:
                self.state, self.since_ms = State.OK, ts_ms
                return None
            return self._maybe_fire(ts_ms, value)
        # FIRING
        if value < r.clear_below:
            started = self.since_ms
            self.state, self.since_ms = State.OK, ts_ms
            return Transition("resolved", ts_ms, value, started)
        return None

    def _maybe_fire(self, ts_ms: int, value: float) -> Transition | None:
        if ts_ms - self.since_ms >= self.rule.for_s * 1000:
            self.state = State.FIRING
            return Transition("firing", ts_ms, value, self.since_ms)
        return None
