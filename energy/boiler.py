"""Boiler thermal efficiency: direct and indirect methods, GB 24500-2020 limits, windows.

Direct method (GB/T 10180-2017 style): η = useful heat out / (fuel × net calorific
value) × 100. Steam enthalpies come from IAPWS-IF97 (the ``iapws`` package), never
from a fitted approximation. Indirect method: η = 100 − (q2 + other losses), with
the exhaust loss q2 from the Siegert formula (see ``energy/data/exhaust_loss.yaml``
for the citation and the confidence of each coefficient).

A boiler is judged over a *window* and only on intervals where it runs above a
minimum load and is past its start-up: a boiler warming up or idling is
inefficient by nature, and alerting on that would teach operators to ignore us.

An efficiency above the physical ceiling of the boiler's fuel and type (100 % on the
NCV basis without condensation, GCV/NCV ≈ 111 % for condensing gas; see
``energy/data/boiler_ceilings.yaml``) is no verdict at all: the meters or the
configuration are wrong, and :func:`assess` says so instead of "meets the limit".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

from energy import refdata
from energy.refdata import ExhaustCoefficients, Ref
from enmon.config import StrictModel, load_model

ATM_MPA = 0.101325


@lru_cache(maxsize=4096)
def steam_enthalpy(gauge_mpa: float, temp_c: float | None = None) -> float:
    """Specific enthalpy of steam, kJ/kg (IAPWS-IF97): saturated if no temperature given."""
    from iapws import IAPWS97

    p = gauge_mpa + ATM_MPA
    st = IAPWS97(P=p, x=1) if temp_c is None else IAPWS97(P=p, T=temp_c + 273.15)
    return float(st.h)


@lru_cache(maxsize=4096)
def water_enthalpy(temp_c: float, gauge_mpa: float = 0.0) -> float:
    """Specific enthalpy of (compressed) liquid water, kJ/kg (IAPWS-IF97)."""
    from iapws import IAPWS97

    return float(IAPWS97(P=gauge_mpa + ATM_MPA, T=round(temp_c, 3) + 273.15).h)


def steam_heat_kj(steam_t: float, *, gauge_mpa: float, feedwater_c: float,
                  steam_temp_c: float | None = None) -> float:
    """Useful heat of ``steam_t`` tonnes of steam made from feedwater at ``feedwater_c``."""
    h_s = steam_enthalpy(gauge_mpa, steam_temp_c)
    h_fw = water_enthalpy(feedwater_c, gauge_mpa)
    return steam_t * 1000.0 * (h_s - h_fw)


def direct_efficiency(useful_heat_kj: float, fuel_amount: float, ncv_kj_per_unit: float) -> float:
    """η1 = Q1 / (B · Qr) × 100 (%)."""
    if fuel_amount <= 0 or ncv_kj_per_unit <= 0:
        raise ValueError("fuel amount and NCV must be positive")
    return 100.0 * useful_heat_kj / (fuel_amount * ncv_kj_per_unit)


def excess_air(o2_pct: float) -> float:
    """α = 21 / (21 − O2), dry flue gas, complete combustion."""
    if not 0 <= o2_pct < 21:
        raise ValueError("flue O2 must be in [0, 21) %")
    return 21.0 / (21.0 - o2_pct)


def coefficients(fuel: str, override: ExhaustCoefficients | None = None) -> ExhaustCoefficients:
    if override is not None:
        return override
    table = refdata.exhaust_loss().coefficients
    key = "natural_gas" if fuel.startswith("natural_gas") else fuel
    if key not in table:
        from enmon.errors import ConfigError

        raise ConfigError("energy/data/exhaust_loss.yaml", f"coefficients.{fuel}",
                          f"no cited exhaust-loss coefficients for fuel {fuel!r}",
                          "set exhaust_loss: {A2: .., B: .., source: ..} on the boiler")
    return table[key]


def exhaust_loss(flue_c: float, air_c: float, o2_pct: float, coef: ExhaustCoefficients) -> float:
    """q2 (%) by the Siegert formula: (t_flue − t_air) · (A2 / (21 − O2) + B)."""
    excess_air(o2_pct)  # validates O2
    return (flue_c - air_c) * (coef.A2 / (21.0 - o2_pct) + coef.B)


def indirect_efficiency(flue_c: float, air_c: float, o2_pct: float, coef: ExhaustCoefficients,
                        other_losses_pct: float = 0.0) -> float:
    """η2 = 100 − (q2 + q3 + q4 + q5 + q6), the non-exhaust losses given as one configured sum."""
    return 100.0 - exhaust_loss(flue_c, air_c, o2_pct, coef) - other_losses_pct


# --------------------------------------------------------------------------- GB 24500 limits

Combustion = Literal["grate", "fluidised_bed", "chamber", "biomass", "electric"]


@dataclass(frozen=True, slots=True)
class Limit:
    grades: tuple[float, float, float]  # grade 1, 2, 3 (grade 3 = limit value)
    ref: Ref

    @property
    def limit(self) -> float:
        return self.grades[2]


def gb24500_limit(combustion: Combustion, fuel: str, *, steam_t_h: float | None = None,
                  hot_water_mw: float | None = None) -> Limit:
    """The GB 24500-2020 grades for a boiler's combustion type, fuel and rated capacity."""
    data = refdata.boiler_limits()
    row = next((r for r in data.limits if r.combustion == combustion and r.fuel == fuel), None)
    if row is None:
        from enmon.errors import ConfigError

        options = ", ".join(sorted({f"{r.combustion}/{r.fuel}" for r in data.limits}))
        raise ConfigError("energy/data/boiler_limits.yaml", f"{combustion}/{fuel}",
                          "no GB 24500-2020 row for this combustion type and fuel",
                          f"use one of {options}, or set limit_pct on the boiler")
    if steam_t_h is None:
        if hot_water_mw is None:
            raise ValueError("give the rated capacity in t/h (steam) or MW (hot water)")
        steam_t_h = hot_water_mw / data.mw_per_t_h.value
    large = steam_t_h > row.split_t_h
    grades = row.large if large else row.small
    size = f"> {row.split_t_h:g} t/h" if large else f"<= {row.split_t_h:g} t/h"
    ref = Ref(value=grades[2], unit="%", mark=data.mark,
              source=f"{data.source}: {combustion}/{fuel} {size}, "
                     f"grades {grades[0]:g}/{grades[1]:g}/{grades[2]:g}")
    return Limit(tuple(grades), ref)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True, slots=True)
class BoilerInterval:
    """One measured interval of a boiler: heat out, fuel in and its load."""

    start: int  # epoch ms
    end: int
    heat_kj: float
    fuel: float           # m³ (gas), kg (oil/coal) or kWh (electric)
    load_pct: float       # mean load over the interval, % of rated capacity


@dataclass(frozen=True, slots=True)
class WindowResult:
    efficiency: float | None   # None when too little of the window qualified
    qualified_ms: int
    window_ms: int
    heat_kj: float
    fuel: float
    excluded_low_load_ms: int
    excluded_startup_ms: int


def window_efficiency(ivs: Sequence[BoilerInterval], *, ncv_kj_per_unit: float, min_load_pct: float,
                      startup_ms: int = 0, min_coverage: float = 0.5,
                      window: tuple[int, int] | None = None) -> WindowResult:
    """Direct-method efficiency over a window from the intervals that qualify.

    An interval qualifies when its load ≥ ``min_load_pct`` and the boiler has been
    continuously above that load for ``startup_ms`` (start-up excluded). Efficiency is
    Σheat / (Σfuel × NCV) over qualifying intervals — a ratio of sums, so a short
    odd interval cannot swing the result. ``None`` if qualifying time is below
    ``min_coverage`` of the window: not enough evidence to judge.
    """
    ivs = sorted(ivs, key=lambda i: i.start)
    w0, w1 = window if window else ((ivs[0].start, ivs[-1].end) if ivs else (0, 0))
    heat = fuel = 0.0
    q_ms = low_ms = start_ms_excl = 0
    running_since: int | None = None
    prev_end: int | None = None
    for iv in ivs:
        dur = iv.end - iv.start
        if prev_end is not None and iv.start != prev_end:
            running_since = None  # a gap in the data ends the run: unknown what happened
        prev_end = iv.end
        if iv.load_pct < min_load_pct:
            running_since = None
            if w0 <= iv.start and iv.end <= w1:
                low_ms += dur
            continue
        if running_since is None:
            running_since = iv.start
        if not (w0 <= iv.start and iv.end <= w1):
            continue
        if iv.start - running_since < startup_ms:
            start_ms_excl += dur
            continue
        heat += iv.heat_kj
        fuel += iv.fuel
        q_ms += dur
    span = max(1, w1 - w0)
    eff = None
    if q_ms >= min_coverage * span and fuel > 0:
        eff = direct_efficiency(heat, fuel, ncv_kj_per_unit)
    return WindowResult(eff, q_ms, span, heat, fuel, low_ms, start_ms_excl)


# --------------------------------------------------------------------------- physical ceilings


class Ceilings(StrictModel):
    """``energy/data/boiler_ceilings.yaml``: the most a boiler can deliver per unit of NCV."""

    basis: str
    default: Ref
    fuels: dict[str, Ref]


@cache
def ceilings() -> Ceilings:
    return load_model(Ceilings, refdata.data_dir() / "boiler_ceilings.yaml")


def efficiency_ceiling(fuel: str, override_pct: float | None = None) -> Ref:
    """The highest efficiency (% of NCV) physically possible for a boiler on ``fuel``.

    A fuel with its own entry (a condensing boiler: GCV/NCV) uses it; any other fuel is
    burnt without condensation and cannot exceed 100 % of its NCV. ``override_pct`` is the
    site file's ``max_efficiency_pct`` (e.g. GCV/NCV from your own gas analysis).
    """
    data = ceilings()
    if override_pct is not None:
        return Ref(value=override_pct, unit="%", source="site file max_efficiency_pct",
                   mark="user")
    ref = data.fuels.get(fuel, data.default)
    return Ref(value=ref.value, unit="%", mark=ref.mark,
               source=f"{ref.source} ({fuel}, {data.basis})")


Method = Literal["direct", "indirect"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One method's result: a pass/fail against the limit, or implausible (no verdict)."""

    method: Method
    efficiency: float
    limit: float
    ceiling: Ref

    @property
    def implausible(self) -> bool:
        """Above the physical ceiling: the meters or the configuration are wrong."""
        return self.efficiency > self.ceiling.value

    @property
    def low(self) -> bool:
        """Below the limit (only meaningful when plausible)."""
        return not self.implausible and self.efficiency < self.limit


def assess(*, direct: float | None, indirect: float | None, limit: float, ceiling: Ref
           ) -> list[Verdict]:
    """The verdicts of the methods that produced a figure (direct first)."""
    figures: tuple[tuple[Method, float | None], ...] = (("direct", direct), ("indirect", indirect))
    return [Verdict(m, e, limit, ceiling) for m, e in figures if e is not None]
