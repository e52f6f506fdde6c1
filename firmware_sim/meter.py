"""A simulated three-phase energy meter: pure physics, no I/O.

The energy counter is the exact integral of the power the meter reports, so a
consumer that differentiates the counter gets the power curve back — the
property real meters have and our accounting relies on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LoadProfile:
    """A smooth daily-like cycle: ``base_kw`` at the trough, ``peak_kw`` at the top.

    ``period_s`` compresses the "day" (86 400 s in real life, 60 s in the demo);
    ``phase_s`` shifts where in the cycle t = 0 falls.
    """

    base_kw: float = 20.0
    peak_kw: float = 60.0
    period_s: float = 86_400.0
    phase_s: float = 0.0

    def power_kw(self, t: float) -> float:
        w = 2 * math.pi / self.period_s
        return self.base_kw + (self.peak_kw - self.base_kw) * (
            0.5 - 0.5 * math.cos(w * (t + self.phase_s))
        )

    def _antiderivative_kws(self, t: float) -> float:
        w = 2 * math.pi / self.period_s
        a = self.peak_kw - self.base_kw
        x = t + self.phase_s
        return self.base_kw * t + a * (0.5 * x - 0.5 * math.sin(w * x) / w)

    def energy_kwh(self, t0: float, t1: float) -> float:
        """Exact energy between two instants (kWh)."""
        return (self._antiderivative_kws(t1) - self._antiderivative_kws(t0)) / 3600.0


@dataclass(frozen=True, slots=True)
class ThreePhaseMeter:
    """A balanced three-phase load on a 230/400 V network.

    Args:
        load: the load curve.
        t0: epoch seconds at which the import counter reads ``energy0_kwh``.
        energy0_kwh: counter reading at ``t0``.
    """

    load: LoadProfile
    t0: float
    energy0_kwh: float = 12_345.0
    voltage_v: float = 230.0
    power_factor: float = 0.95
    frequency_hz: float = 50.0

    def reading(self, t: float) -> dict[str, float]:
        """Canonical quantities at epoch second ``t``."""
        p = self.load.power_kw(t - self.t0)
        per_phase = p / 3
        current = per_phase * 1000 / (self.voltage_v * self.power_factor)
        return {
            "voltage_l1_v": self.voltage_v,
            "voltage_l2_v": self.voltage_v,
            "voltage_l3_v": self.voltage_v,
            "current_l1_a": current,
            "current_l2_a": current,
            "current_l3_a": current,
            "active_power_l1_kw": per_phase,
            "active_power_l2_kw": per_phase,
            "active_power_l3_kw": per_phase,
            "active_power_kw": p,
            "power_factor": self.power_factor,
            "frequency_hz": self.frequency_hz,
            "active_energy_import_kwh": self.energy0_kwh + self.load.energy_kwh(0.0, t - self.t0),
            "active_energy_export_kwh": 0.0,
        }
