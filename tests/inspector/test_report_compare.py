"""Month-on-month (环比) and year-on-year (同比) figures of the report, on a real influxd.

A meter read every 15 minutes at a known rate in October 2026, November 2026 and November
2025; the November 2026 report, taken on 3 November (two days in), compares with the first
two days of October and of November 2025 — the same elapsed span, by the same function —
and a full month with the whole other months. A period with no readings has no comparison
(not a 0, which would read as −100 %).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energy.site import Site
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.lineproto import line
from enmon.localrun import InfluxDB1
from inspector import render
from inspector.store import Store, fetch_report

SH = ZoneInfo("Asia/Shanghai")
DB = "enmon"
STEP = timedelta(minutes=15)
# kWh per 15 minutes in each month
RATE = {(2025, 11): 4.0, (2026, 10): 8.0, (2026, 11): 10.0}
SITE = Site.model_validate({
    "site": "s", "timezone": "Asia/Shanghai",
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 900}]}]})


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1]:
    server = InfluxDB1(workdir=tmp_path_factory.mktemp("compare") / "influxd")
    server.start()

    async def load() -> None:
        cfg = InfluxConfig(url=server.url, database=DB)
        q, w = InfluxQL(cfg), InfluxV1Writer(cfg)
        try:
            await q.create_database()
            lines = []
            v = 1000.0  # one counter: it stands still between Dec 2025 and Oct 2026 (no use)
            for (y, m), rate in RATE.items():
                t = datetime(y, m, 1, tzinfo=SH)
                end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=SH)
                while t < end:
                    lines.append(line("meter", {"site": "s", "gateway": "gw", "device": "main",
                                                "building": "b1", "energy_type": "electricity"},
                                      {"active_energy_import_kwh": v}, ms(t)))
                    t += STEP
                    v += rate
            lines.append(line("meter", {"site": "s", "gateway": "gw", "device": "main",
                                        "building": "b1", "energy_type": "electricity"},
                              {"active_energy_import_kwh": v}, ms(datetime(2026, 12, 1,
                                                                           tzinfo=SH))))
            await w.write(lines)
        finally:
            await q.close()
            await w.close()
    try:
        asyncio.run(load())
        yield server
    finally:
        server.stop()


def report(influx: InfluxDB1, period: str, now: datetime) -> Any:
    async def go() -> Any:
        store = Store(InfluxQL(InfluxConfig(url=influx.url, database=DB)))
        try:
            return await fetch_report(store, site=SITE, period=period, now_ms=ms(now))
        finally:
            await store.close()
    return asyncio.run(go())


def test_a_partial_month_compares_with_the_same_days_of_the_previous_month_and_year(
        influx: InfluxDB1) -> None:
    rep = report(influx, "2026-11", datetime(2026, 11, 3, tzinfo=SH))
    (b,) = rep.buildings
    per_day = 96
    n = 2 * per_day - 1  # a partial period reaches the last reading before now
    assert b.energy[0].amount == pytest.approx(n * 10.0)
    assert b.previous is not None and b.previous.label == "2026-10"
    assert b.previous.amounts["electricity"] == pytest.approx(n * 8.0)
    assert b.last_year is not None and b.last_year.label == "2025-11"
    assert b.last_year.amounts["electricity"] == pytest.approx(n * 4.0)
    assert b.previous.change("electricity", b.energy[0].amount) == pytest.approx(0.25)
    assert b.last_year.change("electricity", b.energy[0].amount) == pytest.approx(1.5)
    js = render.report_dict(rep, "zh-CN")
    e = js["buildings"][0]["energy"][0]
    assert e["previous"] == pytest.approx(n * 8.0)
    assert e["change_previous"] == pytest.approx(0.25)
    assert e["change_last_year"] == pytest.approx(1.5)
    html = render.render_html(rep, "zh-CN")
    assert "环比" in html and "同比" in html and "+25.0%" in html and "+150.0%" in html
    # the workbook: the same figures, numbers as numbers
    import io

    from openpyxl import load_workbook

    from inspector import xlsx

    buf = io.BytesIO()
    xlsx.write_report(rep, buf, "zh-CN")
    ws = load_workbook(io.BytesIO(buf.getvalue()), read_only=True)["汇总"]
    head, row = list(ws.iter_rows(values_only=True))[:2]
    assert row[head.index("上期")] == pytest.approx(n * 8.0)
    assert row[head.index("环比")] == pytest.approx(0.25)
    assert row[head.index("同比")] == pytest.approx(1.5)


def test_a_full_month_compares_with_the_whole_months_and_no_data_is_no_comparison(
        influx: InfluxDB1) -> None:
    rep = report(influx, "2026-10", datetime(2026, 12, 1, tzinfo=SH))
    (b,) = rep.buildings
    assert b.energy[0].amount == pytest.approx(31 * 96 * 8.0)
    assert b.previous is None and b.last_year is None  # nothing read in Sept 2026 / Oct 2025
    js = render.report_dict(rep, "en")
    assert js["buildings"][0]["energy"][0]["change_previous"] is None
