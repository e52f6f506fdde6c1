"""Boiler checks against a real influxd: inconsistent meters, the indirect method stored.

Readings go straight into ``meter`` (as ingest writes them), then one boiler step runs;
the expected figures are worked out in the comments.
"""

from __future__ import annotations

import urllib.request
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.boiler import steam_enthalpy, water_enthalpy
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
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=SH)
NCV = 35.588  # MJ/m3


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


SITE = {"site": "campus", "buildings": [{
    "id": "boiler-house", "floor_area_m2": 500,
    "meters": [
        {"id": "b1-gas", "gateway": "gw-02", "device": "b1-gas", "energy_type": "gas"},
        {"id": "b1-steam", "gateway": "gw-02", "device": "b1-steam", "energy_type": "steam"}],
    "boilers": [{"id": "b1", "kind": "steam", "fuel": "natural_gas", "rated_t_h": 4,
                 "ncv_mj_per_unit": NCV, "fuel_meter": "b1-gas", "output_meter": "b1-steam",
                 "steam_gauge_mpa": 0.8, "feedwater_temp_c": 20, "startup_min": 0,
                 "instruments": {"gateway": "gw-02", "device": "b1-ctl"}}]}]}


def readings(direct: float, flue_c: float) -> list[str]:
    """26 h at 80 % of 4 t/h, gas metered for ``direct`` % (direct method), read every 15 min."""
    dh = steam_enthalpy(0.8) - water_enthalpy(20.0, 0.8)
    steam_per_step = 4.0 * 0.8 / 4
    gas_per_step = steam_per_step * 1000 * dh / (direct / 100 * NCV * 1000)
    lines, t, steam, gas = [], NOW - timedelta(hours=26), 0.0, 0.0
    while t <= NOW:
        lines += [f"meter,site=campus,gateway=gw-02,device=b1-gas gas_volume_m3={gas!r} {ms(t)}",
                  f"meter,site=campus,gateway=gw-02,device=b1-steam steam_mass_t={steam!r} {ms(t)}",
                  f"meter,site=campus,gateway=gw-02,device=b1-ctl flue_o2_pct=3.0,"
                  f"flue_temp_c={flue_c!r},combustion_air_temp_c=20.0 {ms(t)}"]
        steam, gas, t = steam + steam_per_step, gas + gas_per_step, t + timedelta(minutes=15)
    return lines


async def boiler_pass(url: str, lines: list[str], engine: Engine) -> list[tuple[str, str]]:
    req = urllib.request.Request(f"{url}/write?db={INFLUX_DB}&precision=ms",
                                 data="\n".join(lines).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 204
    icfg = InfluxConfig(url=url, database=INFLUX_DB)
    query, writer = InfluxQL(icfg), InfluxV1Writer(icfg)
    try:
        out = await Scheduler(engine, query, writer, settle_s=0).boilers(
            engine.sites["campus"], ms(NOW), PassStats("campus"))
    finally:
        await query.close()
        await writer.close()
    return [(n.rule, n.summary) for n in out.notifications if n.kind == "firing"]


async def test_inconsistent_meters_raise_data_quality_not_a_verdict(influxdb: InfluxDB1) -> None:
    # the steam meter over-reads (or the gas meter under-reads): the direct method gives
    # 104 % on a NON-condensing gas boiler, impossible on the NCV basis (ceiling 100 %);
    # the flue gauges say 100 - (160 - 20) × (0.66/18 + 0.009) = 93.6 % (Siegert, U coef.)
    engine = Engine(RulesConfig(), [Site.model_validate(SITE)], AlertBook(),
                    started_ms=ms(NOW))
    fired = await boiler_pass(influxdb.url, readings(104.0, 160.0), engine)
    rules = [r for r, _ in fired]
    assert rules == ["boiler_implausible"]  # no "meets the 92 % limit", no verdict at all
    summary = fired[0][1]
    assert "104.0 %" in summary and "ceiling 100 %" in summary
    assert "b1-gas (gw-02/b1-gas gas_volume_m3)" in summary
    assert "b1-steam (gw-02/b1-steam steam_mass_t)" in summary
    # both methods are stored, each pass, beside the limit and the ceiling
    (pt,) = influx_rows(influxdb.url, INFLUX_DB,
                        "SELECT * FROM boiler_efficiency WHERE boiler = 'b1'")
    assert pt["direct_pct"] == pytest.approx(104.0, abs=0.05)
    assert pt["indirect_pct"] == pytest.approx(100 - 140 * (0.66 / 18 + 0.009), abs=0.01)
    assert (pt["limit_pct"], pt["ceiling_pct"], pt["building"]) == (92.0, 100.0, "boiler-house")
    # 95 whole 15-min steps in the 24 h window (the one ending at NOW is not read yet)
    assert pt["time"] == ms(NOW) and pt["qualified_h"] == pytest.approx(23.75)


async def test_indirect_method_is_alerted_against_the_limit(influxdb: InfluxDB1) -> None:
    # direct 93 % meets the 92 % limit; a hot flue (260 °C) gives the heat-loss method
    # 100 - 240 × (0.66/18 + 0.009) = 89.04 % < 92 %: its own alert, stored too
    engine = Engine(RulesConfig(), [Site.model_validate(SITE)], AlertBook(),
                    started_ms=ms(NOW))
    fired = await boiler_pass(influxdb.url, readings(93.0, 260.0), engine)
    assert [r for r, _ in fired] == ["boiler_efficiency_indirect"]
    assert "indirect (heat-loss) efficiency 89.0 % below the 92 % limit" in fired[0][1]
    (pt,) = influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM boiler_efficiency")
    assert pt["indirect_pct"] == pytest.approx(100 - 240 * (0.66 / 18 + 0.009), abs=0.01)
    assert pt["direct_pct"] == pytest.approx(93.0, abs=0.05)
