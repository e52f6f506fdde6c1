"""The monthly or annual energy report: figures only, no I/O, no layout.

Every conversion is the rule engine's (:mod:`energy.accounting`, :mod:`energy.quota`,
:mod:`energy.refdata`), so a report can never disagree with the alert that sent
the inspector to it, and every factor arrives with its source and confidence
mark, which the report prints beside the number it produced.

Consumption comes from counters (the first reading of each hour): a lost sample loses no
energy, because the next difference contains it; resets, rollovers and known
meter swaps are recognised by ``energy.accounting.intervals``. A building's total
of an energy type is the sum of its meters marked ``building_total`` in the site
file; the electricity sub-items (分项, codes 01A00–01D00) are listed below it and
what no sub-meter covers is shown as "not sub-metered", never silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from energy import accounting, quota
from energy.refdata import Ref
from energy.site import Building, Site

Period = Literal["month", "year"]
SUBITEM_NAMES = {"01A00": "lighting & sockets 照明插座", "01B00": "HVAC 空调",
                 "01C00": "power 动力", "01D00": "special 特殊"}
UNITS = {"electricity": "kWh", "water": "m³", "gas": "m³", "heat": "GJ", "cooling": "GJ",
         "steam": "t"}


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    kind: Period
    label: str  # "2026-10" or "2026"
    start: int
    end: int
    tz: str

    @property
    def year(self) -> int:
        return int(self.label[:4])


def period_of(label: str, tz: str) -> ReportPeriod:
    """``"2026-10"`` (a month) or ``"2026"`` (a year) in the site's time zone."""
    zone = ZoneInfo(tz)
    if len(label) == 4 and label.isdigit():
        y = int(label)
        s, e = dt.datetime(y, 1, 1, tzinfo=zone), dt.datetime(y + 1, 1, 1, tzinfo=zone)
        kind: Period = "year"
    else:
        try:
            y, m = (int(x) for x in label.split("-"))
            s = dt.datetime(y, m, 1, tzinfo=zone)
        except ValueError:
            raise ValueError(f"period {label!r}: write a month as 2026-10 or a year as 2026"
                             ) from None
        e = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=zone)
        kind = "month"
    return ReportPeriod(kind, label, int(s.timestamp() * 1000), int(e.timestamp() * 1000), tz)


@dataclass(slots=True)
class MeterFigure:
    meter: str
    building: str
    energy_type: str
    category: str
    total: bool
    amount: float
    readings: int = 0
    expected: int = 0
    kinds: dict[str, int] = field(default_factory=dict)  # interval kinds other than "normal"

    @property
    def completeness(self) -> float | None:
        return min(1.0, self.readings / self.expected) if self.expected else None


@dataclass(slots=True)
class EnergyLine:
    """One energy type of one building: amount, kgce and CO2 with the factors used."""

    energy_type: str
    unit: str
    amount: float
    kgce: float | None
    co2_kg: float | None
    kgce_factor: Ref | None
    co2_factor: Ref | None
    note: str = ""


@dataclass(slots=True)
class QuotaFigure:
    measure: str  # "kWh" or "kgce"
    intensity_unit: str
    limit: Ref
    allowance: float
    ytd: float
    ytd_intensity: float
    pro_rated: float
    projected: float | None
    projected_intensity: float | None
    fraction: float
    state: str
    data_from: int  # first reading the year-to-date could use
    ytd_complete: bool = True  # readings reach back to 1 January (else no verdict)


@dataclass(slots=True)
class BuildingReport:
    id: str
    name: str
    type: str
    floor_area_m2: float
    occupants: int
    energy: list[EnergyLine]
    subitems: list[tuple[str, str, float]]  # (code, name, kWh); "not sub-metered" last
    kgce: float
    co2_kg: float
    kgce_per_m2: float
    daily: dict[int, dict[str, float]]  # day start → energy type → amount
    quota: QuotaFigure | None
    meters: list[MeterFigure]


@dataclass(slots=True)
class Report:
    site: str
    site_name: str
    period: ReportPeriod
    generated_at: int
    buildings: list[BuildingReport]
    factors: list[Ref]
    completeness: list[dict[str, Any]]  # per gateway: expected, received, gaps, ratio
    alerts: list[dict[str, Any]]
    notes: list[str]

    @property
    def kgce(self) -> float:
        return sum(b.kgce for b in self.buildings)

    @property
    def co2_kg(self) -> float:
        return sum(b.co2_kg for b in self.buildings)

    def totals_by_type(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for b in self.buildings:
            for e in b.energy:
                out[e.energy_type] = out.get(e.energy_type, 0.0) + e.amount
        return out


def _kgce(site: Site, energy_type: str, amount: float, ncv: float | None
          ) -> tuple[float | None, Ref | None, str]:
    if energy_type == "water":
        return None, None, "water is not an energy in 综合能耗 (GB/T 2589-2020)"
    try:
        key = site.electricity_kgce if energy_type == "electricity" else None
        conv = (accounting.to_kgce(amount, energy_type, ncv_mj_per_m3=ncv)
                if energy_type == "gas" and ncv else
                accounting.to_kgce(amount, energy_type, factor=key))
    except Exception as exc:  # no factor shipped for this energy type: say so, never guess
        return None, None, f"no kgce factor: {exc}"
    return conv.value, conv.factor, ""


def _co2(site: Site, energy_type: str, amount: float, year: int) -> tuple[float | None, Ref | None]:
    if energy_type not in ("electricity", "gas"):
        return None, None
    conv = accounting.to_co2(amount, energy_type, year=year, region=site.grid_region,
                             basis=site.co2_basis)
    return conv.value, conv.factor


def _gas_ncv(site: Site, building: Building) -> float | None:
    """A measured NCV from the site file's boilers (the standard prefers it to the preset)."""
    for b in site.buildings:
        for bo in b.boilers:
            if b.id == building.id or bo.fuel == "natural_gas":
                return bo.ncv_mj_per_unit
    return None


def build_report(
    *,
    site: Site,
    period: ReportPeriod,
    counters: Mapping[tuple[str, str], Sequence[tuple[int, float]]],
    ytd_counters: Mapping[tuple[str, str], Sequence[tuple[int, float]]] | None = None,
    reading_counts: Mapping[tuple[str, str], int] | None = None,
    completeness_rows: Sequence[Mapping[str, Any]] = (),
    alerts: Sequence[Mapping[str, Any]] = (),
    building: str | None = None,
    generated_at: int = 0,
) -> Report:
    """Compute a report.

    Args:
        counters: (gateway, device) → hourly counter readings covering the period (with a
            reading before its start, so the first hour is not lost).
        ytd_counters: the same from 1 January to the period's end (quota year-to-date);
            ``None`` uses ``counters`` (right for an annual report).
        reading_counts: (gateway, device) → readings stored in the period (completeness).
        completeness_rows: ingest's ``completeness`` points of the period's days.
        alerts: alert episodes (``inspector.alerts.episodes``) touching the period.
        building: only this building (a building report).
    """
    tz = ZoneInfo(site.timezone)
    factors: dict[str, Ref] = {}
    notes: list[str] = []
    out_buildings: list[BuildingReport] = []
    for b in site.buildings:
        if building and b.id != building:
            continue
        meters: list[MeterFigure] = []
        per_type: dict[str, float] = {}
        daily: dict[int, dict[str, float]] = {}
        sub: dict[str, float] = {}
        for m in b.meters:
            pts = counters.get((m.gateway, m.device), [])
            reps = [accounting.Replacement(r.at, r.old_final, r.new_initial)
                    for r in m.replacements]
            ivs = accounting.intervals(pts, rollover_at=m.rollover_at, replacements=reps,
                                       jitter=m.jitter)
            amount = accounting.consumption(ivs, period.start, period.end)
            kinds: dict[str, int] = {}
            for iv in ivs:
                if iv.kind != "normal" and period.start <= iv.end and iv.start < period.end:
                    kinds[iv.kind] = kinds.get(iv.kind, 0) + 1
            n = (reading_counts or {}).get((m.gateway, m.device), 0)
            expected = int((period.end - period.start) / 1000 // m.poll_interval_s)
            meters.append(MeterFigure(m.id, b.id, m.energy_type, m.category, m.building_total,
                                      amount, n, expected, kinds))
            for k, c in kinds.items():
                notes.append(f"{b.id}/{m.id}: {c} interval(s) of kind {k!r} in the period")
            if not pts:
                notes.append(f"{b.id}/{m.id}: no readings in the period")
            if m.building_total:
                per_type[m.energy_type] = per_type.get(m.energy_type, 0.0) + amount
                for day, v in accounting.rollup(ivs, "day" if period.kind == "month" else "month",
                                                tz).items():
                    if period.start <= day < period.end:
                        slot = daily.setdefault(day, {})
                        slot[m.energy_type] = slot.get(m.energy_type, 0.0) + v
            elif m.energy_type == "electricity" and m.category in SUBITEM_NAMES:
                sub[m.category] = sub.get(m.category, 0.0) + amount
        energy: list[EnergyLine] = []
        for et in sorted(per_type):
            amount = per_type[et]
            kg, kref, note = _kgce(site, et, amount, _gas_ncv(site, b) if et == "gas" else None)
            co2, cref = _co2(site, et, amount, period.year)
            for ref in (kref, cref):
                if ref is not None:
                    factors[ref.label()] = ref
            energy.append(EnergyLine(et, UNITS.get(et, ""), amount, kg, co2, kref, cref, note))
        subitems = [(code, SUBITEM_NAMES[code], sub[code]) for code in sorted(sub)]
        if subitems and "electricity" in per_type:
            rest = per_type["electricity"] - sum(v for _, _, v in subitems)
            rest = 0.0 if abs(rest) < 1e-6 * max(1.0, per_type["electricity"]) else rest
            subitems.append(("", "not sub-metered (total − sub-items)", rest))
        kgce = sum(e.kgce or 0.0 for e in energy)
        co2 = sum(e.co2_kg or 0.0 for e in energy)
        qf = None
        if b.quota is not None:
            qf = _quota(site, b, period, ytd_counters if ytd_counters is not None else counters,
                        tz)
            factors[qf.limit.label()] = qf.limit
        out_buildings.append(BuildingReport(
            b.id, b.name or b.id, b.type, b.floor_area_m2, b.occupants, energy, subitems, kgce,
            co2, kgce / b.floor_area_m2, dict(sorted(daily.items())), qf, meters))
    gw_of_building = {(m.gateway) for bb in out_buildings for m in site.building(bb.id).meters}
    comp: dict[str, dict[str, Any]] = {}  # gateway → figures
    for r in completeness_rows:
        gw = str(r.get("gateway", ""))
        if gw not in gw_of_building:
            continue
        g = comp.setdefault(gw, {"gateway": gw, "expected": 0, "received": 0, "gaps": 0,
                                 "duplicates": 0, "days": 0})
        for k in ("expected", "received", "gaps", "duplicates"):
            g[k] += int(r.get(k) or 0)
        g["days"] += 1
    for figures in comp.values():
        exp = figures["expected"]
        figures["ratio"] = figures["received"] / exp if exp else None
    return Report(site=site.site, site_name=site.name or site.site, period=period,
                  generated_at=generated_at, buildings=out_buildings,
                  factors=list(factors.values()),
                  completeness=sorted(comp.values(), key=lambda c: c["gateway"]),
                  alerts=[dict(a) for a in alerts
                          if not building or a.get("labels", {}).get("building") == building],
                  notes=notes)


def _quota(site: Site, b: Building, period: ReportPeriod,
           counters: Mapping[tuple[str, str], Sequence[tuple[int, float]]],
           tz: ZoneInfo) -> QuotaFigure:
    """Year-to-date at the period's end against the annual allowance (the rules' math)."""

    q = b.quota
    assert q is not None
    year0 = int(dt.datetime(period.year, 1, 1, tzinfo=tz).timestamp() * 1000)
    ytd = 0.0
    first: int | None = None
    for m in b.meters:
        if not m.building_total:
            continue
        if q.measure == "kWh" and m.energy_type != "electricity":
            continue
        pts = counters.get((m.gateway, m.device), [])
        if pts:
            first = min(first or pts[0][0], pts[0][0])
        ivs = accounting.intervals(pts, rollover_at=m.rollover_at, jitter=m.jitter)
        amount = accounting.consumption(ivs, year0, period.end)
        if q.measure == "kgce":
            kg, _, _ = _kgce(site, m.energy_type, amount, None)
            amount = kg or 0.0
        ytd += amount
    intensity = quota.building_intensity(b)
    if q.ref is not None:
        m2pp = b.floor_area_m2 / b.occupants if b.occupants else None
        correct = q.office_correction is not False
        limit = quota.quota_intensity(
            q.ref, q.level, hours_per_year=b.operating_hours_per_year if correct else None,
            m2_per_person=m2pp if correct else None)
    else:
        limit = Ref(value=intensity, unit=q.quota_unit, source=q.source or "site file",
                    mark="user")
    allowance = quota.annual_allowance(intensity, basis=q.basis, floor_area_m2=b.floor_area_m2,
                                       occupants=b.occupants)
    frac = quota.year_fraction(period.end - 1, tz, q.seasonal_weights)
    st = quota.evaluate_quota(ytd=ytd, allowance=allowance, fraction=frac,
                              min_fraction=q.min_fraction, warn_ratio=q.warn_ratio)
    per = b.floor_area_m2 if q.basis == "area" else max(1, b.occupants)
    data_from = first or period.start
    # readings that start after 1 January understate the year-to-date: no verdict then
    complete = data_from <= year0 + 86_400_000
    return QuotaFigure(q.measure, q.quota_unit, limit, allowance, ytd, ytd / per, st.pro_rated,
                       st.projected, st.projected / per if st.projected is not None else None,
                       frac, st.state if complete else "incomplete", data_from, complete)
