"""Benchmark: one rules evaluation pass over 1,000 buildings and 10,000 meters on real influxd.

    .venv/bin/python bench/rules_pass.py [--sites 10 --buildings 100 --meters 10 --hours 4]
    .venv/bin/python bench/rules_pass.py --large   # 10,000 buildings / 100,000 meters

Starts its own influxd (Debian 1.6) on a free loopback port in a temp dir, writes
``meters × (hours × 4 + 1)`` counter readings (15-min polling) into ``meter``,
then times one scheduled pass (rollups → energy_hourly/energy_daily, quotas,
budgets, completeness) per site and in total. Baseline in the same run: the
time to merely read the same raw readings back with one InfluxQL query per site, as many
sites at a time as the pass runs (``--concurrency``), so the ratio says what the rules add
on top of fetching the data with the same use of the box's cores. The read of one site
after another is printed too (this bench's baseline before 2026-12-04: on 2 cores it takes
about twice as long, which flattered the ratio about twofold). A second floor: the
pass's own requests (every statement and write it made, recorded per site) replayed at
the same concurrency with no computation between them — what the pass costs InfluxDB
alone; the pass minus it is what the rule engine's compute adds. Also times the
streaming engine (thresholds + data-quality checks) over one sample per meter.
Besides wall time, each figure gives the CPU seconds it cost this process and influxd
(from /proc), which a busy shared box disturbs less than the wall clock. ``--large``
(100 sites) prints progress while it writes and passes, and times one pass. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from energy.site import Building, Meter, Site
from enmon import touched as tch
from enmon.influx import PER_REQUEST, InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1
from enmon.wire import Batch, DeviceMeta, Sample
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook, Outcome
from rules.scheduled import SITES_AT_ONCE, PassStats, Scheduler

DB = "enmon"
STEP = 15 * 60_000


def build_sites(n_sites: int, n_buildings: int, n_meters: int) -> list[Site]:
    sites = []
    for s in range(n_sites):
        buildings = []
        for b in range(n_buildings):
            meters = [{"id": f"s{s}-b{b}-m{m}", "gateway": f"gw-{b // 10}", "device": f"b{b}-m{m}",
                       "energy_type": "electricity", "category": "01000" if m == 0 else "01A00",
                       "building_total": m == 0, "poll_interval_s": 900, "max_rate_per_h": 5000}
                      for m in range(n_meters)]
            buildings.append({
                "id": f"b{b}", "floor_area_m2": 5000 + 10 * b, "occupants": 200,
                "operating_hours_per_year": 2500,
                "quota": {"ref": "gbt51161/office/A-commercial/hot_summer_cold_winter"},
                "budgets": [{"name": "month", "period": "month", "amount": 50_000, "unit": "kWh"}],
                "meters": meters})
        sites.append(Site.model_validate({"site": f"site{s}", "buildings": buildings}))
    return sites


class Cpu:
    """CPU seconds (user + system) of this process and of influxd over a measured span."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid

    def _server(self) -> float:
        if self.pid is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Cpu:
        self.own0, self.srv0 = time.process_time(), self._server()
        return self

    def __exit__(self, *exc: object) -> None:
        self.own, self.srv = time.process_time() - self.own0, self._server() - self.srv0

    def text(self) -> str:
        return f"cpu: this process {self.own:.2f} s, influxd {self.srv:.2f} s"


def write_readings(url: str, sites: list[Site], now: int, hours: int) -> tuple[int, float]:
    n = 0
    t0 = time.perf_counter()
    steps = hours * 4 + 1
    for k, site in enumerate(sites):
        if len(sites) > 20 and k % 10 == 0:
            print(f"  writing site {k + 1}/{len(sites)} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
        lines = []
        for b, m in site.meters():
            base = 1000.0 + hash(m.id) % 1000
            for i in range(steps):
                ts = now - (steps - 1 - i) * STEP
                lines.append(f"meter,site={site.site},gateway={m.gateway},device={m.device},"
                             f"building={b.id},energy_type=electricity "
                             f"active_energy_import_kwh={base + i * 12.5!r} {ts}")
        # what ingest adds to every write: which readings it stored (drives the roll-ups)
        lines.append(tch.marker_line(site.site, "bench", {
            (m.gateway, m.device): (now - (steps - 1) * STEP, now) for _, m in site.meters()},
            now))
        for i in range(0, len(lines), 20_000):
            req = urllib.request.Request(f"{url}/write?db={DB}&precision=ms",
                                         data="\n".join(lines[i:i + 20_000]).encode(),
                                         method="POST")
            with urllib.request.urlopen(req, timeout=120) as r:
                assert r.status == 204
        n += len(lines)
    return n, time.perf_counter() - t0


async def raw_read(url: str, sites: list[Site], now: int, hours: int, concurrency: int = 1
                   ) -> tuple[int, float]:
    """The floor: the same readings as the pass reads, one InfluxQL query per site, with as
    many sites in flight as the pass has (each on its own connection), so both may use every
    core the box has; ``concurrency=1`` reads one site after another."""
    t0 = time.perf_counter()
    rows = 0

    async def share(part: list[Site]) -> None:
        nonlocal rows
        q = InfluxQL(InfluxConfig(url=url, database=DB))
        try:
            for site in part:
                for s in await q.query(
                        f"SELECT active_energy_import_kwh FROM meter WHERE site = '{site.site}' "
                        f"AND time >= {now - (hours + 1) * 3_600_000}ms AND time <= {now}ms "
                        f"GROUP BY gateway, device"):
                    rows += len(s["values"])
        finally:
            await q.close()

    n = max(1, concurrency)
    await asyncio.gather(*(share(sites[i::n]) for i in range(n)))
    return rows, time.perf_counter() - t0


Request = tuple[str, str, list[str]]  # ("query" | "many" | "write", its site, its payload)


class Recorder:
    """The requests a pass makes, each with the site whose step made it: the pass's own
    requests, replayed with no computation between them (:func:`replay`), are the floor the
    rule engine's compute adds to. The site is known from the task running: each site's
    pass is one task (``Scheduler.run_pass``)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.site_of: dict[asyncio.Task[object], str] = {}

    def add(self, kind: str, payload: list[str]) -> None:
        task = asyncio.current_task()
        self.requests.append((kind, self.site_of.get(task, "") if task else "", payload))


class RecordedQL(InfluxQL):
    def __init__(self, cfg: InfluxConfig, rec: Recorder) -> None:
        super().__init__(cfg)
        self.rec = rec

    async def query(self, q: str, *, epoch: str = "ms") -> list[dict[str, object]]:
        self.rec.add("query", [q])
        return await super().query(q, epoch=epoch)

    async def query_many(self, statements: list[str], *, epoch: str = "ms",
                         per_request: int = PER_REQUEST) -> list[list[dict[str, object]]]:
        self.rec.add("many", list(statements))
        return await super().query_many(statements, epoch=epoch, per_request=per_request)


class RecordedWriter(InfluxV1Writer):
    def __init__(self, cfg: InfluxConfig, rec: Recorder) -> None:
        super().__init__(cfg)
        self.rec = rec

    async def write(self, lines: list[str]) -> None:
        self.rec.add("write", list(lines))
        await super().write(lines)


async def replay(url: str, rec: Recorder, sites: list[Site], concurrency: int) -> float:
    """The recorded requests again, each site's in its order, as many sites at a time as the
    pass ran (each share on its own connections): the pass's I/O with none of its compute."""
    by_site: dict[str, list[Request]] = {}
    for r in rec.requests:
        by_site.setdefault(r[1], []).append(r)
    names = [s.site for s in sites if s.site in by_site]

    async def share(part: list[str]) -> None:
        icfg = InfluxConfig(url=url, database=DB, timeout_s=300)
        q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
        try:
            for name in part:
                for kind, _, payload in by_site[name]:
                    if kind == "query":
                        await q.query(payload[0])
                    elif kind == "many":
                        await q.query_many(payload)
                    else:
                        await w.write(payload)
        finally:
            await q.close()
            await w.close()

    t0 = time.perf_counter()
    n = max(1, concurrency)
    await asyncio.gather(*(share(names[i::n]) for i in range(n)))
    return time.perf_counter() - t0


async def one_pass(url: str, sites: list[Site], now: int, hours: int, concurrency: int,
                   rec: Recorder | None = None) -> tuple[float, list[PassStats]]:
    cfg = RulesConfig.model_validate({"influx": {"url": url, "database": DB}})
    engine = Engine(cfg, sites, AlertBook(), started_ms=now)
    icfg = InfluxConfig(url=url, database=DB, timeout_s=300)
    rec = rec or Recorder()
    q, w = RecordedQL(icfg, rec), RecordedWriter(icfg, rec)
    # the pass runs a minute after the last reading was stored, as the rule engine's
    # schedule runs it: its clock says so (the readings' calendar stays fixed)
    sched = Scheduler(engine, q, w, settle_s=0, concurrency=concurrency,
                      clock=lambda: now / 1000 + 60)
    site_pass = sched.site_pass
    done = [0]
    t_start = time.perf_counter()

    async def counted(site: Site, at: int) -> tuple[Outcome, PassStats]:
        task = asyncio.current_task()
        if task is not None:
            rec.site_of[task] = site.site
        res = await site_pass(site, at)
        done[0] += 1
        if len(sites) > 20 and done[0] % 10 == 0:  # a long pass says how far it got
            print(f"  pass: {done[0]}/{len(sites)} sites "
                  f"({time.perf_counter() - t_start:.0f} s)", flush=True)
        return res

    sched.site_pass = counted  # type: ignore[method-assign,assignment]
    t0 = time.perf_counter()
    try:
        _, stats = await sched.run_pass(now)
    finally:
        await q.close()
        await w.close()
    return time.perf_counter() - t0, stats


def forget_progress(url: str, n_sites: int) -> None:
    """Drop ``rollup_state`` and see it gone (under load influxd 1.6 was seen to answer a
    DROP MEASUREMENT while a later read still found points), so the pass recomputes all."""
    deadline = time.monotonic() + 60
    while True:
        for q in ("DROP MEASUREMENT rollup_state", "DROP MEASUREMENT rollup_state"):
            data = urllib.parse.urlencode({"q": q, "db": DB}).encode()
            urllib.request.urlopen(f"{url}/query", data=data, timeout=30).close()
        data = urllib.parse.urlencode({"q": "SELECT count(through) FROM rollup_state",
                                       "db": DB}).encode()
        with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as r:
            left = "series" in r.read().decode()
        if not left:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"rollup_state of {n_sites} sites still there after DROP")
        time.sleep(0.2)


def stream(sites: list[Site], now: int, rounds: int) -> float:
    cfg = RulesConfig.model_validate({
        "thresholds": [{"name": "peak", "quantity": "active_power_kw", "above": 800,
                        "clear_below": 750}]})
    engine = Engine(cfg, sites, AlertBook(), started_ms=now)
    batches = []
    for site in sites:
        by_gw: dict[str, list[tuple[Building, Meter]]] = {}
        for b, m in site.meters():
            by_gw.setdefault(m.gateway, []).append((b, m))
        for gw, ms in by_gw.items():
            batches.append((site.site, gw, ms))
    samples = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        ts = now + r * 60_000
        for site_id, gw, ms in batches:
            batch = Batch(site_id, gw, r, ts,
                          {m.device: DeviceMeta(b.id, m.category, "electricity") for b, m in ms},
                          [Sample(m.device, ts, {"active_energy_import_kwh": 1000.0 + r,
                                                 "active_power_kw": 100.0 + r}) for _, m in ms])
            engine.on_batch(batch)
            samples += len(ms)
    return samples / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sites", type=int, default=10)
    ap.add_argument("--buildings", type=int, default=100, help="per site")
    ap.add_argument("--meters", type=int, default=10, help="per building")
    ap.add_argument("--hours", type=int, default=4, help="hours of 15-min readings to write")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of raw read + pass to time (medians reported)")
    ap.add_argument("--concurrency", type=int, default=SITES_AT_ONCE,
                    help="site passes in flight (the rule engine's default)")
    ap.add_argument("--large", action="store_true",
                    help="10,000 buildings / 100,000 meters (100 sites), one timed pass")
    a = ap.parse_args()
    if a.large:
        a.sites, a.buildings, a.meters, a.repeat = 100, 100, 10, 1
    sites = build_sites(a.sites, a.buildings, a.meters)
    n_buildings = sum(len(s.buildings) for s in sites)
    n_meters = sum(len(s.meters()) for s in sites)
    tz = ZoneInfo("Asia/Shanghai")
    now = int(datetime(2026, 11, 20, 12, 0, tzinfo=tz).timestamp() * 1000)
    with tempfile.TemporaryDirectory() as tmp:
        server = InfluxDB1(workdir=Path(tmp) / "influxd")
        server.start()
        try:
            data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{DB}"'}).encode()
            urllib.request.urlopen(f"{server.url}/query", data=data, timeout=10).close()
            points, wsec = write_readings(server.url, sites, now, a.hours)
            # the collector as `enmon rules run` sets it (rules/cli.py): the start-up heap
            # (here: the site files) frozen out of its scans, young collections less often
            gc.freeze()
            gc.set_threshold(20_000, 20, 20)
            print(f"setup: {n_buildings} buildings, {n_meters} meters, {points} readings written "
                  f"in {wsec:.2f} s ({points / wsec:,.0f} points/s)")
            times: list[float] = []
            raws: list[float] = []
            cpus: list[Cpu] = []
            raw_cpus: list[Cpu] = []
            seqs: list[float] = []
            ios: list[float] = []
            io_cpus: list[Cpu] = []
            stats: list[PassStats] = []
            for _ in range(max(1, min(a.repeat, 5))):
                # each round: the raw read, then the pass, back to back, so a busy moment of a
                # shared box weighs on both; the ratio is taken per round
                # the floor at the pass's concurrency (the ratio), and one site after another
                # (as this bench measured it before 2026-12-04, for comparison)
                with Cpu(server.pid) as raw_cpu:
                    raw_rows, raw_sec = asyncio.run(raw_read(server.url, sites, now, a.hours,
                                                             a.concurrency))
                raws.append(raw_sec)
                raw_cpus.append(raw_cpu)
                _, seq_sec = asyncio.run(raw_read(server.url, sites, now, a.hours, 1))
                seqs.append(seq_sec)
                # each timed pass is the first after these readings were stored: forget the
                # roll-ups' progress, so the pass recomputes every bucket they touch
                forget_progress(server.url, len(sites))
                with Cpu(server.pid) as cpu:
                    rec = Recorder()
                    sec, stats = asyncio.run(one_pass(server.url, sites, now, a.hours,
                                                      a.concurrency, rec))
                times.append(sec)
                cpus.append(cpu)
                unowned = sum(1 for r in rec.requests if not r[1])
                if unowned:
                    raise SystemExit(f"{unowned} requests of the pass not traced to a site")
                with Cpu(server.pid) as io_cpu:
                    io_sec = asyncio.run(replay(server.url, rec, sites, a.concurrency))
                ios.append(io_sec)
                io_cpus.append(io_cpu)
                written = sum(s.points_written for s in stats)
                print(f"  round {len(times)}: raw read {raw_sec:.2f} s ({a.concurrency} at a "
                      f"time; one after another {seq_sec:.2f} s), pass {sec:.2f} s (ratio "
                      f"{sec / raw_sec:.2f}; {sec / seq_sec:.2f} against one after another), "
                      f"the pass's {len(rec.requests)} requests replayed without its compute "
                      f"{io_sec:.2f} s (ratio {io_sec / raw_sec:.2f}), "
                      f"{written} points written", flush=True)
            med = statistics.median(times)
            q = sum(s.queries for s in stats)
            r = sum(s.points_read for s in stats)
            w = sum(s.points_written for s in stats)
            steps: dict[str, float] = {}
            for s in stats:
                for k, v in s.per_step.items():
                    steps[k] = steps.get(k, 0.0) + v
            ratios = sorted(t / r for t, r in zip(times, raws, strict=True))
            raw_med = statistics.median(raws)
            raw_cpu = raw_cpus[raws.index(raw_med)] if raw_med in raws else raw_cpus[-1]
            print(f"baseline: raw read of the pass's readings, {raw_rows} rows, "
                  f"{a.concurrency} site(s) at a time as the pass, median {raw_med:.2f} s of "
                  f"{len(raws)} ({', '.join(f'{r:.2f}' for r in raws)}) ({raw_cpu.text()}); "
                  f"one site after another: median {statistics.median(seqs):.2f} s")
            seq_ratios = sorted(t / r for t, r in zip(times, seqs, strict=True))
            each = ", ".join(f"{t:.2f}" for t in times)
            mid = cpus[times.index(med)] if med in times else cpus[-1]
            print(f"pass: median {med:.2f} s of {len(times)} ({each}), {a.concurrency} site(s) "
                  f"at a time; {q} queries, {r} points read, {w} points written ({mid.text()})")
            io_med = statistics.median(ios)
            io_cpu = io_cpus[ios.index(io_med)] if io_med in ios else io_cpus[-1]
            io_ratios = sorted(t / r for t, r in zip(ios, raws, strict=True))
            print(f"the pass's requests alone (replayed at its concurrency, no compute): median "
                  f"{io_med:.2f} s of {len(ios)} ({', '.join(f'{t:.2f}' for t in ios)}) "
                  f"({io_cpu.text()}); ratio to the raw read: median "
                  f"{statistics.median(io_ratios):.2f} ({io_ratios[0]:.2f}–{io_ratios[-1]:.2f}): "
                  f"what reading, writing and the small statements cost InfluxDB before the "
                  f"rule engine computes anything")
            print("pass steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
            print(f"per meter: {med / n_meters * 1e6:.0f} µs; per building: "
                  f"{med / n_buildings * 1e3:.2f} ms; ratio pass / raw read: median "
                  f"{statistics.median(ratios):.2f} of the rounds ({ratios[0]:.2f}–"
                  f"{ratios[-1]:.2f}) (CPU, this process + influxd: "
                  f"{(mid.own + mid.srv) / max(1e-9, raw_cpu.own + raw_cpu.srv):.2f}); "
                  f"against the raw read one site after another: median "
                  f"{statistics.median(seq_ratios):.2f} ({seq_ratios[0]:.2f}–"
                  f"{seq_ratios[-1]:.2f})")
        finally:
            server.stop()
    rate = stream(sites, now, rounds=3)
    print(f"streaming engine: {rate:,.0f} samples/s (thresholds + counter/jump/flatline checks, "
          f"{n_meters} meters × 3 rounds)")


if __name__ == "__main__":
    main()
