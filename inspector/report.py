"""The monthly or annual energy report: figures only, no I/O, no layout.

Every figure comes from the energy domain (:mod:`energy.figures` over
:mod:`energy.accounting` and :mod:`energy.quota`), the functions the rule engine
uses, so a report can never disagree with the alert that sent the inspector to
it, and every factor arrives with its source and confidence mark, which the
report prints beside the number it produced. A period still running is cut at
*now* and labelled partial (``inspector.render.period_text``: "12月1日至2日（本月尚未结束）"):
its quota is evaluated at now, as the rule engine does, and its completeness owes no
future readings.

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

from energy import accounting, balance, figures, tariff
from energy.balance import DEFAULT_MAX_SHARE, DEFAULT_MIN_KWH, Balance
from energy.refdata import Ref
from energy.site import Building, Meter, Site
from inspector.i18n import N_
from inspector.labels import SUBITEMS

Period = Literal["month", "year"]
# msgids (English); the reader sees them in the report's language (inspector.labels)
SUBITEM_NAMES = {code: name for code, name in SUBITEMS.items() if code}
UNITS = {"electricity": "kWh", "water": "m³", "gas": "m³", "heat": "GJ", "cooling": "GJ",
         "steam": "t"}


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    kind: Period
    label: str  # "2026-10" or "2026"
    start: int
    end: int  # min(end of the calendar period, now): the report covers [start, end)
    tz: str
    full_end: int = 0  # end of the calendar period (0: same as ``end``)

    @property
    def year(self) -> int:
        return int(self.label[:4])

    @property
    def partial(self) -> bool:
        """The period had not ended when the report was made (``end`` is then)."""
        return self.end < self.full_end


@dataclass(frozen=True, slots=True)
class Note:
    """A remark for the reader: a catalog msgid with named placeholders, translated when
    the report is rendered (the report itself holds no language)."""

    message: str
    params: dict[str, Any] = field(default_factory=dict)


def as_of(period: ReportPeriod, now_ms: int) -> ReportPeriod:
    """The period as far as it has happened at ``now_ms`` (``energy.figures.clamp``).

    Raises ``ValueError`` for a period that has not begun.
    """
    span = figures.clamp(period.start, period.full_end or period.end, now_ms)
    return ReportPeriod(period.kind, period.label, span.start, span.end, period.tz,
                        span.full_end)


def period_of(label: str, tz: str) -> ReportPeriod:
    """``"2026-10"`` (a month) or ``"2026"`` (a year) in the site's time zone, uncut
    (see :func:`as_of` for one that has not ended)."""
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
    end = int(e.timestamp() * 1000)
    return ReportPeriod(kind, label, int(s.timestamp() * 1000), end, tz, end)


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
        return figures.Completeness(self.readings, self.expected).ratio


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
    # sub-meter balance (分项计量平衡) of each completed site-day: Σ sub-items vs the mains
    balance: list[Balance] = field(default_factory=list)
    balance_max_share: float = DEFAULT_MAX_SHARE
    # energy type → its cost on the building's tariff (energy.figures.building_cost)
    cost: dict[str, tariff.CostBreakdown] = field(default_factory=dict)
    # sub-item code → its electricity energy charge (energy.figures.subitem_cost)
    subitem_cost: dict[str, tariff.CostBreakdown] = field(default_factory=dict)
    # the same building in the previous period (环比) and a year before (同比); None when
    # that period has no readings (or, for ``previous``, a year report: it is ``last_year``)
    previous: Comparison | None = None
    last_year: Comparison | None = None


@dataclass(frozen=True, slots=True)
class Comparison:
    """A building's figures in an earlier period, for 环比 (``previous``) and 同比
    (``last_year``): the same functions over that period's readings, as long a span as the
    report's (a month that has not ended is compared with as many days of the other)."""

    label: str
    start: int
    end: int
    amounts: dict[str, float]  # energy type → amount
    kgce: float

    def change(self, energy_type: str, current: float) -> float | None:
        return figures.change(current, self.amounts.get(energy_type))


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
    notes: list[Note]

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


def is_subitem_meter(m: Meter) -> bool:
    """A meter the report lists as an electricity sub-item (分项) of its building: not a
    building total, electricity, a first-level sub-item code (the energy view sums alike)."""
    return not m.building_total and m.energy_type == "electricity" and m.category in SUBITEM_NAMES


def subitem_lines(sub: Mapping[str, float], electricity: float | None
                  ) -> list[tuple[str, str, float]]:
    """(code, name, kWh) of each sub-item in code order and, when the building has an
    electricity total, the "not sub-metered" rest last (:func:`energy.figures.not_submetered`):
    the report's table and each bar of the console's energy view."""
    lines = [(code, SUBITEM_NAMES[code], sub[code]) for code in sorted(sub)]
    if lines and electricity is not None:
        lines.append(("", SUBITEMS[""],
                      figures.not_submetered(electricity, (v for _, _, v in lines))))
    return lines


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
    cost_counters: Mapping[tuple[str, str], Sequence[tuple[int, float]]] | None = None,
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
        cost_counters: finer readings of the meters on a time-of-use tariff, for their band
            split (a year's daily readings cannot say which band a day's energy fell in);
            ``None``: ``counters`` are fine enough (a month).
    """
    tz = ZoneInfo(site.timezone)
    factors: dict[str, Ref] = {}
    notes: list[Note] = []
    out_buildings: list[BuildingReport] = []
    for b in site.buildings:
        if building and b.id != building:
            continue
        meters: list[MeterFigure] = []
        per_type: dict[str, float] = {}
        daily: dict[int, dict[str, float]] = {}
        sub: dict[str, float] = {}
        by_meter_day: dict[str, dict[int, float]] = {}
        total_ivs: dict[str, list[accounting.Interval]] = {}  # energy type → building totals
        sub_ivs: dict[str, list[accounting.Interval]] = {}  # sub-item code → its meters
        for m in b.meters:
            pts = counters.get((m.gateway, m.device), [])
            ivs = figures.meter_intervals(m, pts)
            fine = None if cost_counters is None else cost_counters.get((m.gateway, m.device))
            civs = ivs if fine is None else figures.meter_intervals(m, fine)  # for the cost
            if m.building_total:
                total_ivs.setdefault(m.energy_type, []).extend(civs)
            amount = accounting.consumption(ivs, period.start, period.end)
            kinds: dict[str, int] = {}
            for iv in ivs:
                if iv.kind != "normal" and period.start <= iv.end and iv.start < period.end:
                    kinds[iv.kind] = kinds.get(iv.kind, 0) + 1
            mc = figures.meter_completeness((reading_counts or {}).get((m.gateway, m.device), 0),
                                            period.start, period.end, m.poll_interval_s)
            meters.append(MeterFigure(m.id, b.id, m.energy_type, m.category, m.building_total,
                                      amount, mc.received, mc.expected, kinds))
            for k, c in kinds.items():
                notes.append(Note(N_("%(building)s/%(meter)s: %(count)s interval(s) of kind "
                                     "“%(kind)s” in the period"),
                                  {"building": b.id, "meter": m.id, "count": c, "kind": k}))
            if not pts:
                notes.append(Note(N_("%(building)s/%(meter)s: no readings in the period"),
                                  {"building": b.id, "meter": m.id}))
            days: dict[int, float] | None = None  # the meter's days, rolled up once
            if m.energy_type == "electricity":
                days = accounting.rollup(ivs, "day", tz)
                by_meter_day[m.id] = {
                    day: v for day, v in days.items()
                    if period.start <= day and accounting.next_bucket(day, "day", tz)
                    <= period.end}  # completed days only, as the rule engine judges
            if m.building_total:
                per_type[m.energy_type] = per_type.get(m.energy_type, 0.0) + amount
                size: accounting.BucketSize = "day" if period.kind == "month" else "month"
                buckets = (days if days is not None and size == "day"
                           else accounting.rollup(ivs, size, tz))
                for day, v in buckets.items():
                    if period.start <= day < period.end:
                        slot = daily.setdefault(day, {})
                        slot[m.energy_type] = slot.get(m.energy_type, 0.0) + v
            elif is_subitem_meter(m):
                sub[m.category] = sub.get(m.category, 0.0) + amount
                sub_ivs.setdefault(m.category, []).extend(civs)
        energy: list[EnergyLine] = []
        for et in sorted(per_type):
            amount = per_type[et]
            kconv, note = figures.to_kgce(site, b, et, amount)
            cconv = figures.to_co2(site, et, amount, period.year)
            kg, kref = (kconv.value, kconv.factor) if kconv is not None else (None, None)
            co2, cref = (cconv.value, cconv.factor) if cconv is not None else (None, None)
            for ref in (kref, cref):
                if ref is not None:
                    factors[ref.label()] = ref
            energy.append(EnergyLine(et, UNITS.get(et, ""), amount, kg, co2, kref, cref, note))
        subitems = subitem_lines(sub, per_type.get("electricity"))
        kgce = sum(e.kgce or 0.0 for e in energy)
        co2 = sum(e.co2_kg or 0.0 for e in energy)
        qf = None
        if b.quota is not None:
            qf = _quota(site, b, period, ytd_counters if ytd_counters is not None else counters,
                        tz)
            factors[qf.limit.label()] = qf.limit
        # cost per energy type on the building's tariff; the demand charge only for a whole
        # billing month (a month still running shows its energy charge so far)
        months = 1.0 if period.kind == "month" and not period.partial else 0.0
        costs: dict[str, tariff.CostBreakdown] = {}
        for et, tivs in sorted(total_ivs.items()):
            bc = figures.building_cost(site, b, et, tivs, period.start, period.end,
                                       billing_months=months)
            if bc is not None:
                costs[et] = bc
        sub_costs: dict[str, tariff.CostBreakdown] = {}
        for code, sivs in sorted(sub_ivs.items()):
            sc = figures.subitem_cost(site, b, "electricity", sivs, period.start, period.end)
            if sc is not None:
                sub_costs[code] = sc
        out_buildings.append(BuildingReport(
            b.id, b.name or b.id, b.type, b.floor_area_m2, b.occupants, energy, subitems, kgce,
            co2, figures.intensity(kgce, b.floor_area_m2), dict(sorted(daily.items())), qf,
            meters, balance.evaluate_days(by_meter_day, balance.topology(b.meters),
                                          max_share=DEFAULT_MAX_SHARE,
                                          min_amount=DEFAULT_MIN_KWH), cost=costs,
            subitem_cost=sub_costs))
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
    for g in comp.values():
        g["ratio"] = figures.batch_completeness(g["received"], g["expected"]).ratio
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
    """The quota at the report's end — min(period end, now), the moment the rule engine
    evaluates a running period at — from 1 January's readings (``energy.figures``)."""
    q = b.quota
    assert q is not None
    year0 = figures.year_start(period.end, tz)
    amounts = []
    first: int | None = None
    for m in b.meters:
        pts = counters.get((m.gateway, m.device), [])
        if m.building_total and pts and (q.measure == "kgce" or m.energy_type == "electricity"):
            first = min(first or pts[0][0], pts[0][0])
        ivs = figures.meter_intervals(m, pts)
        amounts.append((m, accounting.consumption(ivs, year0, period.end)))
    ytd = figures.quota_ytd(site, b, amounts)
    at = figures.quota_at(b, ytd=ytd, at_ms=period.end, tz=tz)
    st = at.status
    data_from = first or period.start
    # readings that start after 1 January understate the year-to-date: no verdict then
    complete = data_from <= year0 + 86_400_000
    return QuotaFigure(q.measure, q.quota_unit, at.limit, st.allowance, ytd, at.ytd_intensity,
                       st.pro_rated, st.projected, at.projected_intensity, st.fraction,
                       st.state if complete else "incomplete", data_from, complete)
