"""Meter change → alert delivered: end-to-end latency on one box.

    .venv/bin/python bench/alert_latency.py [--crossings 30 --poll 1.0]

Real parts, each its own process: a simulated Eastron SDM630 on Modbus TCP (this process),
``enmon gateway run`` polling it every ``--poll`` seconds, mosquitto, ``enmon rules run``
with a peak-demand threshold (``for_s: 0``) and its webhook notifier, and a webhook
receiver here. The meter's power is switched across the threshold ``--crossings`` times
(up: a "firing" notification is due; down: a "resolved" one); each latency is the time from
the switch to the webhook's arrival. A reading waits up to one poll interval for the next
poll, so the printed figures are raw and with that wait subtracted (from the moment the
simulator answered the first poll after the switch). Bounded: at
most ``--crossings`` switches and ``--timeout`` s each. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from enmon.localrun import Mosquitto, Part, free_port
from firmware_sim.modbus_tcp import ModbusMeterServer
from gateway.profile import load_profile


class Load:
    """The meter's readings: power as set by the benchmark, energy counting up."""

    def __init__(self) -> None:
        self.kw = 10.0
        self.kwh = 1000.0
        self.t = time.time()

    def reading(self, now: float) -> dict[str, float]:
        self.kwh += self.kw * max(0.0, now - self.t) / 3600
        self.t = now
        return {"active_power_kw": self.kw, "active_energy_import_kwh": self.kwh,
                "voltage_l1_v": 230.0, "voltage_l2_v": 230.0, "voltage_l3_v": 230.0}


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))]


async def main_async(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mq = Mosquitto(workdir=work / "mq")
        mq.start()
        try:
            load = Load()
            sim = ModbusMeterServer(load_profile("eastron-sdm630"), load.reading, port=free_port())
            notes: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

            async def hook(request: web.Request) -> web.Response:
                notes.put_nowait((time.time(), json.loads(await request.read())))
                return web.Response(status=204)

            app = web.Application()
            app.router.add_post("/hook", hook)
            runner = web.AppRunner(app)
            await runner.setup()
            hook_port = free_port()
            await web.TCPSite(runner, "127.0.0.1", hook_port).start()
            broker = {"host": mq.host, "port": mq.port}
            gw_cfg = work / "gw.yaml"
            gw_cfg.write_text(yaml.safe_dump({
                "site": "bench", "gateway": "gw-1", "state_dir": str(work / "gw"), "mqtt": broker,
                "poll": {"interval_s": a.poll},
                "devices": [{"name": "main", "profile": "eastron-sdm630", "building": "b1",
                             "category": "01000",
                             "transport": {"type": "tcp", "host": "127.0.0.1",
                                           "port": sim.port}}]}))
            rules_cfg = work / "rules.yaml"
            rules_cfg.write_text(yaml.safe_dump({
                "mqtt": {**broker, "client_id": "bench-rules"},
                "state_dir": str(work / "rules"),
                "webhooks": [{"url": f"http://127.0.0.1:{hook_port}/hook"}],
                "thresholds": [{"name": "peak", "quantity": "active_power_kw", "above": 50.0,
                                "clear_below": 45.0, "for_s": 0, "repeat_s": 86400}]}))
            async with sim:
                rules = Part(name="rules", args=["rules", "run", "-c", str(rules_cfg)],
                             workdir=work)
                gw = Part(name="gateway", args=["gateway", "run", "-c", str(gw_cfg)],
                          workdir=work)
                rules.start()
                gw.start()
                try:
                    deadline = time.monotonic() + 30
                    while "event=mqtt_connected" not in rules.log_tail(20_000) or not any(
                            r.values for r in sim.served):
                        if time.monotonic() > deadline:
                            raise SystemExit("rules or gateway did not start:\n" + rules.log_tail()
                                             + gw.log_tail())
                        await asyncio.sleep(0.1)
                    await asyncio.sleep(2 * a.poll)  # a few baseline readings below the threshold
                    raw: list[float] = []
                    net: list[float] = []
                    for i in range(a.crossings):
                        up = i % 2 == 0
                        want = "firing" if up else "resolved"
                        t_switch = time.time()
                        load.kw = 80.0 if up else 10.0
                        while True:
                            remaining = a.timeout - (time.time() - t_switch)
                            if remaining <= 0:
                                raise SystemExit(f"no {want} notification within {a.timeout} s")
                            at, note = await asyncio.wait_for(notes.get(), remaining)
                            if note.get("kind") == want:
                                break
                        # the first reading after the switch: when the simulator answered it
                        polled = min((r.ts for r in sim.served if r.ts >= t_switch and r.values),
                                     default=t_switch)
                        raw.append(at - t_switch)
                        net.append(at - polled)
                        await asyncio.sleep(a.poll * 0.37)  # land the next switch mid-interval
                finally:
                    gw.stop()
                    rules.stop()
            await runner.cleanup()
        finally:
            mq.stop()  # whatever happened, no broker is left behind
    print(f"{a.crossings} threshold crossings, gateway poll every {a.poll:g} s, for_s 0")
    for name, xs in (("switch → webhook", raw), ("poll → webhook (poll wait subtracted)", net)):
        print(f"{name:40s} p50 {pct(xs, 50) * 1000:7.0f} ms  p95 {pct(xs, 95) * 1000:7.0f} ms  "
              f"p99 {pct(xs, 99) * 1000:7.0f} ms  max {max(xs) * 1000:7.0f} ms  "
              f"mean {statistics.fmean(xs) * 1000:7.0f} ms")
    print(f"baseline in the same run: the poll interval itself, {a.poll * 1000:.0f} ms; "
          f"p99 beyond it: {(pct(raw, 99) - a.poll) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crossings", type=int, default=30)
    ap.add_argument("--poll", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    main()
