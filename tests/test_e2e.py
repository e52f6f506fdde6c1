"""One reading end to end, with every real part:

simulated SDM630 (pymodbus TCP) → ``enmon gateway run`` → mosquitto → ``enmon ingest run``
→ influxd 1.6, and ``enmon rules run`` → local webhook receiver + ``alert`` measurement.

The simulator records every read it answered (values as the registers carried them);
the test pairs the i-th stored point with the i-th served read and requires the
same values, so any stage that drops, duplicates or alters a reading fails it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import web

from enmon.localrun import InfluxDB1, Mosquitto, Part, free_port
from firmware_sim.meter import LoadProfile, ThreePhaseMeter
from firmware_sim.modbus_tcp import ModbusMeterServer
from gateway.profile import load_profile
from tests.conftest import INFLUX_DB
from tests.support import influx_rows

T = TypeVar("T")
pytestmark = pytest.mark.slow


async def eventually(check: Callable[[], T], timeout: float, what: str) -> T:
    """Await a truthy ``check()`` while the event loop keeps serving the simulator."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await asyncio.to_thread(check)
            if value:
                return value
        except Exception as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


def write_configs(
    tmp: Path, mq: Mosquitto, influx: InfluxDB1, sim_port: int, webhook: str | None = None
) -> dict[str, Path]:
    broker = {"host": mq.host, "port": mq.port}
    influx_cfg = {"api": "v1", "url": influx.url, "database": INFLUX_DB}
    files = {
        "gateway": {
            "site": "hosp-a",
            "gateway": "gw-01",
            "state_dir": str(tmp / "gw-state"),
            "mqtt": broker,
            "poll": {"interval_s": 0.3},
            "devices": [
                {
                    "name": "main",
                    "profile": "eastron-sdm630",
                    "unit_id": 1,
                    "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim_port},
                    "building": "outpatient",
                    "category": "01A00",
                }
            ],
        },
        "ingest": {"mqtt": {**broker, "client_id": "ingest-e2e"}, "influx": influx_cfg},
        "rules": {
            "mqtt": {**broker, "client_id": "rules-e2e"},
            "influx": influx_cfg,
            "webhooks": [{"url": webhook}] if webhook else [],
            "thresholds": [
                {
                    "name": "peak_demand",
                    "quantity": "active_power_kw",
                    "above": 50.0,
                    "clear_below": 45.0,
                    "for_s": 1.0,
                    "severity": "warning",
                }
            ],
        },
    }
    paths = {}
    for name, data in files.items():
        p = tmp / f"{name}.yaml"
        p.write_text(yaml.safe_dump(data))
        paths[name] = p
    return paths


@pytest.fixture
async def sim() -> AsyncIterator[ModbusMeterServer]:
    # a 20 s "day" that starts at 10 s, rising: power crosses 50 kW about 3 s in
    meter = ThreePhaseMeter(LoadProfile(20.0, 60.0, period_s=20.0, phase_s=5.0), t0=time.time())
    server = ModbusMeterServer(load_profile("eastron-sdm630"), meter.reading, port=free_port())
    async with server:
        yield server


async def test_every_reading_arrives_unaltered(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, sim: ModbusMeterServer
) -> None:
    cfg = write_configs(tmp_path, mosquitto, influxdb, sim.port)
    ingest = Part(name="ingest", args=["ingest", "run", "-c", str(cfg["ingest"])], workdir=tmp_path)
    gateway = Part(
        name="gateway", args=["gateway", "run", "-c", str(cfg["gateway"])], workdir=tmp_path
    )
    ingest.start()
    try:
        # ingest must hold its subscription before the gateway's first batch
        await eventually(lambda: "event=subscribed" in ingest.log_tail(), 20, "ingest subscribed")
        gateway.start()
        q = "SELECT * FROM meter WHERE device = 'main'"
        await eventually(
            lambda: len(influx_rows(influxdb.url, INFLUX_DB, q)) >= 15, 40, "15 readings stored"
        )
        assert gateway.stop() == 0, gateway.log_tail()
        served = [r for r in sim.served if r.values]
        rows = await eventually(
            lambda: (r := influx_rows(influxdb.url, INFLUX_DB, q)) and len(r) >= len(served) and r,
            20,
            f"all {len(served)} served readings stored",
        )
    finally:
        gateway.kill()
        ingest.stop()

    assert len(rows) == len(served), "a reading was duplicated or invented"
    rows.sort(key=lambda r: r["time"])
    for i, (row, read) in enumerate(zip(rows, served, strict=True)):
        assert row["site"] == "hosp-a" and row["gateway"] == "gw-01"
        assert row["building"] == "outpatient" and row["category"] == "01A00"
        assert row["energy_type"] == "electricity"
        assert abs(row["time"] - read.ts * 1000) < 2000, f"reading {i}: timestamp drifted"
        for quantity, value in read.values.items():
            stored = row[quantity]
            assert stored is not None, f"reading {i}: {quantity} dropped"
            assert abs(stored - value) <= 1e-9 * max(1.0, abs(value)), (
                f"reading {i}: {quantity} stored {stored!r}, simulator served {value!r}"
            )
    seqs = [row["seq"] for row in rows]
    assert seqs == list(range(len(rows))), "seq must count batches from 0 without gaps"
    energy = [row["active_energy_import_kwh"] for row in rows]
    assert energy == sorted(energy) and energy[-1] > energy[0], "the counter must advance"


async def test_threshold_alert_reaches_webhook_and_influx(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1, sim: ModbusMeterServer
) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    cfg = write_configs(
        tmp_path, mosquitto, influxdb, sim.port, webhook=f"http://127.0.0.1:{port}/hook"
    )
    parts = [
        Part(name=n, args=[n, "run", "-c", str(cfg[n])], workdir=tmp_path)
        for n in ("ingest", "rules", "gateway")
    ]
    try:
        for p in parts[:2]:
            p.start()
        await eventually(
            lambda: "event=rules_started" in parts[1].log_tail(), 20, "rules subscribed"
        )
        parts[2].start()
        await eventually(
            lambda: any(a["state"] == "firing" for a in received), 40, "a firing alert"
        )
        firing = next(a for a in received if a["state"] == "firing")
        assert firing["rule"] == "peak_demand" and firing["device"] == "main"
        assert firing["value"] > 50.0
        assert firing["ts"] - firing["since_ms"] >= 1000, "fired before its for-duration"
        # the load falls again within the 20 s cycle: hysteresis clears it below 45 kW
        await eventually(lambda: any(a["state"] == "resolved" for a in received), 40, "resolved")
        resolved = next(a for a in received if a["state"] == "resolved")
        assert resolved["value"] < 45.0
        stored = await eventually(
            lambda: influx_rows(influxdb.url, INFLUX_DB, "SELECT * FROM alert"), 20, "alert rows"
        )
        states = {(r["rule"], r["state"]) for r in stored}
        assert ("peak_demand", "firing") in states
    finally:
        for p in reversed(parts):
            p.stop()
        await runner.cleanup()
