"""Days and months are summed from the hours in hand and the stored hours around them.

Real influxd; each pass is a freshly started rule engine's. A pass keeps the hours it
just computed and reads from the database only the hours of the same months outside them
(and only where a reading says some can be stored). These tests hold that to the figure a
full recomputation from the raw counters gives:

- a late day between stored days: its day and the month are re-summed with the days
  before and after it;
- readings gone (deleted) while their roll-ups stay: a recompute leaves the stored days
  and months as the stored hours say, not as if the meter had used nothing;
- at the live edge the pass reads everything after its window (no statement for the first
  reading after it): a reading stamped hours ahead (a clock ahead) is still the end of
  the interval a late reading splits;
- a meter re-pointed in the site file to another device (a new meter on a new address):
  the new device has no reading before its first, yet the meter's month keeps the hours
  its old device gave it.
"""

from __future__ import annotations

import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from energy import accounting
from energy.site import Site
from enmon import touched as tch
from enmon.localrun import InfluxDB1
from tests.conftest import INFLUX_DB
from tests.support import influx_rows, rules_pass

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 11, 10, tzinfo=SH)
SITE = Site.model_validate({
    "site": "site-p", "timezone": "Asia/Shanghai",
    "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
        {"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
         "category": "01000", "building_total": True, "poll_interval_s": 3600}]}]})


_stamp = tch.Stamper()


def stamp() -> int:
    """A marker's time as ingest stamps it: when it is written (the passes' clock is real)."""
    return _stamp(int(time.time() * 1000))


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def post(influx: InfluxDB1, body: str) -> None:
    req = urllib.request.Request(f"{influx.url}/write?db={INFLUX_DB}&precision=ms",
                                 data=body.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204


def write(influx: InfluxDB1, pts: list[tuple[datetime, float]], stamp: int,
          device: str = "main") -> None:
    """Readings of ``device`` and the marker ingest adds to the same write."""
    lines = [f"meter,site=site-p,gateway=gw-01,device={device},building=b1,"
             f"energy_type=electricity active_energy_import_kwh={v!r} {ms(t)}" for t, v in pts]
    lines.append(tch.marker_line("site-p", "test", {
        ("gw-01", device): (ms(min(t for t, _ in pts)), ms(max(t for t, _ in pts)))}, stamp))
    post(influx, "\n".join(lines))


def stored(influx: InfluxDB1, meas: str) -> dict[int, float]:
    return {int(r["time"]): float(r["amount"]) for r in influx_rows(
        influx.url, INFLUX_DB, f"SELECT amount FROM {meas} WHERE meter = 'main'")}


def hourly(start: datetime, hours: int, per_h: float, base: float) -> list[tuple[datetime, float]]:
    return [(start + timedelta(hours=i), base + per_h * i) for i in range(hours + 1)]


def close(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-9 for k in a)


def expected(pts: list[tuple[datetime, float]]) -> dict[str, dict[int, float]]:
    ivs = accounting.intervals([(ms(t), v) for t, v in pts])
    return {size: accounting.rollup(ivs, size, SH) for size in ("hour", "day", "month")}


async def test_a_late_day_between_stored_days_resums_its_day_and_month(
        influxdb: InfluxDB1) -> None:
    now = ms(DAY + timedelta(days=4))
    before = hourly(DAY, 24, 10.0, 1000.0)  # day 1, 00:00 … day 2 00:00
    after = hourly(DAY + timedelta(days=2), 24, 30.0, 1500.0)  # day 3 … day 4 00:00
    write(influxdb, before, stamp())
    write(influxdb, after, stamp())
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    # day 2 arrives late (a gateway's replay): not the straight line the gap was spread as
    late = [(DAY + timedelta(days=1, hours=h), 1240.0 + 5.0 * h * h / 23) for h in range(1, 24)]
    write(influxdb, late, stamp())
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    want = expected(before + late + after)
    got = stored(influxdb, "energy_hourly")
    assert close(got, want["hour"]), _debug(got, want["hour"])
    assert close(stored(influxdb, "energy_daily"), want["day"])
    assert close(stored(influxdb, "energy_monthly"), want["month"])
    assert abs(sum(want["day"].values()) - stored(influxdb, "energy_monthly")[
        ms(DAY.replace(day=1))]) < 1e-9


def query(influx: InfluxDB1, q: str) -> Any:
    data = urllib.parse.urlencode({"q": q, "db": INFLUX_DB}).encode()
    with urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10) as r:
        return r.read()


async def test_readings_gone_leave_the_stored_days_as_their_hours_say(
        influxdb: InfluxDB1) -> None:
    now = ms(DAY + timedelta(days=3))
    pts = hourly(DAY, 36, 10.0, 1000.0)
    write(influxdb, pts, stamp())
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    days, months = stored(influxdb, "energy_daily"), stored(influxdb, "energy_monthly")
    assert close(days, expected(pts)["day"])
    query(influxdb, "DELETE FROM meter WHERE device = 'main'")
    # a recompute of the span (as `enmon rules recompute` asks) finds no readings
    post(influxdb, tch.marker_line("site-p", "recompute", {
        ("gw-01", "main"): (ms(pts[0][0]), ms(pts[-1][0]))}, stamp()))
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    assert close(stored(influxdb, "energy_daily"), days)
    assert close(stored(influxdb, "energy_monthly"), months)


async def test_at_the_live_edge_a_reading_stamped_ahead_ends_the_split_interval(
        influxdb: InfluxDB1) -> None:
    from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
    from rules.config import RulesConfig
    from rules.engine import Engine
    from rules.lifecycle import AlertBook
    from rules.scheduled import Scheduler

    at = DAY + timedelta(hours=2, minutes=5)
    early = hourly(DAY, 2, 10.0, 1000.0)  # 00:00 … 02:00
    ahead = [(DAY + timedelta(hours=7), 1090.0)]  # a clock five hours ahead
    write(influxdb, early + ahead, ms(DAY))
    late = [(DAY + timedelta(hours=2, minutes=30), 1030.0)]  # then the reading of 02:30

    async def one_pass(clock_s: float) -> None:
        cfg = RulesConfig.model_validate({"influx": {"url": influxdb.url,
                                                     "database": INFLUX_DB}})
        engine = Engine(cfg, [SITE], AlertBook(), started_ms=ms(at))
        icfg = InfluxConfig(url=influxdb.url, database=INFLUX_DB)
        q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
        try:
            await Scheduler(engine, q, w, settle_s=0, clock=lambda: clock_s).run_pass(ms(at))
        finally:
            await q.close()
            await w.close()

    await one_pass(at.timestamp())
    write(influxdb, late, ms(at) + 30_000)
    await one_pass(at.timestamp() + 60)
    want = expected(early + late + ahead)
    assert close(stored(influxdb, "energy_hourly"), want["hour"])
    assert close(stored(influxdb, "energy_daily"), want["day"])
    assert close(stored(influxdb, "energy_monthly"), want["month"])


async def test_a_meter_re_pointed_to_a_new_device_keeps_its_old_hours_in_its_month(
        influxdb: InfluxDB1) -> None:
    now = ms(DAY + timedelta(days=4))
    old = hourly(DAY, 24, 10.0, 1000.0)  # day 1 on the old device: 240 kWh
    write(influxdb, old, stamp())
    await rules_pass(influxdb.url, INFLUX_DB, [SITE], now)
    # the installer puts a new meter on a new address: the site file points "main" at it
    spec = SITE.model_dump(exclude_defaults=True)
    spec["buildings"][0]["meters"][0]["device"] = "main2"
    moved = Site.model_validate(spec)
    # the engine restarts with it before the new meter sends anything (a pass with nothing
    # to roll up), then its readings come
    await rules_pass(influxdb.url, INFLUX_DB, [moved], now)
    new = hourly(DAY + timedelta(days=2), 24, 20.0, 5.0)  # day 3 on the new one: 480 kWh
    write(influxdb, new, stamp(), device="main2")
    await rules_pass(influxdb.url, INFLUX_DB, [moved], now)
    hours = stored(influxdb, "energy_hourly")
    want = {**expected(old)["hour"], **expected(new)["hour"]}
    assert close(hours, want), _debug(hours, want)
    days = stored(influxdb, "energy_daily")
    assert close(days, {**expected(old)["day"], **expected(new)["day"]}), days
    month = stored(influxdb, "energy_monthly")
    assert list(month) == [ms(DAY.replace(day=1))]
    # the month is its hours: 240 kWh on the old device and 480 on the new
    assert abs(month[ms(DAY.replace(day=1))] - sum(hours.values())) < 1e-9, month
    assert abs(sum(hours.values()) - 720.0) < 1e-9


def _debug(a: dict[int, float], b: dict[int, float]) -> list[Any]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) is None or b.get(k) is None or abs(a[k] - b[k]) >= 1e-9]
