"""The energy report over simulated days stored in a real influxd.

Figures are recomputed here from the raw counters read back with plain urllib
and from the shipped factor file, so a report that drifted from the rules'
accounting or lost a factor's source would fail.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from enmon.influx import InfluxConfig, InfluxQL
from inspector import charts, render
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, MONTH, Loaded
from tests.support import influx_rows

pytestmark = pytest.mark.slow


def _report(loaded: Loaded, building: str | None = None) -> Report:
    async def go() -> Report:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            # reported after the month ended (a running month is tested in
            # test_partial_period.py)
            rep: Report = await fetch_report(store, site=loaded.data.site, period=MONTH,
                                             building=building,
                                             now_ms=period_of(MONTH, "Asia/Shanghai").end)
            return rep
        finally:
            await store.close()
    return asyncio.run(go())


def _counter_span(url: str, device: str, field: str) -> float:
    """Counter at the last full hour minus counter at the start, from the raw readings.

    The simulated days end 15 min before the period's last hour ends and nothing comes
    after them, so the report's hourly resolution ends at the last hour's first reading.
    """
    rows = influx_rows(url, DB, f"SELECT {field} FROM meter WHERE device = '{device}'")
    on_hour = [r for r in rows if r["time"] % 3_600_000 == 0]
    return float(on_hour[-1][field]) - float(rows[0][field])


@pytest.fixture(scope="module")
def report(loaded: Loaded) -> Report:
    return _report(loaded)


def test_period_parsing() -> None:
    p = period_of("2026-12", "Asia/Shanghai")
    assert (p.kind, p.year) == ("month", 2026)
    assert p.end - p.start == 31 * 86_400_000
    assert period_of("2026", "UTC").end - period_of("2026", "UTC").start == 365 * 86_400_000
    with pytest.raises(ValueError):
        period_of("26-1x", "UTC")


def test_quota_verdict_on_a_complete_year_to_date() -> None:
    """Own quota 50 kWh/(m2·a) on 1 000 m2: 50 000 kWh a year. 45 000 kWh by the end of
    October (304 of 365 days) is over the pro-rated 41 644 and projects to 54 030: the early
    warning."""
    from energy.site import Site
    from inspector.report import build_report

    site = Site.model_validate({"site": "s", "timezone": "UTC", "buildings": [{
        "id": "b", "floor_area_m2": 1000, "quota": {
            "value": 50, "unit": "kWh/(m2·a)", "source": "test quota"},
        "meters": [{"id": "m", "gateway": "g", "device": "d", "energy_type": "electricity",
                    "building_total": True}]}]})
    p = period_of("2026-10", "UTC")
    jan1 = period_of("2026", "UTC").start
    pts = [(jan1, 1000.0), (p.start, 1000.0 + 40_500.0), (p.end, 1000.0 + 45_000.0)]
    rep = build_report(site=site, period=p, counters={("g", "d"): pts})
    b = rep.buildings[0]
    assert b.energy[0].amount == pytest.approx(4_500.0)
    q = b.quota
    assert q is not None and q.ytd_complete
    assert q.ytd == pytest.approx(45_000.0) and q.allowance == pytest.approx(50_000.0)
    assert q.fraction == pytest.approx(304 / 365)  # the default profile follows time
    assert q.projected == pytest.approx(45_000.0 * 365 / 304)
    assert q.state == "early_warning"
    assert q.limit.source == "test quota" and q.limit.mark == "user"


def test_consumption_kgce_and_co2_follow_the_counters_and_factor_file(
        loaded: Loaded, report: Report) -> None:
    factors = yaml.safe_load(Path("energy/data/factors.yaml").read_text(encoding="utf-8"))
    kgce_kwh = factors["coal_equivalent"]["electricity_equivalent"]["value"]
    co2_2023 = factors["co2"]["bases"]["mee_grid_average"]["factors"]["2023"]["national"]
    admin = next(b for b in report.buildings if b.id == "admin")
    elec = next(e for e in admin.energy if e.energy_type == "electricity")
    assert elec.amount == pytest.approx(
        _counter_span(loaded.url, "admin-main", "active_energy_import_kwh"), rel=1e-9)
    assert elec.kgce == pytest.approx(elec.amount * kgce_kwh)
    assert elec.co2_kg == pytest.approx(elec.amount * co2_2023)
    # the factor travels with its source, mark and the fallback the inspector must see
    assert elec.co2_factor is not None and "2026 not published, used 2023" in elec.co2_factor.source
    assert elec.kgce_factor is not None and elec.kgce_factor.mark == "R"
    assert "GB/T 2589-2020" in elec.kgce_factor.source
    # sub-items add up to the building total (the simulated mains is their exact sum)
    sub = {code: v for code, _, v in admin.subitems}
    assert set(sub) == {"01A00", "01B00", "01C00", "01D00", ""}
    assert sum(sub.values()) == pytest.approx(elec.amount)
    assert abs(sub[""]) < 1e-6 * elec.amount
    # gas of the hospital converts with the preset, and the boiler house's steam output is
    # not counted again as energy use (only building_total meters are)
    hosp = next(b for b in report.buildings if b.id == "hospital")
    gas = next(e for e in hosp.energy if e.energy_type == "gas")
    assert gas.amount == pytest.approx(_counter_span(loaded.url, "hosp-gas", "gas_volume_m3"))
    plant = next(b for b in report.buildings if b.id == "boiler-house")
    assert [e.energy_type for e in plant.energy] == ["gas"]
    assert report.kgce == pytest.approx(sum(b.kgce for b in report.buildings))


def test_quota_completeness_and_alerts(report: Report) -> None:
    admin = next(b for b in report.buildings if b.id == "admin")
    q = admin.quota
    assert q is not None and q.measure == "kWh"
    assert q.ytd == pytest.approx(next(e.amount for e in admin.energy
                                       if e.energy_type == "electricity"))
    assert q.allowance == pytest.approx(q.limit.value * admin.floor_area_m2)
    assert q.fraction == pytest.approx(304 / 365)  # Jan..Oct by the end of October, by time
    assert "GB/T 51161-2016" in q.limit.source and "office-corrected" in q.limit.source
    # the simulated days start on 1 October: no verdict on a year-to-date that lacks Jan-Sep
    assert q.state == "incomplete" and not q.ytd_complete
    # completeness: every batch arrived; the dead meter shows in its own figure
    assert {c["gateway"] for c in report.completeness} == {
        "gw-admin", "gw-hosp", "gw-mall", "gw-plant", "gw-school"}
    assert all(c["ratio"] == 1.0 and c["days"] == 3 for c in report.completeness)
    school = next(b for b in report.buildings if b.id == "school")
    main = next(m for m in school.meters if m.meter == "school-main")
    assert main.readings == 3 * 96 - 24 and main.expected == 31 * 96
    rules = sorted({a["rule"] for a in report.alerts})
    assert rules == ["meter_offline", "peak_demand"]
    peak = next(a for a in report.alerts if a["rule"] == "peak_demand")
    assert peak["labels"]["device"] == "mall-main" and peak["resolved_at"] is not None


def test_building_report_and_rendering(loaded: Loaded, report: Report, tmp_path: Path) -> None:
    one = _report(loaded, building="mall")
    assert [b.id for b in one.buildings] == ["mall"]
    assert [a["rule"] for a in one.alerts] == ["peak_demand"]
    html = render.render_html(report)  # zh-CN, the default language
    for text in ("GB/T 2589-2020", "照明插座用电", "<svg", "数据完整率", "meter_offline",
                 "折算系数及其来源"):
        assert text in html
    pdf = render.render_pdf(one, tmp_path / "mall.pdf")
    assert pdf.startswith(b"%PDF-") and (tmp_path / "mall.pdf").stat().st_size < 1_000_000
    d: dict[str, Any] = render.report_dict(report)
    assert d["period"] == MONTH and d["factors"]


def test_cli_writes_json_report(loaded: Loaded, tmp_path: Path) -> None:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(loaded.data.site.model_dump(mode="json"),
                                        allow_unicode=True), encoding="utf-8")
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "enmon", "report", "--period", MONTH, "--site",
                        str(site_file), "-o", str(out), "--influx-url", loaded.url,
                        "--database", DB], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json

    body = json.loads(out.read_text(encoding="utf-8"))
    assert {b["id"] for b in body["buildings"]} >= {"admin", "hospital", "school", "mall"}
    assert body["kgce"] > 0


def test_water_consumption_is_reported_in_m3_and_not_as_energy(loaded: Loaded,
                                                               report: Report) -> None:
    """The campus's water meters reach the report: m³ per building from the counter, no
    kgce (water is not an energy in 综合能耗), and the page shows the line."""
    hosp = next(b for b in report.buildings if b.id == "hospital")
    water = next(e for e in hosp.energy if e.energy_type == "water")
    assert water.unit == "m³"
    assert water.amount > 0
    assert water.amount == pytest.approx(
        _counter_span(loaded.url, "hosp-water", "water_volume_m3"), rel=1e-9)
    assert water.kgce is None and water.co2_kg is None and "not an energy" in water.note
    assert hosp.kgce == pytest.approx(sum(e.kgce for e in hosp.energy if e.kgce is not None))
    assert {b.id for b in report.buildings
            if any(e.energy_type == "water" for e in b.energy)} >= {"admin", "hospital", "school"}
    page = render.render_html(_report(loaded, "hospital"))
    assert "水不计入综合能耗" in page and f"{charts.fmt(water.amount)} m³" in page
