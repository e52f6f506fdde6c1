"""Quota math: annual intensity, office correction, pro-rating, projection, budgets.

Pure functions so the same numbers appear in alerts and in inspectors' reports.
A quota is an *annual allowance* (kWh or kgce) = intensity × floor area (or ×
occupants for per-capita quotas). Through the year the allowance is spread in
proportion to time by default (every millisecond of the year is due the same share,
so a building with constant use projects exactly its annual rate), or by 12 seasonal
monthly weights when the site file names them (a heating/cooling-heavy month gets
more). That gives:

- the pro-rated quota: what may have been used by now;
- the projection: year-to-date ÷ the share of the year's use expected by now
  (a seasonally adjusted run rate). The early warning (预警) fires when the
  projection reaches ``warn_ratio`` × the allowance, long before the year-to-date does;
- exceeded: the year-to-date reached the allowance.

There is no separate "over the pro-rated quota" state: year-to-date > pro-rated ×
(1 + t) is the same inequality as projection > allowance × (1 + t), so it was only
ever an early warning at a higher ratio and could not fire at defaults (issue 11).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

from energy import refdata
from energy.refdata import Ref

if TYPE_CHECKING:
    from energy.site import Building

Level = Literal["constraint", "baseline", "guide"]
QuotaState = Literal["ok", "early_warning", "exceeded"]


def office_correction(hours_per_year: float, m2_per_person: float) -> tuple[float, float]:
    """GB/T 51161-2016 office correction factors (γ1 for hours of use, γ2 for density).

    γ1 = 0.3 + 0.7 · T0/T and γ2 = 0.7 + 0.3 · S/S0, with T0 and S0 from
    ``energy/data/quotas.yaml`` (2500 h/a, 10 m²/person).
    """
    c = refdata.quotas().gbt51161_office_correction
    if hours_per_year <= 0 or m2_per_person <= 0:
        raise ValueError("hours of use and floor area per person must be positive")
    g1 = 0.3 + 0.7 * (c.T0_hours.value / hours_per_year)
    g2 = 0.7 + 0.3 * (m2_per_person / c.S0_m2_per_person.value)
    return g1, g2


def quota_intensity(ref: str, level: Level = "constraint", *, hours_per_year: float | None = None,
                    m2_per_person: float | None = None) -> Ref:
    """The intensity of a shipped quota at a level, office-corrected when the quota says so."""
    q = refdata.quota(ref)
    value = getattr(q, level)
    if value is None:
        raise ValueError(f"quota {ref!r} has no {level} value")
    source = f"{q.source} ({level})"
    mark = q.mark
    if q.office_correction and hours_per_year and m2_per_person:
        g1, g2 = office_correction(hours_per_year, m2_per_person)
        value = value * g1 * g2
        source += (f", office-corrected γ1={g1:.4f} (T={hours_per_year:g} h)"
                   f" γ2={g2:.4f} (S={m2_per_person:g} m2/person)")
        mark = "I" if mark == "R" else mark
    return Ref(value=value, unit=q.unit, source=source, mark=mark)


def annual_allowance(intensity: float, *, basis: Literal["area", "person"], floor_area_m2: float,
                     occupants: int) -> float:
    """Intensity × floor area (or × occupants for a per-capita quota)."""
    return intensity * (floor_area_m2 if basis == "area" else occupants)


def year_fraction(ts_ms: int, tz: ZoneInfo, weights: Sequence[float] | None = None) -> float:
    """Share of the year's expected use that falls before ``ts_ms`` (0..1), local calendar.

    ``weights=None`` (the default) is proportional to time: the elapsed share of the
    local year (365 or 366 days), so a building using the same every hour projects
    exactly its annual use on every day and an early warning cannot flap at a month
    boundary. Equal *monthly* weights are not the same thing: February would be due
    1/12 of the year in 28 days, which biased projections by up to 3 %.

    ``weights`` are 12 relative monthly shares of the year's use (January first);
    within a month use is spread evenly over time.
    """
    d = datetime.fromtimestamp(ts_ms / 1000, tz)
    if weights is None:
        y0 = datetime(d.year, 1, 1, tzinfo=tz).timestamp()
        y1 = datetime(d.year + 1, 1, 1, tzinfo=tz).timestamp()
        return (ts_ms / 1000 - y0) / (y1 - y0)
    if len(weights) != 12 or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError("seasonal weights must be 12 non-negative numbers with a positive sum")
    total = float(sum(weights))
    done = sum(weights[: d.month - 1])
    month_start = datetime(d.year, d.month, 1, tzinfo=tz)
    days = calendar.monthrange(d.year, d.month)[1]
    elapsed = (d - month_start).total_seconds() / (days * 86400)
    return (done + weights[d.month - 1] * elapsed) / total


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    state: QuotaState
    allowance: float       # annual, in the quota's unit × (m² or person)
    ytd: float
    pro_rated: float       # allowance × year fraction
    projected: float | None  # None while too little of the year has passed
    fraction: float


def evaluate_quota(*, ytd: float, allowance: float, fraction: float, min_fraction: float = 0.05,
                   warn_ratio: float = 1.0) -> QuotaStatus:
    """Classify year-to-date use against an annual allowance.

    Args:
        ytd: consumption since 1 January (same unit as ``allowance``).
        fraction: ``year_fraction`` now.
        min_fraction: no projection before this share of the year's use is due (one
            cold week in January must not project a blown year).
        warn_ratio: early warning when projected ≥ warn_ratio × allowance.
    """
    pro_rated = allowance * fraction
    projected = ytd / fraction if fraction >= min_fraction and fraction > 0 else None
    if ytd >= allowance:
        state: QuotaState = "exceeded"
    elif projected is not None and projected >= warn_ratio * allowance:
        state = "early_warning"
    else:
        state = "ok"
    return QuotaStatus(state, allowance, ytd, pro_rated, projected, fraction)


BudgetState = Literal["ok", "warning", "exhausted"]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    state: BudgetState
    used: float
    budget: float
    used_ratio: float


def evaluate_budget(used: float, budget: float, *, warn_ratio: float = 0.8) -> BudgetStatus:
    """A period energy budget (用能预算): warning at ``warn_ratio``, exhausted at 100 %."""
    if budget <= 0:
        raise ValueError("budget must be positive")
    r = used / budget
    state: BudgetState = "exhausted" if r >= 1 else "warning" if r >= warn_ratio else "ok"
    return BudgetStatus(state, used, budget, r)


def building_intensity(b: Building) -> float:
    """The quota intensity that applies to a building: its own value, or the shipped
    reference corrected for its operating hours and floor area per person (GB/T 51161).

    The rule engine's alert, the report and the demo all take the limit from here.
    """
    q = b.quota
    assert q is not None
    if q.value is not None:
        return q.value
    assert q.ref is not None
    m2pp = b.floor_area_m2 / b.occupants if b.occupants else None
    correct = q.office_correction is not False
    return quota_intensity(q.ref, q.level,
                           hours_per_year=b.operating_hours_per_year if correct else None,
                           m2_per_person=m2pp if correct else None).value
