"""Run a simulated campus end to end: history, endpoints, gateways, ingest, rules.

One orchestration shared by ``enmon demo`` and the end-to-end scenario tests, so
the demo shows exactly what the tests check. Given running mosquitto and influxd
it:

1. steps the campus from 1 January to now, writing each gateway's readings into
   that gateway's disk queue (:mod:`firmware_sim.history`);
2. serves every device on a real endpoint (:class:`~firmware_sim.campus_live.LiveCampus`),
   each gateway's MQTT going through a cuttable relay;
3. writes the configs the real parts read — one gateway file per campus
   gateway, the ingest file, the rules file and site file generated from the
   campus (:mod:`firmware_sim.campus.sitefile`);
4. starts ``enmon ingest run`` and waits for its subscription (the broker keeps
   messages only for subscriptions it knows), then ``enmon gateway run`` per
   gateway (they replay the history, then poll live), waits for the history to
   be stored, starts ``enmon rules run``, and restarts the scenarios'
   ``run_start`` clock: live faults begin once the rule engine watches.

Alerts arrive on a local webhook (the rules' notifier), in :attr:`CampusRun.alerts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from enmon.localrun import InfluxDB1, Mosquitto, Part, free_port
from firmware_sim.campus.config import CampusModel
from firmware_sim.campus.scenario import Scenario
from firmware_sim.campus.sim import CampusSim, year_start


def influx_rows(url: str, db: str, q: str) -> list[dict[str, Any]]:
    data = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=10) as r:
        body = json.load(r)
    rows: list[dict[str, Any]] = []
    for s in body["results"][0].get("series", []):
        for values in s["values"]:
            row = dict(zip(s["columns"], values, strict=True))
            row.update(s.get("tags", {}))
            rows.append(row)
    return rows


def with_replacements(site: dict[str, Any],
                      replaced: list[tuple[float, str, str, float, float]]) -> dict[str, Any]:
    """Record the simulated meter swaps in the site file, as a facility manager would."""
    from energy.site import Meter

    for b in site.get("buildings", []):
        for m in b.get("meters", []):
            counter = Meter.model_validate(m).counter
            reps = [{"at": int(t * 1000), "old_final": old, "new_initial": new}
                    for t, dev, q, old, new in replaced if dev == m["device"] and q == counter]
            if reps:
                m["replacements"] = reps
    return site


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


@dataclass
class RunOptions:
    """Knobs of a campus run (defaults: the demo's).

    Args:
        poll_s: live poll interval of every gateway.
        offline_after_s: the rules' meter-offline timeout.
        gateway_grace_s: how long a gateway's LWT must stand before an alert.
        rules_interval_s: period of the rules' scheduled checks (quota, boilers). Each pass
            re-reads the rollup look-back (the whole year-to-date here), so not too often.
        dense_days: history at 15-minute resolution for this many last days (boiler windows).
        history_days: history from this many days ago (at local midnight); None: from
            1 January (a year-to-date).
        rules_first: start the rule engine before the history is stored (it then rolls up
            what arrives as it arrives, as after a site-wide outage), not after.
        device_timeout_s: gateways' per-request timeout (loopback on a busy box).
        history_timeout_s: bound on waiting for the history to be stored.
    """

    poll_s: float = 5.0
    offline_after_s: float = 30.0
    gateway_grace_s: float = 20.0
    rules_interval_s: float = 60.0
    dense_days: float = 2.0
    history_days: float | None = None
    rules_first: bool = False
    device_timeout_s: float = 2.0
    history_timeout_s: float = 150.0


@dataclass
class CampusRun:
    """A campus, its history and every enmon part watching it (see module docstring)."""

    campus: CampusModel
    scenarios: list[Scenario]
    mq: Mosquitto
    influx: InfluxDB1
    work: Path
    db: str = "enmon"
    options: RunOptions = field(default_factory=RunOptions)
    say: Callable[[str], None] = lambda _text: None
    on_alert: Callable[[dict[str, Any]], None] = lambda _note: None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    sim: CampusSim | None = None
    live_start: float = 0.0
    api_port: int = 0
    history_samples: int = 0

    # ------------------------------------------------------------------ notifier

    async def _hook(self, request: Any) -> Any:
        from aiohttp import web

        note = json.loads(await request.read())
        note["received_at"] = time.time()
        self.alerts.append(note)
        self.on_alert(note)
        return web.Response(status=204)

    def fired(self, rule: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a.get("rule") == rule and a.get("state") == "firing"]

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> CampusRun:
        from aiohttp import web

        self._stack = contextlib.AsyncExitStack()
        app = web.Application()
        app.router.add_post("/alerts", self._hook)
        runner = web.AppRunner(app)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        self.hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", self.hook_port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for p in reversed(self.parts):
            await asyncio.to_thread(p.stop)
        await self._stack.aclose()

    def dead_part(self) -> Part | None:
        return next((p for p in self.parts if not p.running), None)

    async def start(self, stop: asyncio.Event | None = None) -> bool:
        """Everything up to "the rule engine watches"; False (and said why) on failure."""
        from firmware_sim.campus.sitefile import gateway_configs, site_file
        from firmware_sim.campus_live import LiveCampus, served_quantities
        from firmware_sim.history import energy_quantities, fill_queues

        stop = stop or asyncio.Event()
        o = self.options
        now = time.time()
        tzh = self.campus.timezone_hours
        first = (year_start(now, tzh) if o.history_days is None else
                 ((now + tzh * 3600) // 86_400 - o.history_days) * 86_400 - tzh * 3600)
        self.history_window = (first, now, now - o.dense_days * 86_400)
        sim = CampusSim(self.campus, start=first,
                        run_start=now, scenarios=self.scenarios)
        self.sim = sim
        served = served_quantities(sim)
        state_root = self.work / "gateways"
        self.say("generating the year-to-date (hourly; 15-minute for the last "
                 f"{o.dense_days:g} days) into each gateway's disk queue …")
        stats = await asyncio.to_thread(
            fill_queues, sim, state_root, until=now, dense_from=now - o.dense_days * 86_400,
            quantities=energy_quantities(sim, served), max_samples=1000)
        self.history_samples = stats.samples
        history_end_ms = int(sim.t * 1000)
        sim.reanchor(time.time() + 86_400)  # live faults wait for the rule engine
        self.say(f"history: {stats.samples:,} readings in {sum(stats.batches.values())} "
                 f"batches ({stats.bytes / 1e6:.1f} MB) in {stats.seconds:.1f} s")

        live = LiveCampus(sim, broker=(self.mq.host, self.mq.port))
        await live.start()
        self._stack.push_async_callback(live.stop)
        self.live = live

        broker = {"host": self.mq.host, "port": self.mq.port}
        influx_cfg = {"api": "v1", "url": self.influx.url, "database": self.db}
        cfg_dir = self.work / "config"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        self.cfg_dir = cfg_dir
        gw_paths = {
            gw: _write(cfg_dir / f"{gw}.yaml", c)
            for gw, c in gateway_configs(
                self.campus, transports=live.transports,
                mqtt={g: live.mqtt_for(g) for g in sim.gateways()}, state_root=state_root,
                poll_interval_s=o.poll_s, quantities=served, timeout_s=o.device_timeout_s,
            ).items()
        }
        # completeness and the inspectors' gap finder judge meters against the history's
        # hourly density: the hour before the live part started holds only history
        site_path = _write(cfg_dir / "site.yaml", with_replacements(
            site_file(self.campus, poll_interval_s=3600.0), sim.replaced))
        ingest_path = _write(cfg_dir / "ingest.yaml", {
            "mqtt": {**broker, "client_id": f"enmon-{self.campus.site}-ingest"},
            "influx": influx_cfg})
        self.api_port = free_port()
        rules_path = _write(cfg_dir / "rules.yaml", {
            "mqtt": {**broker, "client_id": f"enmon-{self.campus.site}-rules"},
            "influx": influx_cfg,
            "sites": [str(site_path)],
            "state_dir": str(self.work / "rules-state"),
            "http": {"host": "127.0.0.1", "port": self.api_port},
            "webhooks": [{"url": f"http://127.0.0.1:{self.hook_port}/alerts"}],
            "quality": {"meter_offline_s": o.offline_after_s,
                        "gateway_offline_grace_s": o.gateway_grace_s},
            # one box, one clock: roll up what was stored a few seconds ago
            "schedule": {"interval_s": o.rules_interval_s, "rollup_settle_s": 3},
        })

        ingest = Part(name="ingest", args=["ingest", "run", "-c", str(ingest_path)],
                      workdir=self.work)
        self._start(ingest)
        if not await self._wait_log(ingest, "event=subscribed", stop):
            return False
        for gw, path in gw_paths.items():
            self._start(Part(name=gw, args=["gateway", "run", "-c", str(path)],
                             workdir=self.work))
        self.say(f"{len(gw_paths)} gateways replaying their queues, then polling every "
                 f"{o.poll_s:g} s; waiting for the history to reach InfluxDB …")
        rules = Part(name="rules", args=["rules", "run", "-c", str(rules_path)],
                     workdir=self.work)
        if o.rules_first:
            self._start(rules)
            if not await self._wait_log(rules, "event=rules_started", stop):
                return False
        self.history_end_ms = history_end_ms
        if not await self._wait_history(history_end_ms, stats.samples, stop):
            return False
        if not o.rules_first:
            self._start(rules)
            if not await self._wait_log(rules, "event=rules_started", stop):
                return False
        self.live_start = time.time()
        sim.reanchor(self.live_start)
        return True

    async def start_inspector(self, stop: asyncio.Event | None = None) -> tuple[str, str] | None:
        """Start ``enmon api run`` (the inspector API and web console) on this campus.

        Returns (console URL, a fresh inspector token) or None if the inspector's
        extra is not installed. Only the token's SHA-256 is written to disk.
        """
        try:
            from inspector.auth import new_token, token_hash
        except ImportError:
            return None
        token = new_token()
        port = free_port()
        path = _write(self.cfg_dir / "inspector.yaml", {
            "influx": {"api": "v1", "url": self.influx.url, "database": self.db},
            "sites": [str(self.cfg_dir / "site.yaml")],
            "rules_url": f"http://127.0.0.1:{self.api_port}",
            "timezone": "Asia/Shanghai",
            "tokens": [{"name": "demo.inspector", "role": "facility_manager",
                        "sha256": token_hash(token)}],
        })
        api = Part(name="api", args=["api", "run", "-c", str(path), "--port", str(port)],
                   workdir=self.work)
        self._start(api)
        if not await self._wait_log(api, "event=api_started", stop or asyncio.Event()):
            return None
        return f"http://127.0.0.1:{port}/", token

    def _start(self, part: Part) -> None:
        part.start()
        self.parts.append(part)

    async def _wait_log(self, part: Part, marker: str, stop: asyncio.Event,
                        timeout: float = 90.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if marker in part.log_path.read_text(errors="replace"):
                return True
            if not part.running:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        self.say(f"{part.name} did not get ready ({marker!r}):\n{part.log_tail()}")
        return False

    async def stored_history(self, end_ms: int) -> int:
        rows = await asyncio.to_thread(
            influx_rows, self.influx.url, self.db,
            f"SELECT count(*) FROM meter WHERE time <= {end_ms}ms GROUP BY device")
        return sum(max((v for k, v in r.items() if k.startswith("count_") and v), default=0)
                   for r in rows)

    async def _wait_history(self, end_ms: int, expected: int, stop: asyncio.Event) -> bool:
        deadline = time.monotonic() + self.options.history_timeout_s
        last = -1
        while time.monotonic() < deadline and not stop.is_set():
            try:
                stored = await self.stored_history(end_ms)
            except OSError:
                stored = 0
            if stored != last:
                self.say(f"history stored: {stored:,} / {expected:,} readings")
                last = stored
            if stored >= expected:
                return True
            dead = self.dead_part()
            if dead is not None:
                self.say(f"{dead.name} exited:\n{dead.log_tail()}")
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        self.say(f"the history did not reach InfluxDB in {self.options.history_timeout_s:g} s; "
                 f"see the logs in {self.work}")
        return False
