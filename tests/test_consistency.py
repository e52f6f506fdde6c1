"""One truth through outages: every figure agrees with the meters, whatever arrived late.

A simulated campus (firmware_sim physics, real protocols, real register maps) with 40 days
of history in its gateways' disk queues; every enmon part runs as its own process, the rule
engine from the start, so it rolls up what arrives as it arrives. While the history is
delivered, everything that happens on a real site happens at once:

- one gateway is offline (killed before it sends anything) and replays its whole queue only
  after the others are stored and rolled up — its data is "late" by the wall clock;
- ingest is killed with SIGKILL and restarted;
- the broker is restarted;
- InfluxDB is stopped and started again;
- the rule engine is killed with SIGKILL and restarted;
- a meter is replaced (its counter restarts from 0; the swap is in the site file);
- a meter's short register rolls over (it wraps at 100,000 kWh; ``rollover_at`` is in the
  site file).

Afterwards, for every meter and every site-day and for each month, these agree within
0.1 %: the simulator's ground truth (recomputed here from the simulator itself, not from
anything stored), the consumption from the raw counters in InfluxDB, ``energy_daily`` /
``energy_monthly``, the inspector's report, the inspector's API, the Grafana panel's own
query and the rule engine's year-to-date. The test prints the table.

Known and left to the reliability work: the broker is restarted gracefully (SIGTERM), not
killed; mosquitto persists its queues only periodically, so a SIGKILL of the broker can
lose batches the gateway already deleted on PUBACK (end-to-end acknowledgement is the fix).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from energy import accounting
from energy.site import Site, load_site
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1, Mosquitto, Part
from firmware_sim.campus import CampusSim, load_campus
from firmware_sim.campus.scenario import Scenario
from firmware_sim.campus.sim import year_start
from firmware_sim.campus_live import served_quantities
from firmware_sim.history import energy_quantities, generate
from rules.config import RulesConfig
from rules.engine import Engine
from rules.lifecycle import AlertBook
from rules.scheduled import PassStats, Scheduler
from stack.campus_run import CampusRun, RunOptions, influx_rows

CAMPUS = Path(__file__).parent / "sim" / "e2e-campus.yaml"
GRAFANA = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
TOL = 1e-3  # 0.1 %
LATE_GATEWAY = "gw-mall"
SWAPPED = "hosp-hvac"
WRAPPING = "school-main"  # ~2,900 kWh a day from 60,000 on a register that wraps at 100,000
HISTORY_DAYS = 40
MONTH_MS = 31 * 86_400_000


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOL * max(abs(a), abs(b), 1.0)


class Faults:
    """Injects the faults while the history is being delivered; each waits on a condition."""

    def __init__(self, run: CampusRun, mq: Mosquitto, influx: InfluxDB1, log: list[str]):
        self.run, self.mq, self.influx, self.log = run, mq, influx, log
        self.late: Part | None = None

    def part(self, name: str) -> Part | None:
        return next((p for p in self.run.parts if p.name == name), None)

    def take_down(self, p: Part) -> None:
        p.kill()
        self.run.parts.remove(p)  # not "dead": down on purpose (CampusRun watches parts)

    def bring_up(self, p: Part) -> None:
        p.start()
        self.run.parts.append(p)

    def stored(self) -> int:
        try:
            return self.run_stored()
        except OSError:
            return -1

    def run_stored(self) -> int:
        rows = influx_rows(self.influx.url, "enmon", "SELECT count(*) FROM meter GROUP BY device")
        return sum(max((v for k, v in r.items() if k.startswith("count_") and v), default=0)
                   for r in rows)

    async def until(self, cond: Any, what: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)

    async def inject(self, total: int) -> None:
        await self.until(lambda: self.part(LATE_GATEWAY) is not None, "the late gateway")
        late = self.part(LATE_GATEWAY)
        assert late is not None
        self.take_down(late)  # offline before it sends anything
        self.late = late
        self.log.append(f"fault: {LATE_GATEWAY} offline")
        await self.until(lambda: self.stored() > 0, "the first readings stored")
        ingest = self.part("ingest")
        assert ingest is not None
        self.take_down(ingest)
        self.log.append(f"fault: ingest SIGKILL at {self.stored()} stored")
        await asyncio.sleep(2)  # the outage lasts a moment: the gateways keep publishing
        self.bring_up(ingest)
        await self.until(lambda: self.stored() > total * 0.25, "25 % stored")
        await asyncio.to_thread(self.mq.stop)
        self.log.append("fault: broker restarted")
        await asyncio.to_thread(self.mq.start)
        await self.until(lambda: self.stored() > total * 0.45, "45 % stored")
        await asyncio.to_thread(self.influx.stop)
        self.log.append("fault: InfluxDB down")
        await asyncio.sleep(3)  # ingest retries and acknowledges nothing meanwhile
        await asyncio.to_thread(self.influx.start)
        rules = self.part("rules")
        if rules is not None:
            self.take_down(rules)
            self.log.append("fault: rule engine SIGKILL")
            self.bring_up(rules)


def truth(sim: CampusSim, window: tuple[float, float, float], devices: set[str],
          swaps: list[tuple[float, str, str, float, float]], counter: dict[str, str],
          tz: ZoneInfo) -> tuple[dict[str, dict[int, float]], dict[str, int]]:
    """Per device and site-day, the energy the simulated meters counted, from the simulator
    itself (the same deterministic campus stepped again), with swaps bridged by the
    recorded final and initial indexes; and how many samples each gateway's history holds.
    No enmon code on the storage path is involved: plain differences, split across
    midnight by elapsed time."""
    _, until, dense_from = window
    served = served_quantities(sim)
    prev: dict[str, tuple[float, float]] = {}
    out: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    per_gw: dict[str, int] = defaultdict(int)
    sw = {dev: (t, old, new) for t, dev, q, old, new in swaps if q == counter.get(dev)}
    wrap = sim.rollover
    for gw, samples in generate(sim, until=until, interval_s=3600.0, dense_from=dense_from,
                                quantities=energy_quantities(sim, served), max_samples=1000):
        per_gw[gw] += len(samples)
        for s in samples:
            if s.device not in devices or counter[s.device] not in s.values:
                continue
            v, t = float(s.values[counter[s.device]]), s.ts / 1000
            if s.device in prev:
                t0, v0 = prev[s.device]
                x = sw.get(s.device)
                if x and t0 < x[0] <= t:
                    used = (x[1] - v0) + (v - x[2])
                elif v < v0 and s.device in wrap:  # the register wrapped
                    used = v + wrap[s.device] - v0
                else:
                    used = v - v0
                a = t0
                while a < t:
                    d = dt.datetime.fromtimestamp(a, tz).replace(hour=0, minute=0, second=0,
                                                                 microsecond=0)
                    nxt = (d + dt.timedelta(days=1)).timestamp()
                    b = min(t, nxt)
                    out[s.device][int(d.timestamp() * 1000)] += used * (b - a) / (t - t0)
                    a = b
            prev[s.device] = (t, v)
    return out, per_gw


def grafana_daily(url: str, site: str, building: str, start: int, end: int) -> dict[int, float]:
    """The "Electricity per day by building" panel, run as Grafana runs it."""
    board = json.loads((GRAFANA / "enmon-building-overview.json").read_text())
    q = next(t["query"] for p in board["panels"] for t in p.get("targets", [])
             if p.get("title", "").startswith("Electricity per day by building"))
    tz = next(v for v in board["templating"]["list"] if v["name"] == "tz")["current"]["value"]
    q = (q.replace("$site", site).replace("$building", building).replace("$tz", tz)
         .replace("$timeFilter", f"time >= {start}ms AND time < {end}ms"))
    data = urllib.parse.urlencode({"db": "enmon", "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as r:
        body = json.loads(r.read())
    out: dict[int, float] = {}
    for s in body["results"][0].get("series", []):
        col = s["columns"].index("sum")
        for row in s["values"]:
            if row[col] is not None:
                out[int(row[0])] = float(row[col])
    return out


class Recorder(Engine):
    """The rule engine, remembering the year-to-date it judged each quota by."""

    ytd: dict[str, float]

    def on_quota(self, site: str, building: str, st: Any, unit: str, now: int) -> Any:
        self.ytd[building] = st.ytd
        return super().on_quota(site, building, st, unit, now)


async def rules_ytd(url: str, site: Site, now: int) -> dict[str, float]:
    cfg = RulesConfig.model_validate({"influx": {"url": url, "database": "enmon"}})
    eng = Recorder(cfg, [site], AlertBook(), started_ms=now)
    eng.ytd = {}
    icfg = InfluxConfig(url=url, database="enmon")
    q, w = InfluxQL(icfg), InfluxV1Writer(icfg)
    try:
        await Scheduler(eng, q, w).quotas(site, now, PassStats(site.site))
    finally:
        await q.close()
        await w.close()
    return eng.ytd


def api_get(base: str, token: str, path: str) -> Any:
    req = urllib.request.Request(base.rstrip("/") + path,
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_every_figure_agrees_after_every_fault_at_once(
        mosquitto: Mosquitto, influxdb: InfluxDB1, tmp_path: Path) -> None:
    raw = yaml.safe_load(CAMPUS.read_text())
    for b in raw["buildings"]:
        for m in b["meters"]:
            if m["device"] == WRAPPING:
                m.update(initial=60_000.0, rollover_at=100_000.0)
    campus = tmp_path / "campus.yaml"
    campus.write_text(yaml.safe_dump(raw, allow_unicode=True))
    model = load_campus(campus)
    tzh = model.timezone_hours
    tz = ZoneInfo("Asia/Shanghai")
    now = time.time()
    first = ((now + tzh * 3600) // 86_400 - HISTORY_DAYS) * 86_400 - tzh * 3600
    swap_at = first + 12.5 * 86_400  # mid-afternoon of the 13th day of the history
    scenario = Scenario.model_validate({
        "name": "swap-in-history", "description": "a sub-meter replaced during the outage",
        "anchor": "year_start", "events": [{"kind": "meter_replaced", "device": SWAPPED,
                                            "start": swap_at - year_start(now, tzh),
                                            "reading": 0}]})
    log: list[str] = []
    options = RunOptions(poll_s=2.0, offline_after_s=600.0, gateway_grace_s=600.0,
                         rules_interval_s=3.0, dense_days=2.0, history_days=HISTORY_DAYS,
                         rules_first=True, history_timeout_s=300.0)
    async with CampusRun(model, [scenario], mosquitto, influxdb, tmp_path / "run",
                         options=options, say=log.append) as run:
        faults = Faults(run, mosquitto, influxdb, log)
        started = asyncio.create_task(run.start())
        # the history's size is known once the queues are filled (the first "history:" line)
        await faults.until(lambda: run.history_samples > 0 or started.done(), "the history")
        inject = asyncio.create_task(faults.inject(run.history_samples))
        site_path = run.work / "config" / "site.yaml"
        await faults.until(site_path.exists, "the site file")
        assert run.sim is not None
        counters = {m.device: m.counter for _, m in Site.model_validate(
            yaml.safe_load(site_path.read_text())).meters()}
        sim2 = CampusSim(model, start=first, run_start=now, scenarios=[scenario])
        true, per_gw = await asyncio.to_thread(truth, sim2, run.history_window, set(counters),
                                               run.sim.replaced, counters, tz)
        assert sum(per_gw.values()) == run.history_samples

        async def others_then_late() -> None:
            await inject
            # everyone else's history is stored and rolled up before the late gateway returns
            others = run.history_samples - per_gw[LATE_GATEWAY]
            await faults.until(lambda: faults.stored() >= others, "the others' history", 300)
            assert faults.late is not None
            await faults.until(lambda: "event=rollup" in (faults.part("rules") or
                                                          faults.late).log_tail(20_000),
                               "a roll-up pass", 60)
            faults.bring_up(faults.late)
            log.append(f"fault: {LATE_GATEWAY} back, replaying its queue")

        late_task = asyncio.create_task(others_then_late())
        ok = await started
        await late_task
        assert ok, "\n".join(log)
        # stop the gateways (live polling would move the last day), let ingest store all
        for p in [p for p in run.parts if p.name.startswith("gw-")]:
            await asyncio.to_thread(p.stop)
        settled = int(time.time() * 1000) + 1000
        await faults.until(lambda: (rollup_through(influxdb.url) or 0) > settled + 3000,
                           "the roll-ups to pass the last write", 120)
        access = await run.start_inspector()
        assert access is not None
        api_base, token = access
        site = load_site(run.cfg_dir / "site.yaml")
        first_ms, history_end = int(first * 1000), run.history_end_ms

        # ------------------------------------------------------------ the figures
        assert any(m.replacements for _, m in site.meters() if m.device == SWAPPED)
        assert any(m.rollover_at for _, m in site.meters() if m.device == WRAPPING)
        wrapped = [r for r in influx_rows(influxdb.url, "enmon",
                   f"SELECT active_energy_import_kwh AS v FROM meter WHERE device = '{WRAPPING}'")]
        assert any(b["v"] < a["v"] for a, b in itertools.pairwise(wrapped)), "no wrap stored"
        last_day = accounting.bucket_start(history_end, "day", tz)
        rows: list[tuple[Any, ...]] = []
        bad: list[str] = []
        daily_db = by_meter(influxdb.url, "energy_daily")
        monthly_db = by_meter(influxdb.url, "energy_monthly")
        raw_daily: dict[str, dict[int, float]] = {}
        for _, m in site.meters():
            pts = [(int(r["time"]), float(r["v"])) for r in influx_rows(
                influxdb.url, "enmon", f'SELECT "{m.counter}" AS v FROM meter WHERE '
                f"device = '{m.device}'") if r.get("v") is not None]
            ivs = accounting.intervals(pts, rollover_at=m.rollover_at, jitter=m.jitter,
                                       replacements=[accounting.Replacement(
                                           x.at, x.old_final, x.new_initial)
                                           for x in m.replacements])
            raw = accounting.rollup(ivs, "day", tz)
            raw_daily[m.id] = raw
            for day in sorted(set(raw) | set(daily_db.get(m.id, {}))):
                t = true.get(m.device, {}).get(day) if day < last_day else None
                r, d = raw.get(day), daily_db.get(m.id, {}).get(day)
                ok_day = close(r, d) and (t is None or close(t, r))
                if not ok_day:
                    bad.append(f"{m.id} {fmt(day, tz)}: truth={t} raw={r} daily={d}")
            for month in sorted(monthly_db.get(m.id, {})):
                nxt = accounting.next_bucket(month, "month", tz)
                r = accounting.consumption(ivs, month, nxt)
                d = monthly_db[m.id][month]
                t = (sum(v for k, v in true.get(m.device, {}).items() if month <= k < nxt)
                     if nxt <= last_day else None)
                rows.append((m.id, fmt(month, tz)[:7], "month", t, r, d))
                if not (close(r, d) and (t is None or close(t, r))):
                    bad.append(f"{m.id} {fmt(month, tz)[:7]}: truth={t} raw={r} monthly={d}")

        # the report, the API and Grafana, per building and month / day
        for month in sorted({accounting.bucket_start(d, "month", tz)
                             for d in range(first_ms, history_end, 86_400_000)}):
            label = fmt(month, tz)[:7]
            from inspector.store import Store, fetch_report

            store = Store(InfluxQL(InfluxConfig(url=influxdb.url, database="enmon")))
            try:
                rep = await fetch_report(store, site=site, period=label)
            finally:
                await store.close()
            api = await asyncio.to_thread(api_get, api_base, token,
                                          f"/api/v1/sites/{site.site}/reports/{label}")
            nxt = accounting.next_bucket(month, "month", tz)
            for b in site.buildings:
                mains = [m for m in b.meters if m.building_total
                         and m.energy_type == "electricity"]
                if not mains:
                    continue
                want = sum(monthly_db.get(m.id, {}).get(month, 0.0) for m in mains)
                got_rep = next((e.amount for rb in rep.buildings if rb.id == b.id
                                for e in rb.energy if e.energy_type == "electricity"), None)
                got_api = next((e["amount"] for rb in api["buildings"] if rb["id"] == b.id
                                for e in rb["energy"] if e["energy_type"] == "electricity"),
                               None)
                graf = grafana_daily(influxdb.url, site.site, b.id, month, nxt)
                want_days: dict[int, float] = defaultdict(float)
                for m in mains:
                    for day, v in daily_db.get(m.id, {}).items():
                        if month <= day < nxt:
                            want_days[day] += v
                rows.append((b.id, label, "report/api", want, got_rep, got_api))
                for name, got in (("report", got_rep), ("api", got_api)):
                    if not close(want, got):
                        bad.append(f"{b.id} {label}: energy_monthly={want} {name}={got}")
                if set(graf) != set(want_days) or not all(
                        close(graf[k], want_days[k]) for k in graf):
                    shown = sorted(graf.items())[:2]
                    bad.append(f"{b.id} {label}: Grafana daily buckets {shown} ≠ site-days "
                               f"{sorted(want_days.items())[:2]}")
        # the rule engine's year-to-date, from its own code path
        ytd = await rules_ytd(influxdb.url, site, int(time.time() * 1000))
        for b in site.buildings:
            if b.quota is None:
                continue
            raw_ytd = sum(sum(raw_daily[m.id].values()) for m in b.meters
                          if m.building_total and m.energy_type == "electricity")
            rows.append((b.id, "YTD", "rules", None, raw_ytd, ytd.get(b.id)))
            if not close(raw_ytd, ytd.get(b.id)):
                bad.append(f"{b.id} year-to-date: raw={raw_ytd} rules={ytd.get(b.id)}")

        print("\n".join(log))
        print(f"{'meter/building':16} {'period':8} {'kind':10} {'truth':>12} {'raw/want':>12} "
              f"{'stored/got':>12}")
        for row in rows:
            print(f"{row[0]:16} {row[1]:8} {row[2]:10} " + " ".join(
                f"{v:12,.2f}" if isinstance(v, float) else f"{'—':>12}" for v in row[3:]))
        days_checked = sum(len(v) for v in raw_daily.values())
        print(f"{days_checked} meter-days, {len(rows)} month/building figures; "
              f"{len(bad)} disagree")
        assert not bad, "\n".join(bad[:40])


def fmt(ms: int, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d")


def rollup_through(url: str) -> int | None:
    try:
        rows = influx_rows(url, "enmon", "SELECT last(through) AS t FROM rollup_state")
    except OSError:
        return None
    return int(rows[0]["t"]) if rows else None


def by_meter(url: str, meas: str) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for r in influx_rows(url, "enmon", f"SELECT amount FROM {meas} GROUP BY meter"):
        if r.get("amount") is not None:
            out[r["meter"]][int(r["time"])] = float(r["amount"])
    return out

