"""Edge validation: what the gateway knows about a reading that the cloud cannot.

Pure and I/O-free. The gateway sees every raw reading in order, so it is the
one place that can tell a counter rollover from a meter swap from a wiring
glitch. Values are *flagged*, not silently fixed: an inspector must be able
to see what was measured. The rules:

* a failed or non-finite read yields **no value** (flag ``not_finite``), never 0;
* a raw value the meter sends for "no value" (the profile's ``no_value`` sentinels, found
  by the drivers where the raw bits are) yields no value and the flag ``no_value``;
* a gauge outside its physical bounds (``enmon.quantities``) keeps its value and
  gets ``out_of_range``; a counter outside them (negative) is dropped;
* a cumulative counter that goes backwards is flagged ``counter_rollover`` when
  it wrapped at its register's capacity, else ``counter_reset`` (a reset or a
  replaced meter look the same on the wire); a forward step faster than the
  device's ``max_rate`` per hour is ``counter_jump``. The new value becomes the
  baseline, and the flag tells consumers to start a new segment there, so a
  reset never turns into negative or huge consumption downstream.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from enmon import quantities

OUT_OF_RANGE = "out_of_range"
NOT_FINITE = "not_finite"
ROLLOVER = "counter_rollover"
RESET = "counter_reset"
JUMP = "counter_jump"
NO_VALUE = "no_value"

#: A wrap is recognised when the last value was in the top ``_WRAP_BAND`` of the
#: register's capacity and the new one is in the bottom band.
_WRAP_BAND = 0.1
#: Decreases smaller than this (relative) are float32 rounding, not resets.
_JITTER = 1e-6


@dataclass(slots=True)
class CounterLimits:
    """What is known about one counter: its capacity (for rollover) and max plausible rate."""

    capacity: float | None = None  # canonical units at which the register wraps
    max_rate_per_h: float | None = None  # canonical units per hour


@dataclass(slots=True)
class EdgeValidator:
    """Validates one device's readings in time order; keeps counter baselines.

    ``baselines`` maps quantity → (last value, its ts in ms); it is plain data so
    the runtime can persist it and a restart does not forget the last reading.
    """

    limits: Mapping[str, CounterLimits] = field(default_factory=dict)
    baselines: dict[str, tuple[float, int]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def _count(self, flag: str) -> None:
        self.counts[flag] = self.counts.get(flag, 0) + 1

    def note(self, flag: str) -> None:
        """Count a flag raised before validation (``no_value``), for the health message."""
        self._count(flag)

    def check(
        self, ts: int, values: Mapping[str, float]
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Return (values to send, flags) for one sample taken at ``ts`` (epoch ms)."""
        out: dict[str, float] = {}
        flags: dict[str, str] = {}
        for name, value in values.items():
            q = quantities.QUANTITIES.get(name)
            if not math.isfinite(value):
                flags[name] = NOT_FINITE
                self._count(NOT_FINITE)
                continue
            if q is None:
                out[name] = value
                continue
            if q.kind == "gauge":
                if not q.low <= value <= q.high:
                    flags[name] = OUT_OF_RANGE
                    self._count(OUT_OF_RANGE)
                out[name] = value
                continue
            if not q.low <= value <= q.high:
                flags[name] = OUT_OF_RANGE
                self._count(OUT_OF_RANGE)
                continue
            flag = self._counter(name, ts, value)
            if flag:
                flags[name] = flag
                self._count(flag)
            out[name] = value
        return out, flags

    def _counter(self, name: str, ts: int, value: float) -> str | None:
        last = self.baselines.get(name)
        self.baselines[name] = (value, ts)
        if last is None:
            return None
        prev, prev_ts = last
        lim = self.limits.get(name, CounterLimits())
        if value < prev:
            if prev - value <= _JITTER * max(abs(prev), 1.0):
                self.baselines[name] = last  # keep the higher baseline: rounding, not a reset
                return None
            cap = lim.capacity
            if cap and prev >= (1 - _WRAP_BAND) * cap and value <= _WRAP_BAND * cap:
                return ROLLOVER
            return RESET
        if lim.max_rate_per_h is not None and ts > prev_ts:
            hours = (ts - prev_ts) / 3_600_000
            if value - prev > lim.max_rate_per_h * hours:
                return JUMP
        return None
