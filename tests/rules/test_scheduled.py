"""Scheduled checks against a real influxd: rollups, quota, budget, boiler, completeness.

The readings are written straight into the ``meter`` measurement (as ingest would),
then one scheduler pass runs; the expected numbers are worked out in the comments.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.boiler import steam_enthalpy, water_enthalpy
from energy.site import Site
from enmon import touched as tch
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook
from rules.scheduled import Scheduler
from tests.conftest import INFLUX_DB
from tests.support import influx_rows

pytestmark = pytest.mark.slow
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=SH)


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def write(url: str, lines: list[str]) -> None:
    for i in range(0, len(lines), 5000):
        req = urllib.request.Request(f"{url}/write?db={INFLUX_DB}&precision=ms",
                                     data="\n".join(lines[i:i + 5000]).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204


SITE = {
    "site": "campus",
    "buildings": [
        {"id": "office-1", "floor_area_m2": 1000, "occupants": 50,
         "quota": {"value": 50, "unit": "kWh/(m2·a)", "source": "test quota"},
         "budgets": [{"name": "year-power", "period": "year", "amount": 30000, "unit": "kWh"}],
         "meters": [
             {"id": "main", "gateway": "gw-01", "device": "main", "energy_type": "electricity",
              "category": "01000", "building_total": True, "rollover_at": 100000,
              "poll_interval_s": 86400},
             {"id": "silent", "gateway": "gw-01", "device": "silent",
              "energy_type": "electricity", "category": "01B00", "poll_interval_s": 60}]},
        {"id": "boiler-house", "floor_area_m2": 500,
         "meters": [
             {"id": "b1-gas", "gateway": "gw-02", "device": "b1-gas", "energy_type": "gas",
              "poll_interval_s": 900},
             {"id": "b1-steam", "gateway": "gw-02", "device": "b1-steam", "energy_type": "steam",
              "poll_interval_s": 900}],
         "boilers": [{"id": "b1", "kind": "steam", "fuel": "natural_gas", "rated_t_h": 4,
                      "ncv_mj_per_unit": 35.588, "fuel_meter": "b1-gas",
                      "output_meter": "b1-steam", "steam_gauge_mpa": 0.8,
                      "feedwater_temp_c": 20, "startup_min": 0,
                      "instruments": {"gateway": "gw-02", "device": "b1-ctl"}}]},
    ],
}


def readings() -> list[str]:
    lines = []
    # main: 200 kWh per local day from 1 Jan, starting at 95 000 on a register that wraps at
    # 100 000 (after 25 days); plus 100 kWh in the morning of 1 July
    v = 95_000.0
    day = datetime(2026, 1, 1, tzinfo=SH)
    while day <= datetime(2026, 7, 1, tzinfo=SH):
        lines.append(f"meter,site=campus,gateway=gw-01,device=main,building=office-1,"
                     f"energy_type=electricity active_energy_import_kwh={v % 100_000!r} {ms(day)}")
        v += 200.0
        day += timedelta(days=1)
    lines.append(f"meter,site=campus,gateway=gw-01,device=main,building=office-1,"
                 f"energy_type=electricity active_energy_import_kwh={(v - 100) % 100_000!r} "
                 f"{ms(NOW)}")
    # boiler b1: 80 % of 4 t/h for 26 h before NOW at 90.0 % efficiency, read every 15 min
    dh = steam_enthalpy(0.8) - water_enthalpy(20.0, 0.8)
    steam_per_step = 4.0 * 0.8 / 4  # t per 15 min
    gas_per_step = steam_per_step * 1000 * dh / (0.90 * 35_588)
    t = NOW - timedelta(hours=26)
    steam = gas = 0.0
    while t <= NOW:
        lines.append(f"meter,site=campus,gateway=gw-02,device=b1-gas gas_volume_m3={gas!r} {ms(t)}")
        lines.append(f"meter,site=campus,gateway=gw-02,device=b1-steam steam_mass_t={steam!r} "
                     f"{ms(t)}")
        lines.append(f"meter,site=campus,gateway=gw-02,device=b1-ctl flue_o2_pct=3.0,"
                     f"flue_temp_c=160.0,combustion_air_temp_c=20.0,feedwater_temp_c=20.0 {ms(t)}")
        steam += steam_per_step
        gas += gas_per_step
        t += timedelta(minutes=15)
    return lines


def marked(lines: list[str]) -> list[str]:
    """The lines plus the ``energy_touched`` marker any writer of readings adds (as ingest)."""
    touched: dict[tuple[str, str], tuple[int, int]] = {}
    for ln in lines:
        tags = dict(kv.split("=", 1) for kv in ln.split(" ", 1)[0].split(",")[1:])
        tch.widen(touched, (tags["gateway"], tags["device"]), int(ln.rsplit(" ", 1)[1]),
                  int(ln.rsplit(" ", 1)[1]))
    return [*lines, tch.marker_line("campus", "test", touched, int(time.time() * 1000))]


async def test_one_pass_rolls_up_and_checks_quota_budget_boiler_completeness(
        influxdb: InfluxDB1) -> None:
    write(influxdb.url, marked(readings()))
    cfg = RulesConfig.model_validate({"influx": {"url": influxdb.url, "database": INFLUX_DB}})
    site = Site.model_validate(SITE)
    engine = Engine(cfg, [site], AlertBook(), started_ms=ms(NOW))
    icfg = InfluxConfig(url=influxdb.url, database=INFLUX_DB)
    query, writer = InfluxQL(icfg), InfluxV1Writer(icfg)
    sched = Scheduler(engine, query, writer, settle_s=0)
    try:
        out, stats = await sched.run_pass(ms(NOW))
    finally:
        await query.close()
        await writer.close()

    # rollups: 200 kWh on 15 March (local day) and on the day the register wrapped (26 Jan),
    # 24.58 kgce each (200 × 0.1229, GB/T 2589-2020 当量值); 100 kWh so far on 1 July
    def daily(day: datetime) -> dict:  # type: ignore[type-arg]
        rows = influx_rows(influxdb.url, INFLUX_DB,
                           f"SELECT amount, kgce FROM energy_daily WHERE meter = 'main' "
                           f"AND time = {ms(day)}ms")
        assert len(rows) == 1, rows
        return rows[0]

    mar15 = daily(datetime(2026, 3, 15, tzinfo=SH))
    assert mar15["amount"] == pytest.approx(200.0) and mar15["kgce"] == pytest.approx(24.58)
    assert daily(datetime(2026, 1, 26, tzinfo=SH))["amount"] == pytest.approx(200.0)
    assert daily(datetime(2026, 7, 1, tzinfo=SH))["amount"] == pytest.approx(100.0)
    hours = influx_rows(influxdb.url, INFLUX_DB,
                        f"SELECT amount FROM energy_hourly WHERE meter = 'main' AND "
                        f"time >= {ms(datetime(2026, 3, 15, tzinfo=SH))}ms AND "
                        f"time < {ms(datetime(2026, 3, 16, tzinfo=SH))}ms")
    assert len(hours) == 24 and all(h["amount"] == pytest.approx(200 / 24) for h in hours)
    # March: 31 days × 200 kWh = 6200 kWh (local calendar month)
    march = influx_rows(influxdb.url, INFLUX_DB,
                        f"SELECT amount FROM energy_monthly WHERE meter = 'main' AND "
                        f"time = {ms(datetime(2026, 3, 1, tzinfo=SH))}ms")
    assert [m["amount"] for m in march] == [pytest.approx(6200.0)]

    fired = {(n.rule, n.labels.get("device") or n.labels.get("boiler") or n.labels.get("building"))
             : n for n in out.notifications if n.kind == "firing"}
    # quota 50 kWh/(m²·a) × 1000 m² = 50 000 kWh. YTD = 181 days × 200 + 100 = 36 300 kWh.
    # Flat monthly weights at 1 July 12:00: (6 + 0.5/31)/12 = 0.50134 of the year is due,
    # projection 36 300 / 0.50134 = 72 405 kWh > 50 000: early warning, not yet exceeded.
    warn = fired[("quota_early_warning", "office-1")]
    assert warn.value == pytest.approx(36_300 / (181.5 / 365), rel=1e-4)
    assert ("quota_exceeded", "office-1") not in fired
    # budget 30 000 kWh for the year: 36 300 used = exhausted
    assert fired[("budget", "office-1")].severity == "critical"
    # boiler at 90.0 % against GB 24500-2020 gas grade 3 = 92 %
    b = fired[("boiler_efficiency", "b1")]
    assert b.value == pytest.approx(90.0, abs=0.05)
    # and the heat-loss method from the flue gauges: 100 - 140 × (0.66/18 + 0.009) = 93.6 %
    assert "indirect (heat-loss) method 93.6 %" in b.summary
    # completeness: the meter that never reported; the daily-read main meter is complete
    assert ("completeness", "silent") in fired and ("completeness", "main") not in fired
    assert stats[0].queries <= 20
