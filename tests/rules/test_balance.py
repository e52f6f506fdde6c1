"""The master-vs-submeter balance step against a real influxd, from ``energy_daily``.

The daily roll-ups are written straight into ``energy_daily`` (as the roll-up step
writes them), then the scheduler's balance step runs; the figures are worked out below.
"""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.site import Site
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook
from rules.passbase import PassStats
from rules.scheduled import Scheduler
from tests.conftest import INFLUX_DB
from tests.support import influx_rows

pytestmark = pytest.mark.slow
SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 7, 1, 9, 30, tzinfo=SH)


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def m(mid: str, cat: str, total: bool = False) -> dict:  # type: ignore[type-arg]
    return {"id": mid, "gateway": "gw-01", "device": mid, "energy_type": "electricity",
            "category": cat, "building_total": total}


SITE = {"site": "campus", "buildings": [
    {"id": "office-1", "floor_area_m2": 1000,
     "meters": [m("main", "01000", True), m("light", "01A00"), m("office-light", "01A10"),
                m("hvac", "01B00"), m("lifts", "01C00")]},
    # only the chiller is sub-metered: the site file says its sub-items do not cover the main
    {"id": "lab", "floor_area_m2": 500, "submeter_balance": False,
     "meters": [m("lab-main", "01000", True), m("lab-chiller", "01B00")]}]}


def daily_lines(hvac_on_29: float) -> list[str]:
    """Seven completed local days, 24–30 June: main 1 000, sub-items 400 + 450 + 100 kWh.

    office-light (300 kWh, 01A10) sits inside light (01A00) and must not be added again.
    """
    lines = []
    for d in range(24, 31):
        day = datetime(2026, 6, d, tzinfo=SH)
        vals = {"main": 1000.0, "light": 400.0, "office-light": 300.0,
                "hvac": hvac_on_29 if d == 29 else 450.0, "lifts": 100.0,
                "lab-main": 800.0, "lab-chiller": 200.0}
        for mid, v in vals.items():
            b = "lab" if mid.startswith("lab") else "office-1"
            total = "1" if mid in ("main", "lab-main") else "0"
            lines.append(f"energy_daily,site=campus,building={b},meter={mid},"
                         f"energy_type=electricity,category=x,total={total} "
                         f"amount={v!r},kgce={v * 0.1229!r} {ms(day)}")
    # today (1 July) is not over: a wildly off partial day is not judged
    lines.append(f"energy_daily,site=campus,building=office-1,meter=hvac,energy_type=electricity,"
                 f"category=01B00,total=0 amount=5000.0,kgce=1.0 {ms(NOW.replace(hour=0))}")
    return lines


async def balance_step(url: str, lines: list[str], engine: Engine, now: datetime
                       ) -> list[tuple[str, str, str, float | None]]:
    req = urllib.request.Request(f"{url}/write?db={INFLUX_DB}&precision=ms",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204
    icfg = InfluxConfig(url=url, database=INFLUX_DB)
    query, writer = InfluxQL(icfg), InfluxV1Writer(icfg)
    try:
        out = await Scheduler(engine, query, writer, settle_s=0).balance(
            engine.sites["campus"], ms(now), PassStats("campus"))
    finally:
        await query.close()
        await writer.close()
    return [(n.rule, n.kind, n.summary, n.value) for n in out.notifications]


async def test_a_balance_deviation_alerts_and_late_data_resolves_it(influxdb: InfluxDB1) -> None:
    engine = Engine(RulesConfig(), [Site.model_validate(SITE)], AlertBook(), started_ms=ms(NOW))
    # 29 June: the HVAC meter reads 560 kWh -> 400 + 560 + 100 = 1 060 kWh = +6.0 % of the
    # main meter's 1 000 kWh > 5 %. The other days: 950 kWh = −5.0 %, within 5 %.
    notes = await balance_step(influxdb.url, daily_lines(560.0), engine, NOW)
    assert [(r, k) for r, k, _, _ in notes] == [("submeter_balance", "firing")]
    _, _, summary, value = notes[0]
    assert value == pytest.approx(0.06)
    assert "2026-06-29: sub-items 1,060.0 vs main 1,000.0 kWh (+6.0%)" in summary
    assert "1 of 7 days" in summary and "light, hvac, lifts" in summary
    # every judged day is stored for the report and Grafana
    rows = influx_rows(influxdb.url, INFLUX_DB,
                       "SELECT main_kwh, parts_kwh, deviation FROM energy_balance "
                       "WHERE building = 'office-1'")
    assert len(rows) == 7
    assert [r["parts_kwh"] for r in rows] == [950.0] * 5 + [1060.0, 950.0]
    assert rows[5]["time"] == ms(datetime(2026, 6, 29, tzinfo=SH))
    assert influx_rows(influxdb.url, INFLUX_DB,
                       "SELECT * FROM energy_balance WHERE building = 'lab'") == []
    # the roll-ups recompute 29 June after a correction: the next pass resolves the alert
    notes = await balance_step(influxdb.url, daily_lines(450.0), engine,
                               NOW + timedelta(minutes=5))
    assert [(r, k) for r, k, _, _ in notes] == [("submeter_balance", "resolved")]
