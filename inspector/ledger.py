"""The energy ledger (能源台账) of a month and the annual energy disclosure (能效公示).

Both are views of the report of the same period, never a second computation: every
consumption, kgce, CO2, intensity and quota figure is taken from the
:class:`inspector.report.Report` (which takes it from :mod:`energy.figures`), so the ledger
filed with the authority, the disclosure on the lobby's notice board and the monthly report
cannot disagree. What the report does not hold is added beside it:

- the counter at the period's start and end (起止读数), from the very readings the report's
  consumption was computed from (``fetch_report(..., inputs=)``) by
  :func:`energy.figures.edge_readings`; what a reset, rollover or meter swap added beyond
  end − start is shown as its own column, so the readings and the consumption always add up;
- the manual readings and the corrections of the period, with who entered them, when and why
  (the manual-data layer's ``Store.manual_entries`` / ``Store.corrections``), so an inspector
  sees which figures rest on a hand-read value.

The builders are pure; :func:`fetch_ledger` and :func:`fetch_disclosure` read the store.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from energy import figures
from energy.figures import EdgeReading
from energy.refdata import Ref
from energy.site import Site
from inspector.i18n import DEFAULT_LANG, Lang, gettext_for
from inspector.report import (
    UNITS,
    BuildingReport,
    EnergyLine,
    MeterFigure,
    Note,
    QuotaFigure,
    Report,
    ReportPeriod,
)

Counters = Mapping[tuple[str, str], Sequence[tuple[int, float]]]
KG_PER_T = 1000.0  # kgce → tce, kg CO2 → t CO2


# --------------------------------------------------------------------------- ledger


@dataclass(slots=True)
class LedgerMeter:
    """One meter's line in the ledger: the counter at the period's edges and what it used."""

    meter: str
    gateway: str
    device: str
    energy_type: str
    category: str
    unit: str
    total: bool               # counts in the building total (总表)
    start: EdgeReading | None
    end: EdgeReading | None
    consumption: float        # the report's figure (MeterFigure.amount)
    readings: int
    expected: int
    completeness: float | None
    kinds: dict[str, int] = field(default_factory=dict)  # reset / rollover / replacement …

    @property
    def difference(self) -> float | None:
        """end − start: the consumption when the counter ran through the period unbroken."""
        if self.start is None or self.end is None:
            return None
        return self.end.value - self.start.value

    @property
    def adjustment(self) -> float:
        """What the report counted beyond end − start: a reset, rollover or meter swap inside
        the period (0 for an unbroken counter, up to rounding)."""
        d = self.difference
        return self.consumption - (d if d is not None else 0.0)


@dataclass(frozen=True, slots=True)
class ManualEntry:
    """A reading entered by hand (抄表) or imported: an ordinary reading with its origin."""

    gateway: str
    device: str
    meter: str
    quantity: str
    ts: int
    value: float
    author: str
    note: str
    source: str
    entered_at: int | None


@dataclass(frozen=True, slots=True)
class Correction:
    """A correction of a stored reading: the original stays, the correction is a layer."""

    gateway: str
    device: str
    meter: str
    quantity: str
    ts: int
    value: float
    original: float | None
    author: str
    reason: str
    entered_at: int | None


@dataclass(slots=True)
class BuildingLedger:
    report: BuildingReport     # the report's building: energy lines, kgce, CO2, quota
    meters: list[LedgerMeter]
    manual: list[ManualEntry]
    corrections: list[Correction]

    @property
    def id(self) -> str:
        return self.report.id

    @property
    def name(self) -> str:
        return self.report.name


@dataclass(slots=True)
class Ledger:
    site: str
    site_name: str
    period: ReportPeriod
    generated_at: int
    buildings: list[BuildingLedger]
    factors: list[Ref]
    notes: list[Note]


def _ts(row: Mapping[str, Any]) -> int:
    v = row.get("reading_ts", row.get("ts", row.get("time")))
    return int(v) if v is not None else 0


def _opt_int(v: Any) -> int | None:
    return int(v) if isinstance(v, int | float) else None


def _opt_float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def build_ledger(report: Report, *, site: Site, counters: Counters,
                 manual: Iterable[Mapping[str, Any]] = (),
                 corrections: Iterable[Mapping[str, Any]] = ()) -> Ledger:
    """The ledger of ``report``'s period and buildings.

    Args:
        report: the report of the period (monthly: a month's ledger).
        counters: the readings ``report`` was computed from (``fetch_report(inputs=)``).
        manual: manual readings of the period (``Store.manual_entries`` rows).
        corrections: corrections touching the period (``Store.corrections`` rows).
    """
    p = report.period
    manual_rows = list(manual)
    correction_rows = list(corrections)
    out: list[BuildingLedger] = []
    for b in report.buildings:
        model = site.building(b.id)
        by_key = {(m.gateway, m.device): m for m in model.meters}
        lines: list[LedgerMeter] = []
        for mf in b.meters:
            meter = next(m for m in model.meters if m.id == mf.meter)
            start, end = figures.edge_readings(meter, counters.get((meter.gateway, meter.device),
                                                                   ()), p.start, p.end)
            lines.append(_line(mf, meter.gateway, meter.device, start, end))
        entries = [ManualEntry(str(r.get("gateway", "")), str(r.get("device", "")),
                               by_key[k].id, str(r.get("quantity", "")), _ts(r),
                               float(r.get("value") or 0.0), str(r.get("author") or ""),
                               str(r.get("note") or r.get("reason") or ""),
                               str(r.get("source") or ""), _opt_int(r.get("entered_at")))
                   for r in manual_rows
                   if (k := (str(r.get("gateway", "")), str(r.get("device", "")))) in by_key]
        fixes = [Correction(str(r.get("gateway", "")), str(r.get("device", "")), by_key[k].id,
                            str(r.get("quantity", "")), _ts(r), float(r.get("value") or 0.0),
                            _opt_float(r.get("original")), str(r.get("author") or ""),
                            str(r.get("reason") or r.get("note") or ""),
                            _opt_int(r.get("entered_at")))
                 for r in correction_rows
                 if (k := (str(r.get("gateway", "")), str(r.get("device", "")))) in by_key]
        out.append(BuildingLedger(b, lines, sorted(entries, key=lambda e: (e.ts, e.meter)),
                                  sorted(fixes, key=lambda c: (c.ts, c.meter))))
    return Ledger(report.site, report.site_name, p, report.generated_at, out,
                  list(report.factors), list(report.notes))


def _line(mf: MeterFigure, gateway: str, device: str, start: EdgeReading | None,
          end: EdgeReading | None) -> LedgerMeter:
    return LedgerMeter(mf.meter, gateway, device, mf.energy_type, mf.category,
                       UNITS.get(mf.energy_type, ""), mf.total, start, end, mf.amount,
                       mf.readings, mf.expected, mf.completeness, dict(mf.kinds))


# --------------------------------------------------------------------------- disclosure


@dataclass(slots=True)
class DisclosureBuilding:
    """One building's line of the annual disclosure (能效公示)."""

    id: str
    name: str
    type: str
    floor_area_m2: float
    occupants: int
    energy: list[EnergyLine]          # the report's lines: amount, kgce, CO2 per energy type
    kgce: float
    co2_kg: float
    kgce_per_m2: float
    kwh_per_m2: float | None          # electricity per m² (the kWh quotas compare it)
    kgce_per_capita: float | None     # ``None``: no occupants in the site file
    kwh_per_capita: float | None
    quota: QuotaFigure | None

    @property
    def tce(self) -> float:
        return self.kgce / KG_PER_T

    @property
    def co2_t(self) -> float:
        return self.co2_kg / KG_PER_T

    @property
    def electricity_kwh(self) -> float | None:
        return next((e.amount for e in self.energy if e.energy_type == "electricity"), None)


@dataclass(slots=True)
class Disclosure:
    site: str
    site_name: str
    period: ReportPeriod
    generated_at: int
    buildings: list[DisclosureBuilding]
    factors: list[Ref]
    notes: list[Note]

    @property
    def kgce(self) -> float:
        return sum(b.kgce for b in self.buildings)

    @property
    def co2_kg(self) -> float:
        return sum(b.co2_kg for b in self.buildings)


def build_disclosure(report: Report) -> Disclosure:
    """The disclosure sheet of an annual ``report``: its figures per building, with the
    intensities per m² and per person by :func:`energy.figures.intensity`."""
    if report.period.kind != "year":
        raise ValueError("the energy disclosure is annual: report on a year (2026)")
    rows = []
    for b in report.buildings:
        kwh = next((e.amount for e in b.energy if e.energy_type == "electricity"), None)
        per_cap = b.occupants > 0
        rows.append(DisclosureBuilding(
            b.id, b.name, b.type, b.floor_area_m2, b.occupants, list(b.energy), b.kgce,
            b.co2_kg, b.kgce_per_m2,
            None if kwh is None else figures.intensity(kwh, b.floor_area_m2),
            figures.intensity(b.kgce, b.occupants) if per_cap else None,
            figures.intensity(kwh, b.occupants) if per_cap and kwh is not None else None,
            b.quota))
    return Disclosure(report.site, report.site_name, report.period, report.generated_at, rows,
                      list(report.factors), list(report.notes))


# --------------------------------------------------------------------------- reading


async def fetch_ledger(store: Any, *, site: Site, period: str, building: str | None = None,
                       now_ms: int | None = None) -> tuple[Ledger, Report]:
    """The month's ledger and the report it shows (``period`` a month such as 2026-11).

    The report is :func:`inspector.store.fetch_report`'s, and the edge readings come from
    the counters it read. Manual readings and corrections come from the store's manual-data
    layer when it has one.
    """
    from inspector.store import fetch_report

    if len(period) != 7:
        raise ValueError(f"period {period!r}: a ledger is monthly, write it as 2026-11")
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    inputs: dict[str, Any] = {}
    rep: Report = await fetch_report(store, site=site, period=period, building=building,
                                     now_ms=now, inputs=inputs)
    manual: list[dict[str, Any]] = []
    fixes: list[dict[str, Any]] = []
    get_manual = getattr(store, "manual_entries", None)
    if get_manual is not None:
        manual = list(await get_manual(site.site, rep.period.start, rep.period.end))
    get_fixes = getattr(store, "corrections", None)
    if get_fixes is not None:
        fixes = list(await get_fixes(site.site, rep.period.start, rep.period.end))
    return (build_ledger(rep, site=site, counters=inputs.get("counters", {}), manual=manual,
                         corrections=fixes), rep)


async def fetch_disclosure(store: Any, *, site: Site, year: str, building: str | None = None,
                           now_ms: int | None = None) -> tuple[Disclosure, Report]:
    """The year's disclosure and the annual report it shows."""
    from inspector.store import fetch_report

    if not (len(year) == 4 and year.isdigit()):
        raise ValueError(f"year {year!r}: the disclosure is annual, write it as 2026")
    rep: Report = await fetch_report(store, site=site, period=year, building=building,
                                     now_ms=now_ms)
    return build_disclosure(rep), rep


# --------------------------------------------------------------------------- rendering


def _notes(doc: Ledger | Disclosure, lang: Lang) -> list[str]:
    _ = gettext_for(lang)
    return [_(n.message, **n.params) for n in doc.notes]


def ledger_html(ledger: Ledger, lang: Lang = DEFAULT_LANG) -> str:
    """The ledger as one HTML page (one section per building), in ``lang``."""
    from inspector import render

    return render.render_page("ledger.html.j2", lang, ledger.period.tz, d=ledger,
                              period_text=render.period_text(ledger.period, lang),
                              notes=_notes(ledger, lang))


def disclosure_html(d: Disclosure, lang: Lang = DEFAULT_LANG) -> str:
    """The disclosure sheet as one HTML page, in ``lang``."""
    from inspector import render

    return render.render_page("disclosure.html.j2", lang, d.period.tz, d=d,
                              period_text=render.period_text(d.period, lang),
                              notes=_notes(d, lang))


def ledger_pdf(ledger: Ledger, path: str | Path | None = None,
               lang: Lang = DEFAULT_LANG) -> bytes:
    """The ledger's page as PDF; refuses (``MissingFontError``) without a CJK font."""
    from inspector import render

    render.check_cjk_font()
    return render.html_to_pdf(ledger_html(ledger, lang), path)


def disclosure_pdf(d: Disclosure, path: str | Path | None = None,
                   lang: Lang = DEFAULT_LANG) -> bytes:
    from inspector import render

    render.check_cjk_font()
    return render.html_to_pdf(disclosure_html(d, lang), path)


def _edge(e: EdgeReading | None) -> dict[str, Any] | None:
    return None if e is None else {"ts": e.ts, "value": e.value, "interpolated": e.interpolated}


def ledger_dict(ledger: Ledger, lang: Lang = DEFAULT_LANG) -> dict[str, Any]:
    """The ledger's figures as JSON (codes stay codes; ``period_text`` and notes in ``lang``)."""
    from inspector.render import period_text

    return {
        "lang": lang, "site": ledger.site, "period": ledger.period.label,
        "start": ledger.period.start, "end": ledger.period.end,
        "partial": ledger.period.partial, "period_text": period_text(ledger.period, lang),
        "buildings": [{
            "id": b.id, "name": b.name, "kgce": b.report.kgce, "co2_kg": b.report.co2_kg,
            "energy": [{"energy_type": e.energy_type, "unit": e.unit, "amount": e.amount,
                        "kgce": e.kgce, "co2_kg": e.co2_kg} for e in b.report.energy],
            "meters": [{"meter": m.meter, "gateway": m.gateway, "device": m.device,
                        "energy_type": m.energy_type, "category": m.category, "unit": m.unit,
                        "total": m.total, "start": _edge(m.start), "end": _edge(m.end),
                        "difference": m.difference, "adjustment": m.adjustment,
                        "consumption": m.consumption, "readings": m.readings,
                        "expected": m.expected, "completeness": m.completeness,
                        "kinds": m.kinds} for m in b.meters],
            "manual": [asdict(e) for e in b.manual],
            "corrections": [asdict(c) for c in b.corrections],
        } for b in ledger.buildings],
        "factors": [f.label() for f in ledger.factors],
        "notes": _notes(ledger, lang),
    }


def disclosure_dict(d: Disclosure, lang: Lang = DEFAULT_LANG) -> dict[str, Any]:
    """The disclosure's figures as JSON."""
    from inspector import labels
    from inspector.render import period_text

    _ = gettext_for(lang)
    return {
        "lang": lang, "site": d.site, "year": d.period.label, "start": d.period.start,
        "end": d.period.end, "partial": d.period.partial,
        "period_text": period_text(d.period, lang), "kgce": d.kgce, "co2_kg": d.co2_kg,
        "buildings": [{
            "id": b.id, "name": b.name, "type": b.type, "floor_area_m2": b.floor_area_m2,
            "occupants": b.occupants, "electricity_kwh": b.electricity_kwh, "kgce": b.kgce,
            "tce": b.tce, "co2_kg": b.co2_kg, "co2_t": b.co2_t, "kgce_per_m2": b.kgce_per_m2,
            "kwh_per_m2": b.kwh_per_m2, "kgce_per_capita": b.kgce_per_capita,
            "kwh_per_capita": b.kwh_per_capita,
            "energy": [{"energy_type": e.energy_type, "unit": e.unit, "amount": e.amount,
                        "kgce": e.kgce, "co2_kg": e.co2_kg} for e in b.energy],
            "quota": None if b.quota is None else {
                "measure": b.quota.measure, "limit": b.quota.limit.value,
                "unit": b.quota.intensity_unit, "source": b.quota.limit.label(),
                "ytd_intensity": b.quota.ytd_intensity,
                "projected_intensity": b.quota.projected_intensity, "state": b.quota.state,
                "state_text": _(labels.QUOTA_STATES.get(b.quota.state, b.quota.state))},
        } for b in d.buildings],
        "factors": [f.label() for f in d.factors],
        "notes": _notes(d, lang),
    }
