"""Benchmark: roll-up catch-up after a 10 h outage of 100 gateways vs one normal pass.

    .venv/bin/python bench/rollup_catchup.py [--gateways 100 --meters 10 --outage-h 10]

Starts its own influxd (Debian 1.6) on a free loopback port in a temp dir. One site,
``gateways × meters`` counters read every 15 minutes, 24 h of history already rolled up.
Then two things are timed, each as one scheduled pass of the rule engine:

- a *normal* pass: every meter sent its next reading (one poll interval of new data);
- a *catch-up* pass: every gateway was offline for ``--outage-h`` hours and replays its
  disk queue at once (``outage_h × 4`` readings per meter arrive in one go).

Both are driven by the ``energy_touched`` markers ingest writes, as in production. Printed:
the time of each, the ratio catch-up / normal, and the baseline measured in the same run —
reading the replayed raw readings back with one query. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from energy.site import Site
from enmon import touched as tch
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook
from rules.scheduled import PassStats, Scheduler

DB = "enmon"
STEP = 15 * 60_000
SITE = "bench"


def build_site(gateways: int, meters: int) -> Site:
    buildings = []
    for g in range(gateways):
        buildings.append({"id": f"b{g}", "floor_area_m2": 5000, "meters": [
            {"id": f"g{g}-m{m}", "gateway": f"gw-{g}", "device": f"m{m}",
             "energy_type": "electricity", "category": "01000" if m == 0 else "01A00",
             "building_total": m == 0, "poll_interval_s": 900} for m in range(meters)]})
    return Site.model_validate({"site": SITE, "buildings": buildings})


def value(m_id: str, ts: int) -> float:
    return 1000.0 + (hash(m_id) % 1000) + ts / STEP * 12.5


def write(url: str, site: Site, times: list[int]) -> int:
    lines = [f"meter,site={SITE},gateway={m.gateway},device={m.device},building={b.id},"
             f"energy_type=electricity active_energy_import_kwh={value(m.id, ts)!r} {ts}"
             for b, m in site.meters() for ts in times]
    lines.append(tch.marker_line(SITE, "bench", {(m.gateway, m.device): (times[0], times[-1])
                                                 for _, m in site.meters()},
                                 int(time.time() * 1000)))
    for i in range(0, len(lines), 20_000):
        req = urllib.request.Request(f"{url}/write?db={DB}&precision=ms",
                                     data="\n".join(lines[i:i + 20_000]).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=120) as r:
            assert r.status == 204
    return len(lines) - 1


async def a_pass(sched: Scheduler, site: Site, now: int) -> tuple[float, PassStats]:
    st = PassStats(SITE)
    t0 = time.perf_counter()
    await sched.rollup(site, now, st)
    return time.perf_counter() - t0, st


async def raw_read(url: str, start: int, end: int) -> tuple[int, float]:
    q = InfluxQL(InfluxConfig(url=url, database=DB, timeout_s=300))
    t0 = time.perf_counter()
    try:
        rows = sum(len(s["values"]) for s in await q.query(
            f"SELECT active_energy_import_kwh FROM meter WHERE site = '{SITE}' "
            f"AND time >= {start}ms AND time <= {end}ms GROUP BY gateway, device"))
    finally:
        await q.close()
    return rows, time.perf_counter() - t0


async def run(url: str, site: Site, outage_h: int) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    t_end = int(datetime(2026, 11, 20, 12, 0, tzinfo=tz).timestamp() * 1000)
    t_out = t_end - outage_h * 3_600_000  # the outage began here
    history = list(range(t_out - 24 * 3_600_000, t_out + 1, STEP))
    cfg = RulesConfig.model_validate({"influx": {"url": url, "database": DB}})
    engine = Engine(cfg, [site], AlertBook(), started_ms=t_end)
    icfg = InfluxConfig(url=url, database=DB, timeout_s=300)
    q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
    sched = Scheduler(engine, q, w, settle_s=0)
    try:
        n = write(url, site, history)
        first, _ = await a_pass(sched, site, t_out)
        print(f"setup: {len(site.meters())} meters on {len({m.gateway for _, m in site.meters()})}"
              f" gateways, {n:,} readings (24 h) rolled up in {first:.2f} s")
        # a normal pass: one new reading per meter
        n = write(url, site, [t_out + STEP])
        normal, st_n = await a_pass(sched, site, t_out + STEP)
        print(f"normal pass (one poll interval, {n:,} readings): {normal:.3f} s, "
              f"{st_n.queries} requests, {st_n.points_read:,} points read, "
              f"{st_n.points_written:,} written")
        # the outage ends: every gateway replays outage_h hours at once
        replay = list(range(t_out + 2 * STEP, t_end + 1, STEP))
        n = write(url, site, replay)
        catch, st_c = await a_pass(sched, site, t_end)
        print(f"catch-up pass ({outage_h} h outage of every gateway, {n:,} readings): "
              f"{catch:.3f} s, {st_c.queries} requests, {st_c.points_read:,} points read, "
              f"{st_c.points_written:,} written")
        print("catch-up steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in st_c.per_step.items()))
        rows, raw = await raw_read(url, replay[0], replay[-1])
        print(f"baseline: raw read of the replayed readings, {rows:,} rows in {raw:.3f} s")
        print(f"ratio catch-up / normal pass: {catch / normal:.1f}; "
              f"catch-up / raw read: {catch / raw:.1f}")
    finally:
        await q.close()
        await w.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateways", type=int, default=100)
    ap.add_argument("--meters", type=int, default=10, help="per gateway")
    ap.add_argument("--outage-h", type=int, default=10)
    a = ap.parse_args()
    site = build_site(a.gateways, a.meters)
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(workdir=Path(tmp) / "influxd")
        server.start()
        try:
            data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{DB}"'}).encode()
            urllib.request.urlopen(f"{server.url}/query", data=data, timeout=10).close()
            asyncio.run(run(server.url, site, a.outage_h))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
