"""The roll-ups' cost is the report's cost: same tariff, same intervals, same CNY.

A real influxd. A month (November 2026) of 15-minute counter readings of a building's main
meter and its HVAC sub-meter, with a load that changes every hour, on a site tariff with
a price change on 15 November (at midnight) and a demand charge. A rule-engine pass rolls
them up; then each hour's ``cost`` (the energy charge by band), the month's
``energy_monthly`` cost, the report's ``energy_cost`` (``inspector.store.fetch_report``,
the API's figures) and its sub-item cost must agree. Then six hours of the main meter
that were missing arrive late: the pass recomputes the hours they touch, their cost with
them, and the month still equals the report, which changed.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from energy.site import Site
from enmon import touched as tch
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from inspector.report import Report
from inspector.store import Store, fetch_report
from tests.conftest import INFLUX_DB
from tests.support import influx_rows, rules_pass

SH = ZoneInfo("Asia/Shanghai")
NOV, DEC = datetime(2026, 11, 1, tzinfo=SH), datetime(2026, 12, 1, tzinfo=SH)
STEP = timedelta(minutes=15)
GAP = (datetime(2026, 11, 10, 8, tzinfo=SH), datetime(2026, 11, 10, 14, tzinfo=SH))
PERIODS = [{"start": "22:00", "end": "06:00", "band": "valley"},
           {"start": "06:00", "end": "08:00", "band": "flat"},
           {"start": "08:00", "end": "11:00", "band": "peak"},
           {"start": "11:00", "end": "18:00", "band": "flat"},
           {"start": "18:00", "end": "21:00", "band": "peak"},
           {"start": "21:00", "end": "22:00", "band": "flat"}]
SITE = Site.model_validate({
    "site": "s1", "timezone": "Asia/Shanghai", "tariffs": {"electricity": "t-test"},
    "tariff_definitions": [{
        "id": "t-test", "source": "test tariff (worked example)", "mark": "user",
        "seasons": [{"months": list(range(1, 13)), "periods": PERIODS}],
        "prices": [{"valid_from": "2026-11-01",
                    "prices": {"peak": 1.0, "flat": 0.6, "valley": 0.3}},
                   {"valid_from": "2026-11-15",
                    "prices": {"peak": 1.2, "flat": 0.7, "valley": 0.25}}],
        "demand": {"basis": "max_demand", "price": 38.0}}],
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 900},
        {"id": "hvac", "gateway": "gw-01", "device": "hvac", "energy_type": "electricity",
         "category": "01B00", "poll_interval_s": 900}],
        "virtual_meters": [{"id": "rest", "energy_type": "electricity", "category": "01D00",
                            "plus": ["main"], "minus": ["hvac"]}]}]})


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def readings(device: str) -> list[tuple[int, float]]:
    """A load that differs by hour of day (so the bands weigh differently), every 15 min."""
    out, t, v = [], NOV, 1000.0
    while t <= DEC:
        out.append((ms(t), v))
        per = (1.0 + (t.hour % 5) * 0.5) * (0.4 if device == "hvac" else 1.0)
        v += per
        t += STEP
    return out


async def write(influx: InfluxDB1, device: str, pts: list[tuple[int, float]]) -> None:
    """Readings and the ``energy_touched`` marker every writer of readings adds."""
    body = [f"meter,site=s1,gateway=gw-01,device={device},building=b1 "
            f"active_energy_import_kwh={v!r} {ts}" for ts, v in pts]
    stamp = tch.Stamper()
    body.append(tch.marker_line("s1", "test", {("gw-01", device): (pts[0][0], pts[-1][0])},
                                stamp(int(time.time() * 1000))))

    w = InfluxV1Writer(InfluxConfig(url=influx.url, database=INFLUX_DB))
    try:
        for i in range(0, len(body), 5000):
            await w.write(body[i:i + 5000])
    finally:
        await w.close()


async def one_pass(influx: InfluxDB1) -> None:
    await rules_pass(influx.url, INFLUX_DB, [SITE], ms(DEC) + 3_600_000)


async def report(influx: InfluxDB1) -> Report:
    store = Store(InfluxQL(InfluxConfig(url=influx.url, database=INFLUX_DB)))
    try:
        rep: Report = await fetch_report(store, site=SITE, period="2026-11",
                                         now_ms=ms(DEC) + 3_600_000)
        return rep
    finally:
        await store.close()


def rows(influx: InfluxDB1, meas: str, meter: str) -> list[dict[str, Any]]:
    return influx_rows(influx.url, INFLUX_DB, f"SELECT * FROM {meas} WHERE meter = '{meter}'")


def check(influx: InfluxDB1, rep: Report) -> float:
    """Hours, month and report agree for the main meter, the sub-item and the virtual meter;
    returns the month's energy charge."""
    b = rep.buildings[0]
    want = b.cost["electricity"]
    month = rows(influx, "energy_monthly", "main")
    assert len(month) == 1 and int(month[0]["time"]) == ms(NOV)
    assert month[0]["cost"] == pytest.approx(want.energy_cost, rel=1e-9)
    assert month[0]["amount"] == pytest.approx(b.energy[0].amount, rel=1e-9)
    assert month[0]["unpriced"] == 0
    for band, (amount, cny) in want.by_band().items():
        assert month[0][f"amount_{band}"] == pytest.approx(amount, rel=1e-9), band
        assert month[0][f"cost_{band}"] == pytest.approx(cny, rel=1e-9), band
    hours = rows(influx, "energy_hourly", "main")
    assert sum(h["cost"] for h in hours) == pytest.approx(want.energy_cost, rel=1e-9)
    days = rows(influx, "energy_daily", "main")
    assert sum(d["cost"] for d in days) == pytest.approx(want.energy_cost, rel=1e-9)
    # the Grafana query of docs/tariffs.md: a building's cost per day by band
    per_day = influx_rows(influx.url, INFLUX_DB, (
        'SELECT sum("cost_peak") AS "高峰", sum("cost_flat") AS "平段", '
        'sum("cost_valley") AS "低谷" FROM "energy_daily" WHERE "building" = \'b1\' '
        f'AND "total" = \'1\' AND time >= {ms(NOV)}ms AND time < {ms(DEC)}ms '
        "GROUP BY time(1d) tz('Asia/Shanghai')"))
    assert len(per_day) == 30
    bands = want.by_band()
    for name, band in (("高峰", "peak"), ("平段", "flat"), ("低谷", "valley")):
        assert sum(r[name] for r in per_day) == pytest.approx(bands[band][1], rel=1e-9)
    # the demand charge is the report's (monthly, from the building's 15-minute maximum)
    assert want.demand_cost == pytest.approx(38.0 * (want.demand_kw or 0.0))
    assert "demand_cost" not in month[0]
    # the sub-item: its roll-up's cost is the report's sub-item cost
    hvac = rows(influx, "energy_monthly", "hvac")[0]
    assert hvac["cost"] == pytest.approx(b.subitem_cost["01B00"].energy_cost, rel=1e-9)
    # a virtual meter (main − hvac) costs main's cost − hvac's
    rest = rows(influx, "energy_monthly", "rest")[0]
    assert rest["cost"] == pytest.approx(month[0]["cost"] - hvac["cost"], rel=1e-9)
    return float(want.energy_cost)


async def test_the_rollups_cost_equals_the_reports_also_after_late_data(
        influxdb: InfluxDB1) -> None:
    main, hvac = readings("main"), readings("hvac")
    missing = [(t, v) for t, v in main if ms(GAP[0]) < t < ms(GAP[1])]
    await write(influxdb, "main", [p for p in main if p not in missing])
    await write(influxdb, "hvac", hvac)
    await one_pass(influxdb)
    before = check(influxdb, await report(influxdb))

    # hand-computed for one hour: 19:00-20:00 on 20 Nov is peak at the new price 1.2,
    # four readings of (1 + (19 % 5) × 0.5) = 3 kWh
    hour = next(h for h in rows(influxdb, "energy_hourly", "main")
                if int(h["time"]) == ms(datetime(2026, 11, 20, 19, tzinfo=SH)))
    assert hour["amount"] == pytest.approx(12.0)
    assert hour["cost_peak"] == pytest.approx(12.0 * 1.2) and hour["cost"] == hour["cost_peak"]
    assert hour["amount_flat"] == 0 and hour["amount_valley"] == 0

    # the gap 08:00-14:00 on 10 Nov was spread evenly over its hours (peak and flat alike);
    # the late readings put the load where it was: the month's cost changes
    await write(influxdb, "main", missing)
    await one_pass(influxdb)
    after = check(influxdb, await report(influxdb))
    assert after != pytest.approx(before, rel=1e-12)
    gap_hours = [h for h in rows(influxdb, "energy_hourly", "main")
                 if ms(GAP[0]) <= int(h["time"]) < ms(GAP[1])]
    assert len(gap_hours) == 6
    for h in gap_hours:
        hr = datetime.fromtimestamp(int(h["time"]) / 1000, SH).hour
        amount = 4 * (1.0 + (hr % 5) * 0.5)
        band, price = ("peak", 1.0) if hr < 11 else ("flat", 0.6)
        assert h["amount"] == pytest.approx(amount)
        assert h[f"cost_{band}"] == pytest.approx(amount * price) == pytest.approx(h["cost"])
