"""The report, the energy ledger and the disclosure as XLSX workbooks (openpyxl).

An inspector files the PDF and works in the spreadsheet, so the workbook holds the same
figures as the PDF, unrounded (the cell's number format rounds what is shown, the value
stays the report's), and is built for work: times are real date-times in the site's time
zone (Excel has no zones: the zone is named in the header), numbers are numbers with a
number format, units are in the headers, the header row is frozen and columns have
widths. Sheet names and headers are in the reader's language (zh-CN by default).

Text cells are stored as text, never as formulas — the history export's rule
(:func:`inspector.history._xl_row`): a device id or a correction's reason typed as
``=HYPERLINK(…)`` stays the words it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from inspector import labels
from inspector.history import _xl_row
from inspector.i18n import DEFAULT_LANG, Lang, gettext_for
from inspector.ledger import Disclosure, Ledger
from inspector.report import Report

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# number formats by column kind; text and empty cells get none
FORMATS = {"time": "yyyy-mm-dd hh:mm", "day": "yyyy-mm-dd", "month": "yyyy-mm",
           "num": "#,##0.00", "reading": "#,##0.000", "int": "#,##0", "pct": "0.0%",
           "factor": "0.0000####"}
WIDTHS = {"time": 17, "day": 12, "month": 9, "num": 14, "reading": 15, "int": 10, "pct": 10,
          "factor": 12, "text": 16, "wide": 40}


def _local(ts: int | None, tz: str) -> dt.datetime | None:
    """A naive date-time in the site's zone (Excel stores no zone; the header names it)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts / 1000, ZoneInfo(tz)).replace(tzinfo=None)


class _Book:
    """A write-only workbook whose sheets have one header row of (text, kind) columns."""

    def __init__(self) -> None:
        from openpyxl import Workbook

        self.wb = Workbook(write_only=True)

    def sheet(self, title: str, columns: Sequence[tuple[str, str]]) -> _Sheet:
        return _Sheet(self.wb, title, columns)

    def save(self, path: str | Path | IO[bytes]) -> None:
        self.wb.save(str(path) if isinstance(path, Path) else path)


class _Sheet:
    def __init__(self, wb: Any, title: str, columns: Sequence[tuple[str, str]]) -> None:
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.styles import Alignment, Font, PatternFill
        from openpyxl.utils import get_column_letter

        self._cell = WriteOnlyCell
        # Excel refuses these in a sheet name and cuts it at 31 characters
        name = "".join("_" if ch in "[]:*?/\\" else ch for ch in title)[:31]
        self.ws = wb.create_sheet(name)
        self.kinds = [k for _, k in columns]
        self.ws.freeze_panes = "A2"  # the header stays in view
        for i, (head, kind) in enumerate(columns, start=1):
            width = max(WIDTHS.get(kind, 14), min(40, 2 + _display_width(head)))
            self.ws.column_dimensions[get_column_letter(i)].width = width
        bold, fill = Font(bold=True), PatternFill("solid", fgColor="EDF2F7")
        wrap = Alignment(wrap_text=True, vertical="top")
        heads = []
        for head, _ in columns:
            c = WriteOnlyCell(self.ws, value=head)
            c.data_type = "s"
            c.font, c.fill, c.alignment = bold, fill, wrap
            heads.append(c)
        self.ws.append(heads)

    def row(self, values: Sequence[Any]) -> None:
        cells = _xl_row(self.ws, list(values))  # strings as text, never formulas
        out: list[Any] = []
        for v, kind in zip(cells, self.kinds, strict=False):
            fmt = FORMATS.get(kind)
            if fmt is not None and isinstance(v, int | float | dt.datetime | dt.date):
                c = self._cell(self.ws, value=v)
                c.number_format = fmt
                out.append(c)
            else:
                out.append(v)
        self.ws.append(out)


def _display_width(text: str) -> int:
    """Columns a header needs: a CJK character is about two Latin ones wide."""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _about(book: _Book, _: Any, rows: Sequence[tuple[str, Any, str]]) -> None:
    s = book.sheet(_("About"), [(_("item"), "wide"), (_("value"), "time")])
    for key, value, kind in rows:
        cells = _xl_row(s.ws, [key, value])
        fmt = FORMATS.get(kind)
        if fmt is not None and value is not None and not isinstance(value, str):
            c = s._cell(s.ws, value=value)
            c.number_format = fmt
            cells[1] = c
        s.ws.append(cells)


def _factors(book: _Book, _: Any, factors: Sequence[Any]) -> None:
    s = book.sheet(_("Factors"), [(_("value"), "factor"), (_("unit"), "text"),
                                  (_("mark"), "text"), (_("source"), "wide")])
    for f in factors:
        s.row([f.value, f.unit, f.mark, f.source])


def _tz_head(_: Any, text: str, tz: str) -> str:
    return _("%(column)s (%(tz)s)", column=text, tz=tz)


# --------------------------------------------------------------------------- report


def write_report(report: Report, path: str | Path | IO[bytes], lang: Lang = DEFAULT_LANG
                 ) -> None:
    """The report's figures as a workbook: the same numbers as the PDF and the JSON."""
    _ = gettext_for(lang)
    tz = report.period.tz
    book = _Book()
    et = lambda code: _(labels.ENERGY_TYPES.get(code, code))  # noqa: E731
    s = book.sheet(_("Summary"), [
        (_("building"), "text"), (_("building name"), "text"), (_("energy"), "text"),
        (_("amount"), "num"), (_("unit"), "text"), ("kgce", "num"), (_("CO₂ (kg)"), "num"),
        (_("kgce factor"), "factor"), (_("kgce factor unit"), "text"),
        (_("CO₂ factor"), "factor"), (_("CO₂ factor unit"), "text"), (_("remark"), "wide"),
        (_("previous period"), "num"), (_("month-on-month") if report.period.kind == "month"
                                         else _("period-on-period"), "pct"),
        (_("a year before"), "num"), (_("year-on-year"), "pct")])
    for b in report.buildings:
        for e in b.energy:
            compared: list[Any] = []
            for cmp in (b.previous, b.last_year):
                compared += [None, None] if cmp is None else [
                    cmp.amounts.get(e.energy_type), cmp.change(e.energy_type, e.amount)]
            s.row([b.id, b.name, et(e.energy_type), e.amount, e.unit, e.kgce, e.co2_kg,
                   e.kgce_factor.value if e.kgce_factor else None,
                   e.kgce_factor.unit if e.kgce_factor else "",
                   e.co2_factor.value if e.co2_factor else None,
                   e.co2_factor.unit if e.co2_factor else "",
                   _(labels.ENERGY_NOTES[e.note]) if e.note in labels.ENERGY_NOTES else e.note,
                   *compared])
    s = book.sheet(_("Buildings"), [
        (_("building"), "text"), (_("building name"), "text"), (_("building type"), "text"),
        (_("floor area (m²)"), "num"), (_("occupants"), "int"), ("kgce", "num"),
        (_("CO₂ (kg)"), "num"), ("kgce/m²", "num"), (_("quota state"), "text"),
        (_("quota measure"), "text"), (_("quota limit"), "num"), (_("quota unit"), "text"),
        (_("year-to-date"), "num"), (_("pro-rated allowance"), "num"),
        (_("annual allowance"), "num"), (_("projected year-end"), "num"),
        (_("share of the year due"), "pct"), (_("quota source"), "wide")])
    for b in report.buildings:
        q = b.quota
        s.row([b.id, b.name, _(labels.BUILDING_TYPES.get(b.type, b.type)), b.floor_area_m2,
               b.occupants, b.kgce, b.co2_kg, b.kgce_per_m2,
               _(labels.QUOTA_STATES.get(q.state, q.state)) if q else _("no quota set"),
               q.measure if q else "", q.limit.value if q else None,
               q.intensity_unit if q else "", q.ytd if q else None,
               q.pro_rated if q else None, q.allowance if q else None,
               q.projected if q else None, q.fraction if q else None,
               f"[{q.limit.mark}] {q.limit.source}" if q else ""])
    from inspector.render import subitem_costs

    s = book.sheet(_("Sub-items"), [(_("building"), "text"), (_("sub-item code"), "text"),
                                    (_("sub-item"), "text"), (_("electricity (kWh)"), "num"),
                                    (_("energy charge (CNY)"), "num")])
    for b in report.buildings:
        sub_cost = {code: cny for code, _kwh, cny in subitem_costs(b)}
        for code, name, v in b.subitems:
            s.row([b.id, code, _(labels.SUBITEMS.get(code, name)), v, sub_cost.get(code)])
    _cost_sheet(book, _, report)
    monthly = report.period.kind == "month"
    s = book.sheet(_("Per day") if monthly else _("Per month"), [
        (_tz_head(_, _("day") if monthly else _("month"), tz), "day" if monthly else "month"),
        (_("building"), "text"), (_("energy"), "text"), (_("amount"), "num"),
        (_("unit"), "text")])
    for b in report.buildings:
        for day, by_type in b.daily.items():
            for e in b.energy:
                if e.energy_type in by_type:
                    s.row([_local(day, tz), b.id, et(e.energy_type), by_type[e.energy_type],
                           e.unit])
    s = book.sheet(_("Meters"), [
        (_("building"), "text"), (_("meter"), "text"), (_("energy"), "text"),
        (_("sub-item code"), "text"), (_("category"), "text"), (_("building total"), "text"),
        (_("amount"), "num"), (_("unit"), "text"), (_("readings"), "int"),
        (_("expected"), "int"), (_("completeness"), "pct")])
    from inspector.report import UNITS

    for b in report.buildings:
        for m in b.meters:
            s.row([b.id, m.meter, et(m.energy_type), m.category,
                   _(labels.CATEGORIES[m.category]) if m.category in labels.CATEGORIES else "",
                   _("yes") if m.total else _("no"), m.amount, UNITS.get(m.energy_type, ""),
                   m.readings, m.expected, m.completeness])
    s = book.sheet(_("Completeness"), [
        (_("gateway"), "text"), (_("days"), "int"), (_("expected"), "int"),
        (_("received"), "int"), (_("missing"), "int"), (_("duplicates"), "int"),
        (_("completeness"), "pct")])
    for c in report.completeness:
        s.row([c["gateway"], c["days"], c["expected"], c["received"], c["gaps"],
               c["duplicates"], c["ratio"]])
    s = book.sheet(_("Alerts"), [
        (_tz_head(_, _("since"), tz), "time"), (_("rule"), "text"), (_("severity"), "text"),
        (_("building"), "text"), (_("device"), "text"), (_("state"), "text"),
        (_tz_head(_, _("resolved"), tz), "time"), (_("acknowledged"), "text"),
        (_("summary"), "wide")])
    for a in report.alerts:
        lab = a.get("labels") or {}
        s.row([_local(a.get("since"), tz), _(labels.RULES.get(a["rule"], a["rule"])),
               _(labels.SEVERITIES.get(a.get("severity", ""), a.get("severity", ""))),
               lab.get("building", ""), lab.get("device", "") or lab.get("boiler", ""),
               _(labels.ALERT_STATES.get(a.get("state", ""), a.get("state", ""))),
               _local(a.get("resolved_at"), tz), a.get("acked_by") or "", a.get("summary", "")])
    _factors(book, _, report.factors)
    from inspector.render import notes_text, period_text

    _about(book, _, [
        (_("site"), report.site, "text"), (_("site name"), report.site_name, "text"),
        (_("period"), period_text(report.period, lang), "text"),
        (_tz_head(_, _("from"), tz), _local(report.period.start, tz), "time"),
        (_tz_head(_, _("to (exclusive)"), tz), _local(report.period.end, tz), "time"),
        (_("time zone"), tz, "text"),
        (_tz_head(_, _("generated"), tz), _local(report.generated_at, tz), "time"),
        (_("total energy (kgce)"), report.kgce, "num"), (_("CO₂ (kg)"), report.co2_kg, "num"),
        *((_("note"), n, "text") for n in notes_text(report, lang))])
    book.save(path)


def _cost_sheet(book: _Book, _: Any, report: Report) -> None:
    """The report's cost (``BuildingReport.cost``, from ``energy.figures.building_cost``):
    per building and energy type one row per band and price list, then the energy charge,
    the demand or capacity charge with the maximum demand, and the total; CNY and amounts
    unrounded, the tariff's source and mark on every row (a row filtered out of context
    still says where its price came from)."""
    from inspector.report import UNITS

    s = book.sheet(_("Cost"), [
        (_("building"), "text"), (_("building name"), "text"), (_("energy"), "text"),
        (_("item"), "text"), (_("band"), "text"), (_("prices valid from"), "day"),
        (_("amount"), "num"), (_("unit"), "text"), (_("price (CNY per unit)"), "factor"),
        (_("cost (CNY)"), "num"), (_("maximum demand (kW)"), "num"), (_("tariff"), "text"),
        (_("mark"), "text"), (_("source"), "wide")])
    for b in report.buildings:
        for et, c in b.cost.items():
            unit = UNITS.get(et, "")
            head = [b.id, b.name, _(labels.ENERGY_TYPES.get(et, et))]
            cite = [c.tariff, c.mark, c.source]
            for ln in c.lines:
                band = _(labels.TARIFF_BANDS.get(ln.band, ln.band))
                s.row([*head, band, ln.band, ln.valid_from, ln.amount, unit, ln.price, ln.cost,
                       None, *cite])
            charge = _("energy charge") if et == "electricity" else _("charge for the amount used")
            s.row([*head, charge, "", None, sum(ln.amount for ln in c.lines), unit,
                   None, c.energy_cost, None, *cite])
            if c.unpriced:
                s.row([*head, _("no price valid"), "", None, c.unpriced, unit, None, None, None,
                       *cite])
            if c.demand_kw is not None or c.demand_cost:
                s.row([*head, _("demand or capacity charge (基本电费)"), "", None, None, "", None,
                       c.demand_cost, c.demand_kw, *cite])
            s.row([*head, _("total"), "", None, None, "", None, c.total, None, *cite])


# --------------------------------------------------------------------------- ledger


def write_ledger(ledger: Ledger, path: str | Path | IO[bytes], lang: Lang = DEFAULT_LANG
                 ) -> None:
    """The month's ledger: meters with their readings at the period's edges, consumption,
    the report's energy lines, manual readings and corrections."""
    _ = gettext_for(lang)
    tz = ledger.period.tz
    et = lambda code: _(labels.ENERGY_TYPES.get(code, code))  # noqa: E731
    book = _Book()
    s = book.sheet(_("Ledger"), [
        (_("building"), "text"), (_("meter"), "text"), (_("gateway"), "text"),
        (_("device"), "text"), (_("energy"), "text"), (_("sub-item code"), "text"),
        (_("building total"), "text"), (_tz_head(_, _("start reading time"), tz), "time"),
        (_("start reading"), "reading"), (_tz_head(_, _("end reading time"), tz), "time"),
        (_("end reading"), "reading"), (_("end − start"), "reading"),
        (_("reset, rollover or swap"), "reading"), (_("consumption"), "num"),
        (_("unit"), "text"), (_("readings"), "int"), (_("completeness"), "pct"),
        (_("remark"), "wide")])
    for b in ledger.buildings:
        for m in b.meters:
            s.row([b.id, m.meter, m.gateway, m.device, et(m.energy_type), m.category,
                   _("yes") if m.total else _("no"),
                   _local(m.start.ts, tz) if m.start else None,
                   m.start.value if m.start else None,
                   _local(m.end.ts, tz) if m.end else None, m.end.value if m.end else None,
                   m.difference, m.adjustment, m.consumption, m.unit, m.readings,
                   m.completeness, _meter_remark(_, m)])
    s = book.sheet(_("Energy"), [
        (_("building"), "text"), (_("building name"), "text"), (_("energy"), "text"),
        (_("amount"), "num"), (_("unit"), "text"), ("kgce", "num"), (_("CO₂ (kg)"), "num")])
    for b in ledger.buildings:
        for e in b.report.energy:
            s.row([b.id, b.name, et(e.energy_type), e.amount, e.unit, e.kgce, e.co2_kg])
        s.row([b.id, b.name, _("total"), None, "", b.report.kgce, b.report.co2_kg])
    s = book.sheet(_("Manual readings"), [
        (_("building"), "text"), (_("meter"), "text"), (_("quantity"), "text"),
        (_tz_head(_, _("reading time"), tz), "time"), (_("value"), "reading"),
        (_("entered by"), "text"), (_tz_head(_, _("entered at"), tz), "time"),
        (_("source"), "text"), (_("note"), "wide")])
    for b in ledger.buildings:
        for me in b.manual:
            s.row([b.id, me.meter, me.quantity, _local(me.ts, tz), me.value, me.author,
                   _local(me.entered_at, tz), me.source, me.note])
    s = book.sheet(_("Corrections"), [
        (_("building"), "text"), (_("meter"), "text"), (_("quantity"), "text"),
        (_tz_head(_, _("reading time"), tz), "time"), (_("original value"), "reading"),
        (_("corrected value"), "reading"), (_("corrected by"), "text"),
        (_tz_head(_, _("entered at"), tz), "time"), (_("reason"), "wide")])
    for b in ledger.buildings:
        for c in b.corrections:
            s.row([b.id, c.meter, c.quantity, _local(c.ts, tz), c.original, c.value, c.author,
                   _local(c.entered_at, tz), c.reason])
    _factors(book, _, ledger.factors)
    _about(book, _, _period_about(_, ledger, lang))
    book.save(path)


def _meter_remark(_: Any, m: Any) -> str:
    parts = []
    if m.start is None:
        parts.append(_("no reading in the period"))
    elif m.start.interpolated or (m.end is not None and m.end.interpolated):
        parts.append(_("an edge reading is pro-rated between the readings around it"))
    for kind, n in sorted(m.kinds.items()):
        parts.append(_("%(count)s interval(s) of kind “%(kind)s”", count=n, kind=kind))
    return "; ".join(parts)


def _period_about(_: Any, doc: Any, lang: Lang) -> list[tuple[str, Any, str]]:
    from inspector.render import period_text

    tz = doc.period.tz
    return [(_("site"), doc.site, "text"), (_("site name"), doc.site_name, "text"),
            (_("period"), period_text(doc.period, lang), "text"),
            (_tz_head(_, _("from"), tz), _local(doc.period.start, tz), "time"),
            (_tz_head(_, _("to (exclusive)"), tz), _local(doc.period.end, tz), "time"),
            (_("time zone"), tz, "text"),
            (_tz_head(_, _("generated"), tz), _local(doc.generated_at, tz), "time"),
            *((_("note"), _(n.message, **n.params), "text") for n in doc.notes)]


# --------------------------------------------------------------------------- disclosure


def write_disclosure(d: Disclosure, path: str | Path | IO[bytes], lang: Lang = DEFAULT_LANG
                     ) -> None:
    """The annual disclosure: per building tce, CO₂, intensities and the quota."""
    _ = gettext_for(lang)
    et = lambda code: _(labels.ENERGY_TYPES.get(code, code))  # noqa: E731
    book = _Book()
    s = book.sheet(_("Disclosure"), [
        (_("building"), "text"), (_("building name"), "text"), (_("building type"), "text"),
        (_("floor area (m²)"), "num"), (_("occupants"), "int"),
        (_("electricity (kWh)"), "num"), (_("total energy (tce)"), "num"),
        (_("CO₂ (t)"), "num"), ("kgce/m²", "num"), ("kWh/m²", "num"),
        (_("kgce per person"), "num"), (_("kWh per person"), "num"),
        (_("quota limit"), "num"), (_("quota unit"), "text"),
        (_("year-to-date intensity"), "num"), (_("projected intensity"), "num"),
        (_("quota state"), "text"), (_("quota source"), "wide")])
    for b in d.buildings:
        q = b.quota
        s.row([b.id, b.name, _(labels.BUILDING_TYPES.get(b.type, b.type)), b.floor_area_m2,
               b.occupants, b.electricity_kwh, b.tce, b.co2_t, b.kgce_per_m2, b.kwh_per_m2,
               b.kgce_per_capita, b.kwh_per_capita, q.limit.value if q else None,
               q.intensity_unit if q else "", q.ytd_intensity if q else None,
               q.projected_intensity if q else None,
               _(labels.QUOTA_STATES.get(q.state, q.state)) if q else _("no quota set"),
               f"[{q.limit.mark}] {q.limit.source}" if q else ""])
    s = book.sheet(_("Energy"), [
        (_("building"), "text"), (_("energy"), "text"), (_("amount"), "num"),
        (_("unit"), "text"), ("kgce", "num"), (_("CO₂ (kg)"), "num")])
    for b in d.buildings:
        for e in b.energy:
            s.row([b.id, et(e.energy_type), e.amount, e.unit, e.kgce, e.co2_kg])
    _factors(book, _, d.factors)
    _about(book, _, _period_about(_, d, lang))
    book.save(path)
