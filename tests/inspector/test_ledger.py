"""The ledger, the disclosure and the XLSX workbooks hold the report's figures.

On the simulated hospital month (real influxd, tests/inspector/conftest.py):

- the ledger's per-meter consumption, energy lines, kgce and CO2 are the report's, and each
  meter's readings add up: end − start + what a reset or swap added = the consumption;
- the disclosure's totals and intensities are the annual report's (tce = kgce / 1000);
- the report's and the ledger's XLSX opened with openpyxl: dates are dates, numbers are
  numbers, the same totals as the report (and so as its PDF);
- the zh-CN PDF pages are rendered and every character they show is in the fonts their CSS
  names (no missing glyph, no box where a Chinese character should be).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from enmon.influx import InfluxConfig, InfluxQL
from inspector import ledger, render, xlsx
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, MONTH, Loaded

pytestmark = pytest.mark.slow
TZ = "Asia/Shanghai"
YEAR = MONTH[:4]


def _with_store(loaded: Loaded, fn: Any) -> Any:
    async def go() -> Any:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            return await fn(store)
        finally:
            await store.close()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def month_ledger(loaded: Loaded) -> tuple[ledger.Ledger, Report]:
    end = period_of(MONTH, TZ).end
    return _with_store(loaded, lambda s: ledger.fetch_ledger(
        s, site=loaded.data.site, period=MONTH, now_ms=end))


@pytest.fixture(scope="module")
def year_disclosure(loaded: Loaded) -> tuple[ledger.Disclosure, Report]:
    end = period_of(MONTH, TZ).end
    return _with_store(loaded, lambda s: ledger.fetch_disclosure(
        s, site=loaded.data.site, year=YEAR, now_ms=end))


def test_the_ledger_is_the_reports_figures_and_the_readings_add_up(
        loaded: Loaded, month_ledger: tuple[ledger.Ledger, Report]) -> None:
    led, rep = month_ledger
    # the same report as the one fetched on its own (what the API and the PDF show)
    alone = _with_store(loaded, lambda s: fetch_report(s, site=loaded.data.site, period=MONTH,
                                                       now_ms=period_of(MONTH, TZ).end))
    assert rep.kgce == pytest.approx(alone.kgce) and rep.co2_kg == pytest.approx(alone.co2_kg)
    checked = 0
    for b, rb in zip(led.buildings, rep.buildings, strict=True):
        assert b.report is rb
        by_meter = {m.meter: m for m in rb.meters}
        for m in b.meters:
            assert m.consumption == by_meter[m.meter].amount
            if m.start is not None and m.end is not None:
                assert m.difference is not None
                assert m.difference + m.adjustment == pytest.approx(m.consumption)
                assert m.start.ts <= m.end.ts
                checked += 1
    assert checked >= 5
    js = ledger.ledger_dict(led, "zh-CN")
    assert sum(b["kgce"] for b in js["buildings"]) == pytest.approx(rep.kgce)


def test_the_disclosure_is_the_annual_reports_figures(
        loaded: Loaded, year_disclosure: tuple[ledger.Disclosure, Report]) -> None:
    d, rep = year_disclosure
    assert rep.period.kind == "year"
    assert d.kgce == pytest.approx(rep.kgce) and d.co2_kg == pytest.approx(rep.co2_kg)
    for b, rb in zip(d.buildings, rep.buildings, strict=True):
        assert b.tce == pytest.approx(rb.kgce / 1000) and b.kgce_per_m2 == rb.kgce_per_m2
        if b.electricity_kwh is not None:
            assert b.kwh_per_m2 == pytest.approx(b.electricity_kwh / b.floor_area_m2)
    js = ledger.disclosure_dict(d, "zh-CN")
    assert js["kgce"] == pytest.approx(rep.kgce)


def _sheet(path: Path, title: str) -> list[tuple[Any, ...]]:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True)
    return list(wb[title].iter_rows(values_only=True))


def test_the_report_workbook_holds_the_reports_numbers_as_numbers_and_dates_as_dates(
        loaded: Loaded, month_ledger: tuple[ledger.Ledger, Report], tmp_path: Path) -> None:
    _, rep = month_ledger
    path = tmp_path / "report.xlsx"
    xlsx.write_report(rep, path, "zh-CN")
    summary = _sheet(path, "汇总")
    head, rows = summary[0], summary[1:]
    assert head[:4] == ("建筑", "建筑名称", "能源", "数量") or "能源" in head
    amount_col = 3
    total = sum(r[amount_col] for r in rows)
    assert all(isinstance(r[amount_col], float | int) for r in rows)
    assert total == pytest.approx(sum(e.amount for b in rep.buildings for e in b.energy))
    per_day = _sheet(path, "逐日")
    assert all(isinstance(r[0], dt.datetime) for r in per_day[1:]) and len(per_day) > 3
    assert sum(r[3] for r in per_day[1:]) == pytest.approx(
        sum(v for b in rep.buildings for d in b.daily.values() for v in d.values()))


def test_the_ledger_workbook_holds_the_ledgers_numbers(
        month_ledger: tuple[ledger.Ledger, Report], year_disclosure: tuple[ledger.Disclosure,
                                                                           Report],
        tmp_path: Path) -> None:
    led, _ = month_ledger
    path = tmp_path / "ledger.xlsx"
    xlsx.write_ledger(led, path, "zh-CN")
    rows = _sheet(path, "台账")
    head = rows[0]
    i = head.index("消耗量")
    assert [r[i] for r in rows[1:]] == pytest.approx(
        [m.consumption for b in led.buildings for m in b.meters], rel=1e-12)
    t0 = next(j for j, h in enumerate(head) if str(h).startswith("起始读数时间"))
    assert all(r[t0] is None or isinstance(r[t0], dt.datetime) for r in rows[1:])
    d, _ = year_disclosure
    path2 = tmp_path / "disclosure.xlsx"
    xlsx.write_disclosure(d, path2, "zh-CN")
    from openpyxl import load_workbook

    assert load_workbook(path2, read_only=True).sheetnames[0] == "能耗公示"


@cache
def _cmap(family: str) -> frozenset[int]:
    from fontTools.ttLib import TTCollection, TTFont

    path = subprocess.run(["fc-match", "-f", "%{file}", family], capture_output=True,
                          text=True, check=True).stdout
    fonts = TTCollection(path).fonts if path.endswith(".ttc") else [TTFont(path)]
    out: set[int] = set()
    for f in fonts:
        out |= set(f.getBestCmap() or {})
    return frozenset(out)


def _visible(html: str) -> str:
    html = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", html, flags=re.S)
    text = re.sub(r"<[^>]+>", " ", html)
    import html as h

    return h.unescape(text)


@pytest.mark.parametrize("doc", ["report", "ledger", "disclosure"])
def test_the_chinese_pdfs_have_a_glyph_for_every_character(
        doc: str, month_ledger: tuple[ledger.Ledger, Report],
        year_disclosure: tuple[ledger.Disclosure, Report], tmp_path: Path) -> None:
    led, rep = month_ledger
    d, _ = year_disclosure
    page = {"report": lambda: render.render_html(rep, "zh-CN"),
            "ledger": lambda: ledger.ledger_html(led, "zh-CN"),
            "disclosure": lambda: ledger.disclosure_html(d, "zh-CN")}[doc]()
    covered = _cmap("Noto Sans CJK SC") | _cmap("DejaVu Sans")
    chars = {c for c in _visible(page) if not c.isspace()}
    assert len([c for c in chars if "\u4e00" <= c <= "\u9fff"]) > 20
    assert sorted(c for c in chars if ord(c) not in covered) == []
    if doc != "report":  # the report's PDF is rendered by test_report
        out = tmp_path / f"{doc}.pdf"
        (ledger.ledger_pdf(led, out) if doc == "ledger" else ledger.disclosure_pdf(d, out))
        assert out.read_bytes()[:5] == b"%PDF-" and out.stat().st_size > 10_000
