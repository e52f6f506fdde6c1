"""``enmon rules recompute``: readings stored without markers (an upgrade, a bulk import)
reach the roll-ups once the period is marked."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from energy.site import load_site
from enmon.influx import InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from rules.config import load_config
from rules.engine import Engine
from rules.lifecycle import AlertBook
from rules.scheduled import Scheduler
from tests.conftest import INFLUX_DB
from tests.support import influx_rows

SH = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 10, tzinfo=SH)


async def a_pass(cfg_path: Path) -> None:
    cfg = load_config(cfg_path)
    site = load_site(cfg.sites[0])
    q, w = InfluxQL(cfg.influx), InfluxV1Writer(cfg.influx)
    try:
        await Scheduler(Engine(cfg, [site], AlertBook(), started_ms=0), q, w,
                        settle_s=0).run_pass(int(DAY.timestamp() * 1000) + 86_400_000)
    finally:
        await q.close()
        await w.close()


async def test_recompute_marks_a_period_and_the_next_pass_rolls_it_up(
        influxdb: InfluxDB1, tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"site": "s1", "buildings": [{
        "id": "b1", "floor_area_m2": 100, "meters": [{
            "id": "main", "gateway": "gw-01", "device": "main",
            "energy_type": "electricity", "building_total": True}]}]}))
    cfg = tmp_path / "rules.yaml"
    cfg.write_text(yaml.safe_dump({"influx": {"url": influxdb.url, "database": INFLUX_DB},
                                   "sites": [str(site)]}))
    body = "\n".join(
        f"meter,site=s1,gateway=gw-01,device=main active_energy_import_kwh={100.0 + 5 * h} "
        f"{int((DAY + timedelta(hours=h)).timestamp() * 1000)}" for h in range(25))
    req = urllib.request.Request(f"{influxdb.url}/write?db={INFLUX_DB}&precision=ms",
                                 data=body.encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()

    def daily() -> list[float]:
        return [r["amount"] for r in influx_rows(influxdb.url, INFLUX_DB,
                                                 "SELECT amount FROM energy_daily")]

    await a_pass(cfg)
    assert daily() == []  # nothing marked these readings as stored: nothing to roll up

    r = subprocess.run([sys.executable, "-m", "enmon", "rules", "recompute", "-c", str(cfg),
                        "--from", "2026-03-01", "--to", "2026-03-31"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "s1：已标记 1 块表计自 2026-03-01 起重算" in r.stdout  # zh-CN by default
    en = subprocess.run([sys.executable, "-m", "enmon", "rules", "recompute", "-c", str(cfg),
                         "--from", "2026-03-01", "--to", "2026-03-31", "--lang", "en"],
                        capture_output=True, text=True, timeout=60)
    assert "s1: 1 meters marked from 2026-03-01" in en.stdout
    await a_pass(cfg)
    assert daily() == [120.0]

    bad = subprocess.run([sys.executable, "-m", "enmon", "rules", "recompute", "-c", str(cfg),
                          "--site", "nosuch", "--from", "2026-03-01"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no site ['nosuch']" in bad.stderr
    assert "Traceback" not in bad.stderr
