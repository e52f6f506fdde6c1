"""``enmon demo``: every part of enmon running on this machine, for real.

Starts mosquitto and influxd (Debian packages) on free loopback ports in a temp
directory, a simulated Eastron SDM630 on Modbus TCP, then ``enmon gateway run``,
``enmon ingest run`` and ``enmon rules run`` as separate processes — the same
commands a deployment runs. Prints readings as InfluxDB stores them and alerts
as the webhook receives them; stops everything it started on Ctrl-C or after
``--duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from enmon.errors import EnmonError
from enmon.localrun import InfluxDB1, Mosquitto, Part, ensure_installed, free_port

log = logging.getLogger("enmon.demo")
console = Console(highlight=False)
DB = "enmon"


def _write_configs(
    work: Path, mq: Mosquitto, influx: InfluxDB1, sim_port: int, hook_url: str
) -> dict[str, Path]:
    broker = {"host": mq.host, "port": mq.port}
    influx_cfg = {"api": "v1", "url": influx.url, "database": DB}
    configs: dict[str, Any] = {
        "gateway": {
            "site": "demo-campus",
            "gateway": "gw-01",
            "state_dir": str(work / "gateway-state"),
            "mqtt": broker,
            "poll": {"interval_s": 1.0},
            "devices": [
                {
                    "name": "main",
                    "profile": "eastron-sdm630",
                    "unit_id": 1,
                    "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim_port},
                    "building": "office-a",
                    "category": "01000",
                }
            ],
        },
        "ingest": {"mqtt": {**broker, "client_id": "enmon-demo-ingest"}, "influx": influx_cfg},
        "rules": {
            "mqtt": {**broker, "client_id": "enmon-demo-rules"},
            "influx": influx_cfg,
            "webhooks": [{"url": hook_url}],
            "thresholds": [
                {
                    "name": "peak_demand",
                    "quantity": "active_power_kw",
                    "above": 50.0,
                    "clear_below": 45.0,
                    "for_s": 5.0,
                    "severity": "warning",
                }
            ],
        },
    }
    paths = {}
    for name, data in configs.items():
        paths[name] = work / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(data, sort_keys=False))
    return paths


async def _demo(duration: float, work: Path, mq: Mosquitto, influx: InfluxDB1) -> int:
    from aiohttp import web

    from firmware_sim.meter import LoadProfile, ThreePhaseMeter
    from firmware_sim.modbus_tcp import ModbusMeterServer
    from gateway.profile import load_profile
    from ingest.storage import InfluxConfig, InfluxQL

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    alerts: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        a = json.loads(await request.read())
        alerts.append(a)
        colour = "red" if a["state"] == "firing" else "green"
        console.print(
            f"[bold {colour}]ALERT {a['state'].upper():8}[/] {a['rule']} "
            f"({a['severity']}) {a['site']}/{a['device']}: {a['summary']}"
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/alerts", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    # a compressed 60 s "day": the load rises past 50 kW about 8 s in
    meter = ThreePhaseMeter(LoadProfile(20.0, 60.0, period_s=60.0, phase_s=12.0), t0=time.time())
    sim = ModbusMeterServer(load_profile("eastron-sdm630"), meter.reading, port=free_port())
    cfg = _write_configs(work, mq, influx, sim.port, f"http://127.0.0.1:{hook_port}/alerts")
    parts = [
        Part(name=n, args=[n, "run", "-c", str(cfg[n])], workdir=work)
        for n in ("ingest", "rules", "gateway")
    ]
    query = InfluxQL(InfluxConfig(url=influx.url, database=DB))
    readings = 0
    started = time.monotonic()
    try:
        async with sim:
            console.print(
                f"[bold]simulated meter[/]  Eastron SDM630 on modbus-tcp://127.0.0.1:{sim.port}"
                " unit 1\n"
                f"[bold]look yourself[/] while it runs: curl '{influx.url}/query?db={DB}"
                "&q=SELECT+*+FROM+alert'"
            )
            for p in parts:
                p.start()
                console.print(f"[bold]started[/] enmon {' '.join(p.args)}  (log: {p.log_path})")
            last_ts = 0
            while not stop.is_set():
                if duration and time.monotonic() - started >= duration:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
                for p in parts:
                    if not p.running:
                        console.print(f"[red]{p.name} exited[/]:\n{p.log_tail()}")
                        return 1
                rows = await query.rows(
                    "SELECT active_power_kw, active_energy_import_kwh, voltage_l1_v, site, device"
                    " FROM meter "
                    f"WHERE time > {last_ts}ms ORDER BY time"
                )
                for r in rows[-1:]:
                    console.print(
                        f"reading  {time.strftime('%H:%M:%S', time.localtime(r['time'] / 1000))}  "
                        f"{r['site']}/{r['device']}  P={r['active_power_kw']:6.2f} kW  "
                        f"E={r['active_energy_import_kwh']:.3f} kWh  U1={r['voltage_l1_v']:.1f} V  "
                        f"(+{len(rows)} stored)"
                    )
                if rows:
                    readings += len(rows)
                    last_ts = rows[-1]["time"]
    finally:
        for p in reversed(parts):
            p.stop()
        await query.close()
        await runner.cleanup()
    console.print(
        f"\n[bold]done[/]: {readings} readings stored in InfluxDB, "
        f"{len(alerts)} alert notifications."
    )
    console.print(f"Logs and configs: {work}")
    if readings == 0:
        console.print("[red]no reading reached InfluxDB — see the logs above[/]")
        return 1
    return 0


def run_demo(*, duration: float, may_install: bool) -> int:
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
        import urllib.parse
        import urllib.request

        data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{DB}"'}).encode()
        urllib.request.urlopen(f"{influx.url}/query", data=data, timeout=10).close()
        return asyncio.run(_demo(duration, work, mq, influx))
    finally:
        influx.stop()
        mq.stop()
