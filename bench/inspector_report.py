"""How long inspector work takes on a simulated campus month in a real influxd.

Prints figures, never asserts. Baselines measured in the same run:
- history: ``fetch_history`` of one meter's month vs. a bare InfluxQL ``SELECT`` of the same
  points over urllib (what the history adds: gaps, flags, refusals, tags);
- report: ``fetch_report`` (queries + accounting) vs. the bare hourly-counter query it needs.

    .venv/bin/python bench/inspector_report.py [--days 31]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from enmon.influx import InfluxConfig, InfluxQL, make_writer
from enmon.localrun import InfluxDB1
from inspector import history as hist
from inspector import render
from inspector.store import Store, fetch_history, fetch_report
from stack.month import load_month, month_bounds


def raw_query(url: str, q: str) -> int:
    data = urllib.parse.urlencode({"db": "enmon", "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=60) as r:
        body = json.load(r)
    return sum(len(s["values"]) for s in body["results"][0].get("series", []))


async def median_s(fn: Callable[[], Awaitable[Any]], n: int = 5) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


async def main(days: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(workdir=Path(tmp) / "influxd")
        server.start()
        try:
            cfg = InfluxConfig(url=server.url, database="enmon")
            q, w = InfluxQL(cfg), make_writer(cfg)
            await q.create_database()
            start, _ = month_bounds("2026-10")
            end = start + dt.timedelta(days=days)
            loaded = await load_month(query=q, writer=w, start=start, end=end)
            print(f"load: {days} simulated days, {loaded.samples:,} readings, {loaded.lines:,} "
                  f"points in {loaded.seconds:.1f} s = {loaded.samples / loaded.seconds:,.0f} "
                  "readings/s (simulate + encode + ingest processor + rules + influxd write)")
            store = Store(q)
            s0, s1 = loaded.start_ms, loaded.end_ms
            base = await median_s(lambda: asyncio.to_thread(
                raw_query, server.url, "SELECT active_energy_import_kwh, active_power_kw, "
                "flag_active_power_kw, seq FROM meter WHERE device = 'school-main' AND "
                f"time >= {s0}ms AND time < {s1}ms"))
            h_s = await median_s(lambda: fetch_history(store, site="demo-campus",
                                                       device="school-main", start=s0, end=s1))
            h = await fetch_history(store, site="demo-campus", device="school-main", start=s0,
                                    end=s1)
            print(f"history raw, 1 meter, {h.readings:,} readings: {h_s * 1000:.0f} ms "
                  f"(bare SELECT {base * 1000:.0f} ms, ratio {h_s / base:.1f}x)")
            t = time.perf_counter()
            buf = io.BytesIO()
            hist.write_xlsx(h, buf)
            print(f"xlsx export of it: {(time.perf_counter() - t) * 1000:.0f} ms, "
                  f"{len(buf.getvalue()):,} bytes")
            base_r = await median_s(lambda: asyncio.to_thread(
                raw_query, server.url, "SELECT first(active_energy_import_kwh) FROM meter WHERE "
                f"time >= {s0 - 86_400_000}ms AND time < {s1 + 3_600_000}ms "
                "GROUP BY time(1h), gateway, device fill(none)"), n=3)
            r_s = await median_s(lambda: fetch_report(store, site=loaded.site, period="2026-10"),
                                 n=3)
            r0_s = await median_s(lambda: fetch_report(store, site=loaded.site,
                                                       period="2026-10", compare=False), n=3)
            rep = await fetch_report(store, site=loaded.site, period="2026-10")
            print(f"report figures (site, month, with 环比/同比 = three periods' reports): "
                  f"{r_s * 1000:.0f} ms (bare hourly counter query {base_r * 1000:.0f} ms, "
                  f"ratio {r_s / base_r:.1f}x); without the comparisons {r0_s * 1000:.0f} ms "
                  f"(ratio {r0_s / base_r:.1f}x)")
            t = time.perf_counter()
            html = render.render_html(rep)
            t_html = time.perf_counter() - t
            t = time.perf_counter()
            pdf = render.render_pdf(rep)
            t_pdf = time.perf_counter() - t
            print(f"render: HTML {t_html * 1000:.0f} ms ({len(html):,} bytes), PDF "
                  f"{t_pdf:.2f} s ({len(pdf):,} bytes)")
            await store.close()
            await w.close()
        finally:
            server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=31)
    asyncio.run(main(ap.parse_args().days))
