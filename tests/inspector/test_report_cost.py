"""The report's cost is the energy domain's cost: same tariff, same intervals, same CNY.

A month of the simulated hospital (real influxd, tests/inspector/conftest.py) reported
with a time-of-use tariff on electricity and a flat price on water: the report JSON (what
the API serves) carries per band kWh and CNY, the demand charge of the whole month and the
tariff's source, and every figure equals ``energy.figures.building_cost`` over the
building-total meters' intervals from the same stored readings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from energy import accounting, figures
from enmon.influx import InfluxConfig, InfluxQL
from inspector import render
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, MONTH, Loaded

pytestmark = pytest.mark.slow
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
