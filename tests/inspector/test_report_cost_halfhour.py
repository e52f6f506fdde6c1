"""A tariff that changes band within the hour (11:30) splits a month's report the way the
raw readings do, so the report's band costs are the roll-ups' (which price every reading).

A day of 15-minute readings in a real influxd; the tariff puts 11:30–12:00 in the peak
band, and the meter draws 40 kWh between 11:00 and 11:30 and nothing in the peak half hour.
Read per hour, the report would see only the 11:00 and 12:00 readings and share the 40 kWh
by time: 20 kWh peak. The readings say 0 kWh peak, and so must the report — the month's,
and the year's (which reads other figures per day).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy import accounting, figures
from energy.site import Site
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.lineproto import line
from enmon.localrun import InfluxDB1
from inspector.store import Store, fetch_report

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 10, tzinfo=SH)
TARIFF = {"id": "half-hour", "source": "test tariff with a band change at 11:30", "mark": "U",
          "seasons": [{"months": list(range(1, 13)), "periods": [
              {"start": "00:00", "end": "11:30", "band": "flat"},
              {"start": "11:30", "end": "12:00", "band": "peak"},
              {"start": "12:00", "end": "24:00", "band": "flat"}]}],
          "prices": [{"valid_from": "2026-01-01", "prices": {"flat": 0.5, "peak": 2.0}}]}
SITE = Site.model_validate({
    "site": "s", "timezone": "Asia/Shanghai", "tariffs": {"electricity": "half-hour"},
    "tariff_definitions": [TARIFF],
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 900}]}]})


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def readings() -> list[tuple[int, float]]:
    """10 kWh per quarter, except 11:30–12:00: 40 kWh in 11:00–11:30, then nothing."""
    out, v, t = [], 1000.0, DAY
    while t <= DAY + timedelta(days=1):
        out.append((ms(t), v))
        hm = (t.hour, t.minute)
        v += 20.0 if hm in ((11, 0), (11, 15)) else 0.0 if hm in ((11, 30), (11, 45)) else 10.0
        t += timedelta(minutes=15)
    return out


async def test_a_half_hour_band_is_split_as_the_readings_say(influxdb: InfluxDB1) -> None:
    cfg = InfluxConfig(url=influxdb.url, database="enmon")
    w, q = InfluxV1Writer(cfg), InfluxQL(cfg)
    pts = readings()
    try:
        await w.write([line("meter", {"site": "s", "gateway": "gw", "device": "main",
                                      "building": "b1", "energy_type": "electricity"},
                            {"active_energy_import_kwh": v}, ts) for ts, v in pts])
        rep = await fetch_report(Store(q), site=SITE, period="2026-11",
                                 now_ms=ms(datetime(2026, 12, 1, tzinfo=SH)), compare=False)
        # the year so far: read per day, each day's energy would be shared over its bands
        year = await fetch_report(Store(q), site=SITE, period="2026",
                                  now_ms=ms(datetime(2026, 12, 1, tzinfo=SH)), compare=False)
    finally:
        await w.close()
        await q.close()
    got = rep.buildings[0].cost["electricity"]
    # what the raw readings say, priced by the domain's function
    ivs = accounting.intervals(pts)
    p0, p1 = ms(datetime(2026, 11, 1, tzinfo=SH)), ms(datetime(2026, 12, 1, tzinfo=SH))
    want = figures.building_cost(SITE, SITE.building("b1"), "electricity", ivs, p0, p1,
                                 billing_months=1)
    assert want is not None
    peak = sum(ln.amount for ln in got.lines if ln.band == "peak")
    assert peak == pytest.approx(0.0, abs=1e-9)
    assert got.energy_cost == pytest.approx(want.energy_cost)
    y = year.buildings[0].cost["electricity"]
    assert sum(ln.amount for ln in y.lines if ln.band == "peak") == pytest.approx(0.0, abs=1e-9)
    assert y.energy_cost == pytest.approx(got.energy_cost)
