"""Occupancy schedules per building type: the fraction of design occupancy present.

Ramps are smooth (an hour wide) because people do not arrive in one second and
because a step would make hourly and per-minute integration of the same day
disagree more than a real meter would.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.campus.climate import DAY_S, day_of_year, hour_of_day


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a building is used.

    Args:
        open_h: local hour occupancy starts rising (reaches full one hour later).
        close_h: local hour occupancy starts falling.
        night: occupancy outside opening hours (in-patients, security, servers).
        weekend: factor on the daytime occupancy on Saturday and Sunday.
        lunch_dip: fraction that leaves around 12:00-13:00 (offices).
        vacations: day-of-year ranges [start, end) with ``vacation`` occupancy factor.
        vacation: factor applied in those ranges (schools).
    """

    open_h: float = 8.0
    close_h: float = 18.0
    night: float = 0.05
    weekend: float = 0.15
    lunch_dip: float = 0.0
    vacations: tuple[tuple[float, float], ...] = ()
    vacation: float = 1.0


def _smoothstep(x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    return x * x * (3.0 - 2.0 * x)


def weekday(local_s: float) -> int:
    """Monday = 0. 1 Jan 1970 was a Thursday."""
    return (int(local_s // DAY_S) + 3) % 7


def occupancy(s: Schedule, local_s: float) -> float:
    h = hour_of_day(local_s)
    day = _smoothstep(h - s.open_h) * (1.0 - _smoothstep(h - s.close_h))
    if s.lunch_dip:
        day *= 1.0 - s.lunch_dip * _smoothstep(h - 11.75) * (1.0 - _smoothstep(h - 12.75))
    factor = s.weekend if weekday(local_s) >= 5 else 1.0
    if s.vacations:
        doy = day_of_year(local_s)
        if any(a <= doy < b for a, b in s.vacations):
            factor *= s.vacation
    return s.night + (1.0 - s.night) * day * factor


def meal_shape(local_s: float) -> float:
    """Kitchen activity (0..1): breakfast, lunch and dinner peaks."""
    h = hour_of_day(local_s)
    out = 0.0
    for start, peak in ((6.5, 0.4), (10.5, 1.0), (16.5, 0.8)):
        rise = _smoothstep((h - start) / 1.0)
        fall = 1.0 - _smoothstep((h - start - 2.0) / 1.0)
        out = max(out, peak * rise * fall)
    return out
