"""``enmon demo``: a simulated campus, and every part of enmon watching it, on this machine.

What runs (all real, nothing mocked):

- mosquitto and influxd (Debian packages) on free loopback ports in a temp dir;
- the demo campus (``firmware_sim/campus/demo-campus.yaml``): four buildings and a
  boiler house, 23 devices of eight real meter models, each on its own Modbus TCP
  (or serial-line-over-TCP) endpoint with its model's register map;
- a year-to-date of history, written into each gateway's disk queue as the gateway
  would have queued it, then replayed by the gateway itself;
- ``enmon gateway run`` (one per campus gateway), ``enmon ingest run`` and
  ``enmon rules run`` as separate processes — the commands a deployment runs.

Scenarios (``firmware_sim/scenarios/``) make the three kinds of alert happen: the
administration building drifting over its annual quota (early warning), a fouled
steam boiler (efficiency below the GB 24500 limit), and the school's mains meter
dying (meter offline). Each alert arrives through a notifier (a webhook this
demo listens on) and is printed as it comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from enmon.errors import EnmonError
from enmon.localrun import InfluxDB1, Mosquitto, Part, ensure_installed, free_port

log = logging.getLogger("enmon.demo")
console = Console(highlight=False)
DB = "enmon"
# The three kinds of alert the demo exists to show, and the scenario behind each.
WANTED = {
    "quota_early_warning": "building-over-quota",
    "boiler_efficiency": "boiler-fouls",
    "meter_offline": "meter-dies",
}
POLL_S = 5.0
OFFLINE_AFTER_S = 30.0


def _influx(url: str, q: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"db": DB, "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as r:
        body = json.load(r)
    rows: list[dict[str, Any]] = []
    for s in body["results"][0].get("series", []):
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row.update(s.get("tags", {}))
            rows.append(row)
    return rows


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


class _Demo:
    def __init__(self, duration: float, work: Path, mq: Mosquitto, influx: InfluxDB1) -> None:
        self.duration, self.work, self.mq, self.influx = duration, work, mq, influx
        self.alerts: list[dict[str, Any]] = []
        self.parts: list[Part] = []
        self.started = time.monotonic()

    def elapsed(self) -> str:
        return f"[dim]{time.monotonic() - self.started:5.1f}s[/]"

    def say(self, text: str) -> None:
        console.print(f"{self.elapsed()} {text}")

    # ------------------------------------------------------------------ notifier

    async def _hook(self, request: Any) -> Any:
        from aiohttp import web

        note = json.loads(await request.read())
        self.alerts.append(note)
        firing = note.get("state") == "firing"
        colour = "red" if firing else "green"
        labels = note.get("labels", {})
        where = labels.get("boiler") or labels.get("device") or labels.get("building") or ""
        self.say(f"[bold {colour}]ALERT {note.get('state', '?').upper():8}[/] "
                 f"[bold]{note.get('rule')}[/] ({note.get('severity')}) {where}: "
                 f"{note.get('summary', '')}")
        return web.Response(status=204)

    # ------------------------------------------------------------------ main

    async def run(self) -> int:
        from aiohttp import web

        from firmware_sim.campus import CampusSim, load_campus, load_scenario, year_start
        from firmware_sim.campus.sitefile import gateway_configs, site_file
        from firmware_sim.campus_live import LiveCampus, served_quantities
        from firmware_sim.history import energy_quantities, fill_queues

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

        app = web.Application()
        app.router.add_post("/alerts", self._hook)
        runner = web.AppRunner(app)
        await runner.setup()
        hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", hook_port).start()

        campus = load_campus()
        now = time.time()
        scenarios = [load_scenario(s) for s in WANTED.values()]
        sim = CampusSim(campus, start=year_start(now, campus.timezone_hours), run_start=now,
                        scenarios=scenarios)
        self.say(f"[bold]campus[/] {campus.name}: {len(campus.buildings)} buildings, "
                 f"{len(sim.devices)} devices on {len(sim.gateways())} gateways; scenarios: "
                 + ", ".join(WANTED.values()))
        served = served_quantities(sim)
        state_root = self.work / "gateways"
        self.say("generating the year-to-date (hourly; 15-minute for the last two days) into "
                 "each gateway's disk queue …")
        stats = await asyncio.to_thread(
            fill_queues, sim, state_root, until=now, dense_from=now - 2 * 86_400,
            quantities=energy_quantities(sim, served), max_samples=1000)
        history_end_ms = max(1, int(sim.t * 1000))
        # live faults (the dying meter) wait until the rule engine is watching
        sim.reanchor(time.time() + 86_400)
        self.say(f"history: {stats.samples:,} readings in {sum(stats.batches.values())} batches "
                 f"({stats.bytes / 1e6:.1f} MB) in {stats.seconds:.1f} s")

        live = LiveCampus(sim, broker=(self.mq.host, self.mq.port))
        await live.start()
        try:
            return await self._with_campus(live, sim, campus, served, state_root, history_end_ms,
                                           stats.samples, hook_port, stop, gateway_configs,
                                           site_file)
        finally:
            for p in reversed(self.parts):
                p.stop()
            await live.stop()
            await runner.cleanup()

    async def _with_campus(self, live: Any, sim: Any, campus: Any, served: dict[str, list[str]],
                           state_root: Path, history_end_ms: int, history_samples: int,
                           hook_port: int, stop: asyncio.Event, gateway_configs: Any,
                           site_file: Any) -> int:
        broker = {"host": self.mq.host, "port": self.mq.port}
        influx_cfg = {"api": "v1", "url": self.influx.url, "database": DB}
        gw_cfgs = gateway_configs(campus, transports=live.transports,
                                  mqtt={g: live.mqtt_for(g) for g in sim.gateways()},
                                  state_root=state_root, poll_interval_s=POLL_S,
                                  quantities=served, timeout_s=2.0)
        cfg_dir = self.work / "config"
        cfg_dir.mkdir(exist_ok=True)
        # completeness is judged against the history's 15-minute density: the hour before
        # the live part started holds only history
        site_path = _write(cfg_dir / "site.yaml", site_file(campus, poll_interval_s=900.0))
        ingest_path = _write(cfg_dir / "ingest.yaml", {
            "mqtt": {**broker, "client_id": "enmon-demo-ingest"}, "influx": influx_cfg})
        api_port = free_port()
        ytd_h = (time.time() - sim.year_start) / 3600 + 48
        rules_path = _write(cfg_dir / "rules.yaml", {
            "mqtt": {**broker, "client_id": "enmon-demo-rules"},
            "influx": influx_cfg,
            "sites": [str(site_path)],
            "state_dir": str(self.work / "rules-state"),
            "http": {"host": "127.0.0.1", "port": api_port},
            "webhooks": [{"url": f"http://127.0.0.1:{hook_port}/alerts"}],
            "quality": {"meter_offline_s": OFFLINE_AFTER_S, "gateway_offline_grace_s": 20.0},
            # first pass rolls up the whole year-to-date the gateways replayed
            "schedule": {"interval_s": 10.0, "rollup_lookback_h": round(ytd_h, 1)},
        })
        gw_paths = {gw: _write(cfg_dir / f"{gw}.yaml", c) for gw, c in gw_cfgs.items()}

        ingest = Part(name="ingest", args=["ingest", "run", "-c", str(ingest_path)],
                      workdir=self.work)
        self._start(ingest)
        # the ingest group's subscription must exist before the gateways replay: the
        # broker keeps messages only for subscriptions it knows
        if not await self._wait_log(ingest, "event=subscribed", stop):
            return 1
        for gw, path in gw_paths.items():
            self._start(Part(name=gw, args=["gateway", "run", "-c", str(path)],
                             workdir=self.work))
        self.say(f"[bold]{len(gw_paths)} gateways[/] replaying their queues, then polling every "
                 f"{POLL_S:g} s; waiting for the history to reach InfluxDB …")
        if not await self._wait_history(history_end_ms, history_samples, stop):
            return 1
        rules = Part(name="rules", args=["rules", "run", "-c", str(rules_path)],
                     workdir=self.work)
        self._start(rules)
        # the live scenarios (the dying meter) start now that the rule engine watches
        await asyncio.sleep(2.0)
        sim.reanchor(time.time())
        self.say(f"[bold]live[/]: school-main will stop answering in 20 s; the rule engine "
                 f"reports a meter silent for {OFFLINE_AFTER_S:g} s")
        self._where_to_look(api_port, cfg_dir)

        next_print = 0.0
        while not stop.is_set():
            if self.duration and time.monotonic() - self.started >= self.duration:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            dead = [p for p in self.parts if not p.running]
            if dead:
                for p in dead:
                    self.say(f"[red]{p.name} exited[/]:\n{p.log_tail()}")
                return 1
            if time.monotonic() >= next_print:
                next_print = time.monotonic() + 15.0
                await asyncio.to_thread(self._print_live)
        return self._summary(api_port, cfg_dir)

    def _start(self, part: Part) -> None:
        part.start()
        self.parts.append(part)

    async def _wait_log(self, part: Part, marker: str, stop: asyncio.Event,
                        timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if marker in part.log_tail(20_000):
                return True
            if not part.running:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        self.say(f"[red]{part.name} did not get ready ({marker!r})[/]:\n{part.log_tail()}")
        return False

    async def _wait_history(self, end_ms: int, expected: int, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + 120.0
        last = -1
        while time.monotonic() < deadline and not stop.is_set():
            try:
                rows = await asyncio.to_thread(
                    _influx, self.influx.url,
                    f"SELECT count(*) FROM meter WHERE time <= {end_ms}ms GROUP BY device")
            except OSError:
                rows = []
            stored = sum(max((v for k, v in r.items() if k.startswith("count_") and v), default=0)
                         for r in rows)
            if stored != last:
                self.say(f"history stored: {stored:,} / {expected:,} readings")
                last = stored
            if stored >= expected:
                return True
            for p in self.parts:
                if not p.running:
                    self.say(f"[red]{p.name} exited[/]:\n{p.log_tail()}")
                    return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
        self.say("[red]the history did not reach InfluxDB in 120 s; see the logs in "
                 f"{self.work}[/]")
        return False

    def _print_live(self) -> None:
        try:
            rows = _influx(self.influx.url,
                           "SELECT last(active_power_kw) AS kw FROM meter WHERE category = '01000'"
                           " AND time > now() - 1m GROUP BY building")
            boiler = _influx(self.influx.url,
                             "SELECT last(flue_o2_pct) AS o2, last(flue_temp_c) AS t FROM meter "
                             "WHERE device = 'steam1-flue' AND time > now() - 1m")
        except OSError:
            return
        parts = [f"{r['building']} {r['kw']:.0f} kW" for r in rows if r.get("kw") is not None]
        if boiler and boiler[0].get("o2") is not None:
            parts.append(f"steam-1 flue O2 {boiler[0]['o2']:.1f} % at {boiler[0]['t']:.0f} °C")
        if parts:
            self.say("[cyan]live[/]  " + " | ".join(parts))

    def _where_to_look(self, api_port: int, cfg_dir: Path) -> None:
        q = urllib.parse.quote("SELECT * FROM alert ORDER BY time DESC LIMIT 20")
        console.print(
            "[bold]where to look[/] while it runs:\n"
            f"  alerts (rules API):   enmon rules alerts --url http://127.0.0.1:{api_port}\n"
            f"  alert history:        curl '{self.influx.url}/query?db={DB}&q={q}'\n"
            f"  daily energy:         curl '{self.influx.url}/query?db={DB}&q="
            + urllib.parse.quote("SELECT sum(amount) FROM energy_daily WHERE total='1' "
                                 "GROUP BY building, energy_type") + "'\n"
            f"  configs (campus → gateways, site, rules): {cfg_dir}\n"
            f"  process logs:         {self.work}/*.log")

    def _summary(self, api_port: int, cfg_dir: Path) -> int:
        fired = {a.get("rule") for a in self.alerts if a.get("state") == "firing"}
        console.print(f"\n[bold]done[/] after {time.monotonic() - self.started:.0f} s: "
                      f"{len(self.alerts)} notifications delivered by the webhook notifier.")
        ok = True
        for rule, scenario in WANTED.items():
            seen = rule in fired
            ok &= seen
            mark = "[green]✓[/]" if seen else "[red]✗[/]"
            console.print(f"  {mark} {rule:20} (scenario {scenario})")
        console.print(f"Everything (configs, logs, data) is in {self.work}; the rules' alert "
                      f"history stays in InfluxDB measurement 'alert'.")
        if not ok:
            console.print("[red]not every kind of alert arrived; see rules.log in "
                          f"{self.work}[/]")
        return 0 if ok else 1


def run_demo(*, duration: float, may_install: bool) -> int:
    # the demo talks to the user on the console; per-device server chatter goes to DEBUG
    for name in ("enmon.sim", "enmon.localrun", "pymodbus"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        ensure_installed(["mosquitto", "influxd"], may_install=may_install)
    except EnmonError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    work = Path(tempfile.mkdtemp(prefix="enmon-demo-"))
    mq = Mosquitto(workdir=work / "mosquitto")
    influx = InfluxDB1(workdir=work / "influxd")
    try:
        mq.start()
        influx.start()
        console.print(
            f"[bold]mosquitto[/] on {mq.url}   [bold]influxd[/] on {influx.url}   (dir {work})"
        )
        data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{DB}"'}).encode()
        urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10).close()
        return asyncio.run(_Demo(duration, work, mq, influx).run())
    finally:
        influx.stop()
        mq.stop()
