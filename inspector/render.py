"""A report as HTML (Jinja2, inline SVG charts) and as PDF (WeasyPrint renders the same HTML).

One layout for both, so the PDF filed with the authority and the page the
inspector opened cannot differ. The language is chosen when rendering (zh-CN by
default, English as the alternative; :mod:`inspector.i18n`): the template's
sentences come from the gettext catalog, numbers and dates from Babel.

Fonts: the page asks for Noto Sans CJK (Debian ``fonts-noto-cjk``) so the Chinese
text prints; WeasyPrint embeds only the glyphs used, which keeps a month's PDF
small. Without any CJK font WeasyPrint would silently print every Chinese
character as a box and exit 0, so :func:`render_pdf` first asks fontconfig for a
font covering Chinese and refuses (:class:`MissingFontError`) when there is none.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from enmon.errors import EnmonError
from inspector import alerts as al
from inspector import charts, labels
from inspector.i18n import (
    DEFAULT_LANG,
    Lang,
    fmt_change,
    fmt_datetime,
    fmt_days,
    fmt_month,
    fmt_number,
    fmt_percent,
    gettext_for,
    ngettext_for,
)
from inspector.report import Report, ReportPeriod

TEMPLATES = Path(__file__).parent / "templates"
CJK_FONT_PACKAGE = "fonts-noto-cjk"


class MissingFontError(EnmonError):
    """No font covering Chinese is installed: a PDF would print every Chinese character
    as a box."""


def check_cjk_font() -> str:
    """The family fontconfig (which WeasyPrint's Pango uses) picks for Chinese text.

    Raises :class:`MissingFontError` naming the Debian package to install when no
    installed font covers Chinese: ``fc-list :lang=zh`` lists none. fontconfig's own
    environment (``FONTCONFIG_FILE``) is honoured, as WeasyPrint honours it.
    """
    fc_list = shutil.which("fc-list")
    hint = (f"no font with Chinese glyphs is installed, so the PDF would print Chinese as "
            f"boxes; install one: apt-get install {CJK_FONT_PACKAGE}")
    if fc_list is None:
        raise MissingFontError(f"fontconfig's fc-list is missing and {hint} fontconfig")
    out = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    families = sorted({line.split(",")[0].strip() for line in out.splitlines() if line.strip()})
    if not families:
        raise MissingFontError(hint)
    preferred = [f for f in families if f.startswith("Noto Sans CJK SC")]
    return (preferred or families)[0]


def _local(ts: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts / 1000, ZoneInfo(tz)).strftime(fmt)


def period_text(period: ReportPeriod, lang: Lang = DEFAULT_LANG) -> str:
    """What the reader sees: ``2026年10月`` / ``October 2026``, or while it runs
    ``12月1日至2日（本月尚未结束）`` / ``1 – 2 Dec, partial month``."""
    _ = gettext_for(lang)
    if not period.partial:
        return fmt_month(period.start, period.tz, lang, "y" if period.kind == "year" else "yMMMM")
    days = fmt_days(period.start, period.end - 1, period.tz, lang)
    if period.kind == "year":
        return _("%(days)s, partial year", days=days)
    return _("%(days)s, partial month", days=days)


def _charts(report: Report, lang: Lang) -> dict[str, dict[str, str]]:
    _ = gettext_for(lang)
    tz = report.period.tz
    day_fmt = "%d" if report.period.kind == "month" else "%m"
    out: dict[str, dict[str, str]] = {}
    for b in report.buildings:
        c: dict[str, str] = {}
        for i, e in enumerate(b.energy):
            bars = [(_local(day, tz, day_fmt), v.get(e.energy_type, 0.0))
                    for day, v in b.daily.items()]
            if bars:
                name = _(labels.ENERGY_TYPES.get(e.energy_type, e.energy_type))
                title = (_("%(energy)s per day (%(unit)s)", energy=name, unit=e.unit)
                         if report.period.kind == "month" else
                         _("%(energy)s per month (%(unit)s)", energy=name, unit=e.unit))
                c[f"daily_{e.energy_type}"] = charts.bar_chart(
                    bars, unit=e.unit, title=title,
                    color=charts.PALETTE[i % len(charts.PALETTE)],
                    label_every=2 if len(bars) > 16 else 1)
        if b.subitems:
            c["subitems"] = charts.hbar_chart(
                [(_(labels.SUBITEMS.get(code, name)), v) for code, name, v in b.subitems],
                unit="kWh", title=_("electricity by sub-item (kWh)"))
        if b.quota is not None:
            q = b.quota
            num = lambda v: fmt_number(v, lang)  # noqa: E731
            c["quota"] = charts.quota_chart(
                ytd=q.ytd, pro_rated=q.pro_rated, allowance=q.allowance, projected=q.projected,
                unit=q.measure, labels={
                    "title": _("quota"),
                    "pro_rated": _("pro-rated %(value)s", value=num(q.pro_rated)),
                    "allowance": _("annual allowance %(value)s %(unit)s",
                                   value=num(q.allowance), unit=q.measure),
                    "ytd": _("year-to-date %(value)s", value=num(q.ytd)),
                    "projected": "" if q.projected is None else _(
                        "projected %(value)s", value=num(q.projected))})
        out[b.id] = c
    return out


def _environment(lang: Lang, tz: str) -> Any:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(["html", "j2"]),
                      extensions=["jinja2.ext.i18n"])
    env.policies["ext.i18n.trimmed"] = True  # a sentence over several lines is one msgid
    # added by the i18n extension, unknown to the type stubs
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext_for(lang), ngettext_for(lang), newstyle=True)
    env.filters["num"] = lambda v: fmt_number(None if v is None else float(v), lang)
    env.filters["pct"] = lambda v: fmt_percent(None if v is None else float(v), lang)
    env.filters["change"] = lambda v: fmt_change(None if v is None else float(v), lang)
    env.filters["local"] = lambda ts: fmt_datetime(ts, tz, lang)
    env.filters["cny"] = lambda v: fmt_money(v, lang)
    env.filters["price"] = lambda v: fmt_money(v, lang, "#,##0.0000")
    return env


def fmt_money(value: float | None, lang: Lang, pattern: str = "#,##0.00") -> str:
    """CNY as a bill prints it: to the fen (分), prices to four decimals, as tariffs list
    them; ``–`` for a cost no price covers (never 0)."""
    from babel.numbers import format_decimal

    from inspector.i18n import babel_locale

    if value is None:
        return "–"
    return format_decimal(value, format=pattern, locale=babel_locale(lang))


def _page_footer(lang: Lang) -> str:
    """The CSS ``content`` of the page footer: the catalog's whole sentence, its
    placeholders turned into the page counters (``"第 " counter(page) " 页…"``)."""
    _ = gettext_for(lang)
    text = _("page %(page)s of %(pages)s", page="\x00page\x00", pages="\x00pages\x00")
    quoted = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("<", "\\3c ") + '"'
    return (quoted.replace("\x00pages\x00", '" counter(pages) "')
            .replace("\x00page\x00", '" counter(page) "'))


def render_html(report: Report, lang: Lang = DEFAULT_LANG) -> str:
    """The report as one self-contained HTML page in ``lang``."""
    from inspector.report import UNITS

    tmpl = _environment(lang, report.period.tz).get_template("report.html.j2")
    # the alerts' summaries in the reader's language (inspector.alerts.localized)
    shown = replace(report, alerts=al.localized(report.alerts, lang, lambda _s: report.period.tz))
    return tmpl.render(r=shown, charts=_charts(report, lang), lang=lang,
                       page_footer=_page_footer(lang),
                       period_text=period_text(report.period, lang),
                       totals=report.totals_by_type(), units=UNITS, labels=labels,
                       notes=notes_text(report, lang), costs=cost_view(report, lang),
                       cost_total=cost_total(report))


def notes_text(report: Report, lang: Lang = DEFAULT_LANG) -> list[str]:
    _ = gettext_for(lang)
    return [_(n.message, **n.params) for n in report.notes]


def render_pdf(report: Report, path: str | Path | None = None,
               lang: Lang = DEFAULT_LANG) -> bytes:
    """The same HTML as PDF (written to ``path`` when given).

    Raises :class:`MissingFontError` (before any work) when no CJK font is installed.
    """
    check_cjk_font()
    return html_to_pdf(render_html(report, lang), path)


def html_to_pdf(html: str, path: str | Path | None = None) -> bytes:
    """Any of the inspector's pages (report, ledger, disclosure) as PDF, written to ``path``
    when given. Raises :class:`MissingFontError` (before any work) without a CJK font."""
    import logging

    check_cjk_font()
    # WeasyPrint logs every CSS property it ignores and every step (even while importing, for
    # its own stylesheets); an operator needs none of it
    for name in ("weasyprint", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML

    data: bytes = HTML(string=html).write_pdf()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def render_page(template: str, lang: Lang, tz: str, **context: Any) -> str:
    """A template of ``inspector/templates`` in ``lang`` with the report's filters (``num``,
    ``pct``, ``local``), its page footer and the labels, for pages beside the report."""
    tmpl = _environment(lang, tz).get_template(template)
    return str(tmpl.render(lang=lang, page_footer=_page_footer(lang), labels=labels, **context))


def _cost_dict(c: Any, lang: Lang) -> dict[str, Any]:
    """A :class:`energy.tariff.CostBreakdown` as the report's JSON carries it (CNY)."""
    _ = gettext_for(lang)
    return {"tariff": c.tariff, "source": c.source, "mark": c.mark, "currency": "CNY",
            "lines": [{"band": ln.band,
                       "band_text": _(labels.TARIFF_BANDS.get(ln.band, ln.band)),
                       "valid_from": ln.valid_from.isoformat() if ln.valid_from else None,
                       "amount": ln.amount, "price": ln.price, "cost": ln.cost}
                      for ln in c.lines],
            "energy_cost": c.energy_cost, "demand_kw": c.demand_kw,
            "demand_cost": c.demand_cost, "total": c.total, "unpriced": c.unpriced}


def subitem_costs(b: Any) -> list[tuple[str, float, float | None]]:
    """A building's sub-items (分项) as (code, kWh, CNY): each sub-item's energy charge
    (``energy.figures.subitem_cost``, in the report) and, for "not sub-metered", the
    building's energy charge less the sub-items' (``energy.figures.not_submetered``), so
    the rows add up to the electricity energy charge. Empty without a tariff."""
    from energy import figures

    elec = b.cost.get("electricity")
    if elec is None or not b.subitem_cost:
        return []
    out: list[tuple[str, float, float | None]] = []
    for code, _name, kwh in b.subitems:
        if code:
            sc = b.subitem_cost.get(code)
            out.append((code, kwh, sc.energy_cost if sc is not None else None))
        else:
            out.append((code, kwh, figures.not_submetered(
                elec.energy_cost, (c.energy_cost for c in b.subitem_cost.values()))))
    return out


def cost_total(report: Report) -> float | None:
    """The report's cost over all buildings and energy types (``None``: no tariff set)."""
    totals = [c.total for b in report.buildings for c in b.cost.values()]
    return sum(totals) if totals else None


def cost_view(report: Report, lang: Lang = DEFAULT_LANG) -> dict[str, dict[str, Any]]:
    """Per building the cost as the page shows it: per energy type the breakdown in the
    JSON's form (:func:`_cost_dict`, band names translated) and the sub-item rows."""
    _ = gettext_for(lang)
    from inspector.report import UNITS

    out: dict[str, dict[str, Any]] = {}
    for b in report.buildings:
        types = []
        for et, c in b.cost.items():
            d = _cost_dict(c, lang)
            d["energy_type"], d["unit"] = et, UNITS.get(et, "")
            types.append(d)
        subs = [{"code": code, "name": _(labels.SUBITEMS.get(code, code)), "kwh": kwh,
                 "cost": cny} for code, kwh, cny in subitem_costs(b)]
        out[b.id] = {"types": types, "subitems": subs}
    return out


def _compared(b: Any, e: Any) -> dict[str, float | None]:
    """An energy line's 环比 and 同比: the earlier periods' amounts and the changes."""
    out: dict[str, float | None] = {}
    for key, c in (("previous", b.previous), ("last_year", b.last_year)):
        out[key] = None if c is None else c.amounts.get(e.energy_type)
        out[f"change_{key}"] = None if c is None else c.change(e.energy_type, e.amount)
    return out


def _period_of(c: Any) -> dict[str, Any] | None:
    return None if c is None else {"label": c.label, "start": c.start, "end": c.end}


def report_dict(report: Report, lang: Lang = DEFAULT_LANG) -> dict[str, Any]:
    """The figures as JSON (for the API and for tests that check numbers, not layout).

    Codes stay codes (``01A00``, ``electricity``, ``early_warning``); the texts a person
    reads (``period_text``, ``name`` of a sub-item, ``*_text``, ``notes``) are in ``lang``.
    """
    _ = gettext_for(lang)
    return {
        "lang": lang,
        "site": report.site, "period": report.period.label, "kind": report.period.kind,
        "start": report.period.start, "end": report.period.end,
        "period_end": report.period.full_end or report.period.end,
        "partial": report.period.partial, "period_text": period_text(report.period, lang),
        "kgce": report.kgce, "co2_kg": report.co2_kg, "totals": report.totals_by_type(),
        "buildings": [{
            "id": b.id, "name": b.name, "floor_area_m2": b.floor_area_m2, "kgce": b.kgce,
            "type": b.type, "type_text": _(labels.BUILDING_TYPES.get(b.type, b.type)),
            "co2_kg": b.co2_kg, "kgce_per_m2": b.kgce_per_m2,
            "energy": [{"energy_type": e.energy_type,
                        "energy_text": _(labels.ENERGY_TYPES.get(e.energy_type, e.energy_type)),
                        "unit": e.unit, "amount": e.amount,
                        "kgce": e.kgce, "co2_kg": e.co2_kg,
                        "kgce_factor": e.kgce_factor.label() if e.kgce_factor else None,
                        "co2_factor": e.co2_factor.label() if e.co2_factor else None,
                        "note": _(labels.ENERGY_NOTES[e.note])
                        if e.note in labels.ENERGY_NOTES else e.note,
                        **_compared(b, e)} for e in b.energy],
            "previous_period": _period_of(b.previous),
            "last_year_period": _period_of(b.last_year),
            "subitems": [{"code": c, "name": _(labels.SUBITEMS.get(c, n)), "kwh": v}
                         for c, n, v in b.subitems],
            "quota": None if b.quota is None else {
                "measure": b.quota.measure, "limit": b.quota.limit.label(),
                "allowance": b.quota.allowance, "ytd": b.quota.ytd,
                "pro_rated": b.quota.pro_rated, "projected": b.quota.projected,
                "fraction": b.quota.fraction, "state": b.quota.state,
                "state_text": _(labels.QUOTA_STATES.get(b.quota.state, b.quota.state))},
            "balance": {"max_share": b.balance_max_share, "days": len(b.balance),
                        "deviations": sum(x.state == "deviation" for x in b.balance),
                        "worst": None if not b.balance else max(
                            ({"day": x.day, "main": x.main, "parts": x.parts,
                              "deviation": x.deviation} for x in b.balance),
                            key=lambda d: abs(d["deviation"]))},
            "meters": [{"meter": m.meter, "energy_type": m.energy_type, "amount": m.amount,
                        "total": m.total, "readings": m.readings, "expected": m.expected,
                        "completeness": m.completeness} for m in b.meters],
            "cost": {et: _cost_dict(c, lang) for et, c in b.cost.items()},
            "subitem_cost": [{"code": code, "name": _(labels.SUBITEMS.get(code, code)),
                              "kwh": kwh, "cost": cny} for code, kwh, cny in subitem_costs(b)],
        } for b in report.buildings],
        "factors": [f.label() for f in report.factors],
        "completeness": report.completeness,
        "alerts": al.localized(report.alerts, lang, lambda _s: report.period.tz),
        "notes": notes_text(report, lang),
    }


def console_html(lang: Lang = DEFAULT_LANG) -> str:
    """The console page in ``lang``, with the catalog of its script's own strings."""
    from inspector.i18n import catalog

    _ = gettext_for(lang)
    names = {kind: {code: _(msgid) for code, msgid in table.items() if code}
             for kind, table in (("energy_types", labels.ENERGY_TYPES),
                                 ("subitems", labels.SUBITEMS),
                                 ("categories", labels.CATEGORIES), ("rules", labels.RULES),
                                 ("severities", labels.SEVERITIES),
                                 ("alert_states", labels.ALERT_STATES))}
    page = _environment(lang, "Asia/Shanghai").get_template("console.html.j2")
    return page.render(lang=lang, languages=[("zh-CN", "中文"), ("en", "English")],
                       catalog={"messages": catalog(lang, prefix="inspector/static/"),
                                "labels": names})
