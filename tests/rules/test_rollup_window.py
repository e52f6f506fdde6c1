"""A roll-up pass reads once around what changed and rewrites only what changed.

Real influxd. Readings and their ``energy_touched`` markers are written as ingest writes
them; each pass is a freshly started rule engine's (``tests.support.rules_pass``).

- A pass touching one meter re-sums that meter's days and months, not every meter's of
  the site (work proportional to what changed).
- A meter silent for hours — its previous reading far outside the window a pass reads
  around the new ones — still has every hour since that reading recomputed, as the
  consumption of the raw counters says.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from energy import accounting
from energy.site import Site
from enmon import touched as tch
from enmon.localrun import InfluxDB1
from tests.conftest import INFLUX_DB
from tests.support import influx_rows, rules_pass

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 20, tzinfo=SH)
STEP = timedelta(minutes=15)
SITE = Site.model_validate({
    "site": "site-w", "timezone": "Asia/Shanghai",
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": m, "gateway": "gw-01", "device": m, "energy_type": "electricity",
         "category": "01000" if m == "main" else "01B00", "building_total": m == "main",
         "poll_interval_s": 900} for m in ("main", "hvac")]}]})


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def write(influx: InfluxDB1, readings: dict[str, list[tuple[datetime, float]]]) -> None:
    """The readings and the marker ingest adds to the same write."""
    lines = [f"meter,site=site-w,gateway=gw-01,device={dev},building=b1,energy_type=electricity "
             f"active_energy_import_kwh={v!r} {ms(t)}"
             for dev, pts in readings.items() for t, v in pts]
    lines.append(tch.marker_line("site-w", "test", {
        ("gw-01", dev): (ms(min(t for t, _ in pts)), ms(max(t for t, _ in pts)))
        for dev, pts in readings.items()}, int(time.time() * 1000)))
    req = urllib.request.Request(f"{influx.url}/write?db={INFLUX_DB}&precision=ms",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def amounts(influx: InfluxDB1, meas: str, meter: str) -> dict[int, float]:
    return {int(r["time"]): float(r["amount"]) for r in influx_rows(
        influx.url, INFLUX_DB, f"SELECT amount FROM {meas} WHERE meter = '{meter}'")}


def series(t0: datetime, n: int, per_step: float, base: float = 1000.0
           ) -> list[tuple[datetime, float]]:
    return [(t0 + i * STEP, base + per_step * i) for i in range(n)]


async def test_a_pass_touching_one_meter_rewrites_only_that_meters_days(
        influxdb: InfluxDB1) -> None:
    now = ms(DAY + timedelta(days=1))
    write(influxdb, {"main": series(DAY, 9, 10.0), "hvac": series(DAY, 9, 5.0)})
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    assert amounts(influxdb, "energy_daily", "hvac") == {ms(DAY): 40.0}
    # a figure of hvac's day that no recomputation of hvac's readings would give: a pass
    # that re-sums hvac's day although none of its readings changed overwrites it
    sentinel = ("energy_daily,site=site-w,building=b1,meter=hvac,energy_type=electricity,"
                f"category=01B00,total=0 amount=-1.0 {ms(DAY)}")
    req = urllib.request.Request(f"{influxdb.url}/write?db={INFLUX_DB}&precision=ms",
                                 data=sentinel.encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    # one late reading of main only
    write(influxdb, {"main": [(DAY + 9 * STEP, 1090.0)]})
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    assert amounts(influxdb, "energy_daily", "main") == {ms(DAY): 90.0}
    assert amounts(influxdb, "energy_monthly", "main") == {ms(DAY.replace(day=1)): 90.0}
    assert amounts(influxdb, "energy_daily", "hvac") == {ms(DAY): -1.0}


async def test_a_meter_silent_for_hours_recomputes_every_hour_since_its_last_reading(
        influxdb: InfluxDB1) -> None:
    now = ms(DAY + timedelta(days=1))
    early = series(DAY, 9, 10.0)  # 00:00 … 02:00
    write(influxdb, {"main": early})
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    # seven hours of silence, then readings again: 09:00 … 10:00
    late = series(DAY + timedelta(hours=9), 5, 10.0, base=1200.0)
    write(influxdb, {"main": late})
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    expect = accounting.rollup(accounting.intervals([(ms(t), v) for t, v in early + late]),
                               "hour", SH)
    got = amounts(influxdb, "energy_hourly", "main")
    assert got.keys() == expect.keys()
    for h, v in expect.items():
        assert abs(got[h] - v) < 1e-9, (h, got[h], v)
    assert abs(amounts(influxdb, "energy_daily", "main")[ms(DAY)] - 240.0) < 1e-9


async def test_completeness_counts_the_readings_the_pass_read_as_the_database_counts_them(
        influxdb: InfluxDB1) -> None:
    """Both meters touched: completeness is counted from the roll-up's own read of the last
    hour. hvac sent one reading of the four it owes: incomplete; main all four: complete."""
    from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
    from rules.config import RulesConfig
    from rules.engine import Engine
    from rules.lifecycle import AlertBook
    from rules.scheduled import Scheduler

    now = DAY + timedelta(hours=4)
    write(influxdb, {"main": series(DAY, 17, 10.0),
                     "hvac": [*series(DAY, 13, 5.0), (now, 1100.0)]})  # silent 03:00 … 04:00
    cfg = RulesConfig.model_validate({"influx": {"url": influxdb.url, "database": INFLUX_DB}})
    engine = Engine(cfg, [SITE], AlertBook(), started_ms=ms(now))
    icfg = InfluxConfig(url=influxdb.url, database=INFLUX_DB)
    q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
    try:
        sched = Scheduler(engine, q, w, settle_s=0)
        out, _ = await sched.run_pass(ms(now))
        assert sched.seen["site-w"]  # the pass counted from its own read
    finally:
        await q.close()
        await w.close()
    fired = {n.labels.get("device"): n for n in out.notifications
             if n.kind == "firing" and n.rule == "completeness"}
    assert set(fired) == {"hvac"}
    # the same count the database gives for (now − 1 h, now]
    n = influx_rows(influxdb.url, INFLUX_DB, "SELECT count(active_energy_import_kwh) AS n "
                    f"FROM meter WHERE device = 'hvac' AND time > {ms(now) - 3_600_000}ms "
                    f"AND time <= {ms(now)}ms")[0]["n"]
    assert n == 1 and fired["hvac"].value is not None
