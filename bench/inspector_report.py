"""How long inspector work takes on a simulated campus month (and one meter's year) in a
real influxd, against the bare queries of the same data measured in the same run.

Prints figures, never asserts. The data: the campus month of :func:`stack.month.load_month`
(every meter read every 15 min) and, for one meter (``school-main``), the calendar year
before it at 15 minutes (35,040 points, written as ingest writes them:
:func:`enmon.lineproto.batch_lines`).

The floor each figure is compared with (its *bare* query): the InfluxQL statement(s)
that fetch exactly the data the figure is computed from — same influxd, same database,
same time range, same columns — each POSTed to ``/query`` (``epoch=ms``) over
``urllib`` on loopback and its JSON body decoded with the stdlib ``json`` into Python
objects. Nothing else: no tags lookup, no gaps or flags, no accounting, no response
encoding. Figures:

- history API: ``GET /api/v1/sites/…/meters/school-main/history`` over HTTP against the
  real app (uvicorn + FastAPI, bearer token, JSON body read and decoded by the same stdlib
  ``json``) vs. the bare ``SELECT`` of the readings it shows (the meter's counter, rate,
  their ``flag_*`` and ``seq``); a month (~3 k rows) and a year (35 k rows);
- ``fetch_history`` in-process (what the CLI and console share) vs. the same SELECT;
- report: ``fetch_report`` (queries + accounting) vs. the bare statements it needs (every
  counter's first reading per step for the period, per day since 1 January, every
  counter's reading count, completeness, alerts: five statements, each a thread of its own,
  all at once as the report sends them; the time of the same statements one after another
  is printed beside); with 环比/同比 the report reads three periods, so its floor is the
  three periods' fifteen statements at once.

Each figure is the median of a few calls; ``--rounds`` repeats the whole set (the box is
shared and noisy) and the last lines give each ratio's range over the rounds.

    .venv/bin/python bench/inspector_report.py [--days 31] [--rounds 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import json
import math
import multiprocessing
import pstats
import socket
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from enmon import lineproto, wire
from enmon.influx import InfluxConfig, InfluxQL, make_writer
from enmon.localrun import InfluxDB1, free_port
from inspector import history as hist
from inspector import render
from inspector.store import DAY_MS, Store, fetch_history, fetch_report
from stack.month import load_month, month_bounds

TOKEN = "enm_bench-inspector-token-0123456789"
YEAR_DEVICE = "school-main"
HISTORY_COLS = ("active_energy_import_kwh", "active_power_kw", "flag_active_energy_import_kwh",
                "flag_active_power_kw", "seq")  # what the history of an electricity meter reads


def raw_query(url: str, q: str) -> int:
    """The floor: one POST to /query and its JSON decoded (stdlib); the rows it returned."""
    data = urllib.parse.urlencode({"db": "enmon", "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=60) as r:
        body = json.load(r)
    return sum(len(s["values"]) for res in body["results"] for s in res.get("series", []))


def api_get(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        out: dict[str, Any] = json.load(r)
    return out


async def median_s(fn: Callable[[], Awaitable[Any]], n: int = 5) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


async def write_year(w: Any, site: Any, start_ms: int) -> int:
    """One meter's calendar year at 15 min, in day-long batches as a gateway sends them."""
    _, m = next((b, m) for b, m in site.meters() if m.device == YEAR_DEVICE)
    b = next(b for b, mm in site.meters() if mm is m)
    meta = {m.device: wire.DeviceMeta(b.id, m.category, m.energy_type)}
    step = 900_000
    kwh, n = 1_000.0, 0
    for day in range(365):
        samples = []
        for k in range(96):
            ts = start_ms + (day * 96 + k) * step
            kw = 40.0 + 25.0 * math.sin(2 * math.pi * k / 96) + 3.0 * math.sin(ts / 7e6)
            kwh += kw * 0.25
            samples.append(wire.Sample(m.device, ts, {"active_energy_import_kwh": round(kwh, 2),
                                                      "active_power_kw": round(kw, 3)}))
        n += len(samples)
        await w.write(lineproto.batch_lines(wire.Batch(site.site, m.gateway, 10_000 + day,
                                                       start_ms, meta, samples)))
    return n


def _serve(influx: dict[str, Any], site: dict[str, Any], port: int) -> None:
    """The API process: the inspector app as ``enmon inspector serve`` runs it."""
    import uvicorn

    from energy.site import Site
    from inspector.api import create_app
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig, TokenEntry

    cfg = InspectorConfig(influx=InfluxConfig(**influx), tokens=[
        TokenEntry(name="bench", role="inspector", sha256=token_hash(TOKEN))])
    model = Site.model_validate(site)
    uvicorn.run(create_app(cfg, sites={model.site: model}), host="127.0.0.1", port=port,
                log_level="warning", lifespan="on")


class Api:
    """The real inspector app on a loopback port, in a process of its own as it is deployed
    (in a thread of this process it would share one interpreter lock with the client that
    decodes its answers, and the bare queries' client shares it with nobody)."""

    def __init__(self, influx: InfluxConfig, site: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = multiprocessing.get_context("spawn").Process(
            target=_serve, args=(influx.model_dump(), site.model_dump(mode="json"), self.port),
            name="bench-api", daemon=True)

    def __enter__(self) -> Api:
        self.proc.start()
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                if not self.proc.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the inspector API did not start") from None
                time.sleep(0.05)

    def __exit__(self, *_: Any) -> None:
        self.proc.terminate()
        self.proc.join(30)


def report_statements(site: Any, period: str, now_ms: int) -> list[str]:
    """The bare statements of what ``fetch_report`` reads for one period (no comparisons):
    every counter's first reading per step (the period and a day before), per day since
    1 January, every counter's reading count, completeness and alerts."""
    from energy import figures
    from inspector import report as rp

    p = rp.as_of(rp.period_of(period, site.timezone), now_ms)
    s = site.site
    step = figures.counter_step_min(site) * 60_000
    year0 = rp.period_of(str(p.year), site.timezone).start
    counters = sorted({m.counter for _, m in site.meters()})
    first = ", ".join(f"first({json.dumps(c)})" for c in counters)
    out = [f"SELECT {first} FROM meter WHERE site = '{s}' AND "
           f"time >= {p.start - DAY_MS}ms AND time < {p.end + step}ms "
           f"GROUP BY time({step // 60_000}m), gateway, device fill(none)"]
    if p.start > year0:
        out.append(f"SELECT {first} FROM meter WHERE site = '{s}' AND "
                   f"time >= {year0 - DAY_MS}ms AND time < {p.start}ms "
                   "GROUP BY time(1d), gateway, device fill(none)")
    count = ", ".join(f"count({json.dumps(c)})" for c in counters)
    out.append(f"SELECT {count} FROM meter WHERE site = '{s}' AND time >= {p.start}ms "
               f"AND time < {p.end}ms GROUP BY gateway, device")
    out.append(f"SELECT * FROM completeness WHERE site = '{s}' AND time >= {p.start}ms AND "
               f"time < {p.end}ms")
    out.append(f"SELECT * FROM alert WHERE site = '{s}' AND time >= {p.start - 31 * DAY_MS}ms "
               f"AND time < {p.end}ms")
    return out


class Ratios:
    def __init__(self) -> None:
        self.by: dict[str, list[float]] = {}

    def add(self, name: str, value: float, floor: float) -> str:
        self.by.setdefault(name, []).append(value / floor)
        return f"{value * 1000:.0f} ms (bare {floor * 1000:.0f} ms, ratio {value / floor:.2f}x)"


async def one_round(k: int, server: InfluxDB1, store: Store, api: Api, loaded: Any,
                    year: tuple[int, int], ratios: Ratios) -> None:
    url, site = server.url, loaded.site
    sel = ", ".join(HISTORY_COLS)
    print(f"-- round {k}")
    for label, (s0, s1), n in (("month", (loaded.start_ms, loaded.end_ms), 5),
                               ("year", year, 3)):
        bare_q = (f"SELECT {sel} FROM meter WHERE site = '{site.site}' AND "
                  f"device = '{YEAR_DEVICE}' AND time >= {s0}ms AND time < {s1}ms")
        bare = await median_s(lambda q=bare_q: asyncio.to_thread(raw_query, url, q), n)
        hurl = (f"{api.url}/api/v1/sites/{site.site}/meters/{YEAR_DEVICE}/history?"
                f"start={s0}&end={s1}")
        api_s = await median_s(lambda u=hurl: asyncio.to_thread(api_get, u), n)
        rows = len(api_get(hurl)["rows"])
        fh = await median_s(lambda a=s0, b=s1: fetch_history(
            store, site=site.site, device=YEAR_DEVICE, start=a, end=b, site_model=site), n)
        print(f"history {label}, 1 meter, {rows:,} rows: API over HTTP "
              f"{ratios.add(f'history API {label}', api_s, bare)}; fetch_history "
              f"{ratios.add(f'fetch_history {label}', fh, bare)}")
    now = loaded.end_ms + DAY_MS
    one = report_statements(site, "2026-10", now)
    three = one + report_statements(site, "2026-09", now) + report_statements(site, "2025-10",
                                                                                now)

    async def bare_all(stmts: list[str]) -> None:  # all at once, as the report reads them
        await asyncio.gather(*(asyncio.to_thread(raw_query, url, q) for q in stmts))

    async def bare_each(stmts: list[str]) -> None:
        for q in stmts:
            await asyncio.to_thread(raw_query, url, q)

    b1 = await median_s(lambda: bare_all(one), 3)
    b3 = await median_s(lambda: bare_all(three), 3)
    s1 = await median_s(lambda: bare_each(one), 3)
    r0 = await median_s(lambda: fetch_report(store, site=site, period="2026-10", now_ms=now,
                                             compare=False), 3)
    r = await median_s(lambda: fetch_report(store, site=site, period="2026-10", now_ms=now), 3)
    print(f"report figures, site month ({len(one)} bare statements at once; one after "
          f"another {s1 * 1000:.0f} ms): {ratios.add('report month', r0, b1)}; with 环比/同比 "
          f"(three periods, {len(three)} statements at once): "
          f"{ratios.add('report month + comparisons', r, b3)}")


async def main(days: int, rounds: int, profile: bool) -> None:
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
            y0 = int(dt.datetime(2025, 1, 1, tzinfo=start.tzinfo).timestamp() * 1000)
            y1 = int(dt.datetime(2026, 1, 1, tzinfo=start.tzinfo).timestamp() * 1000)
            t = time.perf_counter()
            n = await write_year(w, loaded.site, y0)
            print(f"load: {YEAR_DEVICE}'s 2025 at 15 min, {n:,} points in "
                  f"{time.perf_counter() - t:.1f} s")
            store = Store(q)
            ratios = Ratios()
            with Api(cfg, loaded.site) as api:
                if profile:
                    await profile_paths(store, api, loaded, (y0, y1))
                for k in range(1, rounds + 1):
                    await one_round(k, server, store, api, loaded, (y0, y1), ratios)
            print("-- ranges over the rounds (ratio to the bare queries of the same run)")
            for name, rs in ratios.by.items():
                print(f"{name}: {min(rs):.2f}–{max(rs):.2f}x")
            h = await fetch_history(store, site=loaded.site.site, device=YEAR_DEVICE,
                                    start=loaded.start_ms, end=loaded.end_ms,
                                    site_model=loaded.site)
            t = time.perf_counter()
            buf = io.BytesIO()
            hist.write_xlsx(h, buf)
            print(f"xlsx export of the month's history: {(time.perf_counter() - t) * 1000:.0f} "
                  f"ms, {len(buf.getvalue()):,} bytes")
            rep = await fetch_report(store, site=loaded.site, period="2026-10")
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


async def profile_paths(store: Store, api: Api, loaded: Any, year: tuple[int, int]) -> None:
    """Where the time goes: cProfile of fetch_history (a year) and fetch_report (a month)."""
    site = loaded.site
    for label, coro in (
            ("fetch_history, year", lambda: fetch_history(
                store, site=site.site, device=YEAR_DEVICE, start=year[0], end=year[1],
                site_model=site)),
            ("fetch_report, month", lambda: fetch_report(
                store, site=site, period="2026-10", now_ms=loaded.end_ms + DAY_MS,
                compare=False))):
        await coro()
        pr = cProfile.Profile()
        pr.enable()
        await coro()
        pr.disable()
        print(f"-- profile: {label}")
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print cProfile of the fetches")
    a = ap.parse_args()
    asyncio.run(main(a.days, a.rounds, a.profile))
