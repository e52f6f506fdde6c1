"""The report's cost is the energy domain's cost: same tariff, same intervals, same CNY.

A month of the simulated hospital (real influxd, tests/inspector/conftest.py) reported
with a time-of-use tariff on electricity and a flat price on water: the report JSON (what
the API serves) carries per band kWh and CNY, the demand charge of the whole month and the
tariff's source, and every figure equals ``energy.figures.building_cost`` over the
building-total meters' intervals from the same stored readings.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from energy import accounting, figures
from enmon.influx import InfluxConfig, InfluxQL
from inspector import render
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, MONTH, Loaded

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TZ = "Asia/Shanghai"


def _with_tariffs(site: Any) -> Any:
    return site.model_copy(update={"tariffs": {"electricity": "example-tou-industrial-10kv",
                                               "water": "example-flat-water"}})


def _report(loaded: Loaded, site: Any) -> tuple[Report, dict[str, Any]]:
    async def go() -> tuple[Report, dict[str, Any]]:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            inputs: dict[str, Any] = {}
            rep: Report = await fetch_report(store, site=site, period=MONTH,
                                             now_ms=period_of(MONTH, TZ).end, inputs=inputs)
            return rep, inputs
        finally:
            await store.close()
    return asyncio.run(go())


def test_report_cost_equals_the_domain_cost_and_the_json_carries_it(loaded: Loaded) -> None:
    site = _with_tariffs(loaded.data.site)
    rep, inputs = _report(loaded, site)
    p = period_of(MONTH, TZ)
    counters = inputs["counters"]
    checked = 0
    for b in rep.buildings:
        sb = site.building(b.id)
        for et, got in b.cost.items():
            ivs: list[accounting.Interval] = []
            for m in sb.meters:
                if m.building_total and m.energy_type == et:
                    ivs += figures.meter_intervals(m, counters.get((m.gateway, m.device), []))
            want = figures.building_cost(site, sb, et, ivs, p.start, p.end, billing_months=1)
            assert want is not None
            assert got.total == pytest.approx(want.total)
            assert got.energy_cost == pytest.approx(want.energy_cost)
            # the bands add up to the building's consumption of that energy type
            amount = next(e.amount for e in b.energy if e.energy_type == et)
            assert sum(ln.amount for ln in got.lines) == pytest.approx(amount)
            checked += 1
        if "electricity" in b.cost:
            c = b.cost["electricity"]
            assert c.demand_kw is not None and c.demand_kw > 0
            assert c.demand_cost == pytest.approx(c.demand_kw * 38.0)
            assert {ln.band for ln in c.lines} >= {"peak", "flat", "valley"}
    assert checked >= 2
    js = render.report_dict(rep, "zh-CN")
    elec = next(b["cost"]["electricity"] for b in js["buildings"] if "electricity" in b["cost"])
    assert elec["currency"] == "CNY" and elec["mark"] == "U" and elec["source"]
    assert {ln["band_text"] for ln in elec["lines"]} >= {"高峰", "平段", "低谷"}
    assert elec["total"] == pytest.approx(elec["energy_cost"] + elec["demand_cost"])


def test_no_tariff_no_cost(loaded: Loaded) -> None:
    rep, _ = _report(loaded, loaded.data.site)
    assert all(b.cost == {} for b in rep.buildings)


def test_sub_items_are_priced_on_the_buildings_tariff_and_add_up(loaded: Loaded) -> None:
    site = _with_tariffs(loaded.data.site)
    rep, _ = _report(loaded, site)
    js = render.report_dict(rep, "zh-CN")
    seen = 0
    for b, jb in zip(rep.buildings, js["buildings"], strict=True):
        rows = render.subitem_costs(b)
        if not rows:
            continue
        seen += 1
        elec = b.cost["electricity"]
        # the sub-items and "not sub-metered" add up to the building's energy charge
        assert sum(c or 0.0 for _, _, c in rows) == pytest.approx(elec.energy_cost)
        for code, _kwh, cny in rows:
            if code:
                assert cny == b.subitem_cost[code].energy_cost
                assert b.subitem_cost[code].demand_cost == 0
        assert [r["cost"] for r in jb["subitem_cost"]] == [c for _, _, c in rows]
    assert seen >= 1


def test_the_pages_cost_section_in_chinese_and_english(loaded: Loaded) -> None:
    site = _with_tariffs(loaded.data.site)
    rep, _ = _report(loaded, site)
    b = next(b for b in rep.buildings if "electricity" in b.cost)
    c = b.cost["electricity"]
    zh = render.render_html(rep, "zh-CN")
    for text in ("电度电费", "基本电费（最大需量", "高峰", "平段", "低谷", str(escape(c.source)),
                 "[U]", render.fmt_money(c.total, "zh-CN"),
                 render.fmt_money(c.demand_cost, "zh-CN")):
        assert text in zh, text
    if b.subitem_cost:
        assert "不分摊到分项" in zh
    # no English of the cost catalog left in the Chinese page
    from babel.messages.pofile import read_po

    with (ROOT / "inspector/locale/zh_CN/LC_MESSAGES/cost.po").open("rb") as fh:
        english = [m.id for m in read_po(fh) if m.id and "%(" not in m.id and m.string != m.id]
    assert [m for m in english if f">{escape(m)}<" in zh] == []
    en = render.render_html(rep, "en")
    assert "energy charge" in en and "demand charge (maximum demand" in en
    assert ">peak<" in en and "(TOU band)" not in en  # the band's name, not its msgid
    assert render.fmt_money(c.total, "en") in en


def test_the_workbooks_cost_sheet_holds_the_reports_figures(loaded: Loaded) -> None:
    import io

    from openpyxl import load_workbook

    from inspector import xlsx

    site = _with_tariffs(loaded.data.site)
    rep, _ = _report(loaded, site)
    buf = io.BytesIO()
    xlsx.write_report(rep, buf, "zh-CN")
    wb = load_workbook(io.BytesIO(buf.getvalue()))
    ws = wb["费用"]
    head = [c.value for c in ws[1]]
    col = {h: i for i, h in enumerate(head)}
    rows = [[c.value for c in r] for r in ws.iter_rows(min_row=2)]
    checked = 0
    for b in rep.buildings:
        for et, cb in b.cost.items():
            mine = [r for r in rows if r[col["建筑"]] == b.id
                    and r[col["能源"]] == render.gettext_for("zh-CN")(
                        render.labels.ENERGY_TYPES[et])]
            bands = [r for r in mine if r[col["时段"]]]
            # one row per band and price list: numbers as numbers, unrounded (to the 15-17
            # significant digits a workbook stores, not to the fen the format shows)
            assert [(r[col["时段"]], r[col["用量"]], r[col["单价（元/计量单位）"]],
                     r[col["费用（元）"]]) for r in bands] == [
                (ln.band, pytest.approx(ln.amount, rel=1e-14), ln.price,
                 pytest.approx(ln.cost, rel=1e-14)) for ln in cb.lines]
            assert all(isinstance(r[col["费用（元）"]], float) for r in bands)
            assert {r[col["项目"]] for r in bands} <= {"尖峰", "高峰", "平段", "低谷", "深谷",
                                                      "单一电价"}
            item = {r[col["项目"]]: r for r in mine}
            cny, kw = col["费用（元）"], col["最大需量（kW）"]
            charge = "电度电费" if et == "electricity" else "用量费用"
            assert item[charge][cny] == pytest.approx(cb.energy_cost, rel=1e-14)
            assert item["合计"][cny] == pytest.approx(cb.total, rel=1e-14)
            if cb.demand_kw is not None:
                assert item["基本电费"][cny] == pytest.approx(cb.demand_cost, rel=1e-14)
                assert item["基本电费"][kw] == pytest.approx(cb.demand_kw, rel=1e-14)
            assert {r[col["标记"]] for r in mine} == {cb.mark}
            assert {r[col["来源"]] for r in mine} == {cb.source}
            checked += 1
    assert checked >= 2
    buf = io.BytesIO()
    xlsx.write_report(rep, buf, "en")
    assert "Cost" in load_workbook(io.BytesIO(buf.getvalue())).sheetnames
