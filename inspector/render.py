"""A report as HTML (Jinja2, inline SVG charts) and as PDF (WeasyPrint renders the same HTML).

One layout for both, so the PDF filed with the authority and the page the
inspector opened cannot differ. Fonts: the page asks for Noto Sans CJK (Debian
``fonts-noto-cjk``) so the Chinese names of sub-items and standards print;
WeasyPrint embeds only the glyphs used, which keeps a month's PDF small.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from inspector import charts
from inspector.report import Report

TEMPLATES = Path(__file__).parent / "templates"
STATE_TEXT = {"ok": "within quota",
              "early_warning": "early warning (预警): projected above the quota",
              "exceeded": "quota exceeded",
              "incomplete": "no verdict: the year-to-date lacks readings before the period"}


def _local(ts: int | None, tz: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts / 1000, ZoneInfo(tz)).strftime(fmt)


def _charts(report: Report) -> dict[str, dict[str, str]]:
    tz = report.period.tz
    day_fmt = "%d" if report.period.kind == "month" else "%m"
    out: dict[str, dict[str, str]] = {}
    for b in report.buildings:
        c: dict[str, str] = {}
        for i, e in enumerate(b.energy):
            bars = [(_local(day, tz, day_fmt), v.get(e.energy_type, 0.0))
                    for day, v in b.daily.items()]
            if bars:
                per = "day" if report.period.kind == "month" else "month"
                c[f"daily_{e.energy_type}"] = charts.bar_chart(
                    bars, unit=e.unit, title=f"{e.energy_type} per {per} ({e.unit})",
                    color=charts.PALETTE[i % len(charts.PALETTE)],
                    label_every=2 if len(bars) > 16 else 1)
        if b.subitems:
            c["subitems"] = charts.hbar_chart([(name, v) for _, name, v in b.subitems],
                                              unit="kWh", title="electricity by sub-item (分项)")
        if b.quota is not None:
            q = b.quota
            c["quota"] = charts.quota_chart(ytd=q.ytd, pro_rated=q.pro_rated,
                                            allowance=q.allowance, projected=q.projected,
                                            unit=q.measure)
        out[b.id] = c
    return out


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["num"] = lambda v: "–" if v is None else charts.fmt(float(v))
    env.filters["pct"] = lambda v: "–" if v is None else f"{float(v):.1%}"
    env.filters["local"] = lambda ts: _local(ts, report.period.tz)
    tmpl = env.get_template("report.html.j2")
    from inspector.report import UNITS

    return tmpl.render(r=report, charts=_charts(report), state_text=STATE_TEXT,
                       totals=report.totals_by_type(), units=UNITS)


def render_pdf(report: Report, path: str | Path | None = None) -> bytes:
    """The same HTML as PDF (written to ``path`` when given)."""
    import logging

    # WeasyPrint logs every CSS property it ignores and every step (even while importing, for
    # its own stylesheets); an operator needs none of it
    for name in ("weasyprint", "weasyprint.progress", "fontTools"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from weasyprint import HTML

    data: bytes = HTML(string=render_html(report)).write_pdf()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def report_dict(report: Report) -> dict[str, Any]:
    """The figures as JSON (for the API and for tests that check numbers, not layout)."""
    return {
        "site": report.site, "period": report.period.label, "kind": report.period.kind,
        "start": report.period.start, "end": report.period.end,
        "period_end": report.period.full_end or report.period.end,
        "partial": report.period.partial, "period_text": report.period.text,
        "kgce": report.kgce, "co2_kg": report.co2_kg, "totals": report.totals_by_type(),
        "buildings": [{
            "id": b.id, "name": b.name, "floor_area_m2": b.floor_area_m2, "kgce": b.kgce,
            "co2_kg": b.co2_kg, "kgce_per_m2": b.kgce_per_m2,
            "energy": [{"energy_type": e.energy_type, "unit": e.unit, "amount": e.amount,
                        "kgce": e.kgce, "co2_kg": e.co2_kg,
                        "kgce_factor": e.kgce_factor.label() if e.kgce_factor else None,
                        "co2_factor": e.co2_factor.label() if e.co2_factor else None,
                        "note": e.note} for e in b.energy],
            "subitems": [{"code": c, "name": n, "kwh": v} for c, n, v in b.subitems],
            "quota": None if b.quota is None else {
                "measure": b.quota.measure, "limit": b.quota.limit.label(),
                "allowance": b.quota.allowance, "ytd": b.quota.ytd,
                "pro_rated": b.quota.pro_rated, "projected": b.quota.projected,
                "fraction": b.quota.fraction, "state": b.quota.state},
            "balance": {"max_share": b.balance_max_share, "days": len(b.balance),
                        "deviations": sum(x.state == "deviation" for x in b.balance),
                        "worst": None if not b.balance else max(
                            ({"day": x.day, "main": x.main, "parts": x.parts,
                              "deviation": x.deviation} for x in b.balance),
                            key=lambda d: abs(d["deviation"]))},
            "meters": [{"meter": m.meter, "energy_type": m.energy_type, "amount": m.amount,
                        "total": m.total, "readings": m.readings, "expected": m.expected,
                        "completeness": m.completeness} for m in b.meters],
        } for b in report.buildings],
        "factors": [f.label() for f in report.factors],
        "completeness": report.completeness,
        "alerts": report.alerts,
        "notes": report.notes,
    }
