"""A rules service stopped while a notification is on the wire delivers it once.

The outbox is at-least-once across a kill -9; a *graceful* stop (systemd's SIGTERM, a
restart after a config change) must not turn a message already on the wire into a second
delivery at the next start. Real mosquitto, influxd and a loopback webhook receiver that
holds its answer until the test lets it go.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from enmon import wire
from enmon.localrun import InfluxDB1, Mosquitto
from tests.rules.conftest import free_port
from tests.rules.test_service import Running, batch, make_cfg, publish_until_seen, until

pytestmark = pytest.mark.slow


class SlowHook:
    """A webhook that answers only when released (a receiver slow to confirm)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        await self.release.wait()
        return web.json_response({})


async def test_a_stop_during_a_send_neither_loses_nor_repeats_it(
        tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    hook = SlowHook()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        cfg = make_cfg(tmp_path, mosquitto, influxdb, f"http://127.0.0.1:{port}/hook",
                       free_port())
        run = Running(cfg)
        await run.ready(mosquitto)
        t0 = int(time.time() * 1000)
        topic = wire.telemetry_topic("campus", "gw-01")
        await publish_until_seen(mosquitto, [batch(i, t0 + i * 500, 60.0) for i in range(5)],
                                 topic, lambda: hook.bodies, "the firing on the wire")
        assert hook.bodies[0]["kind"] == "firing"
        # stop while the receiver holds its answer: the stop waits for it ...
        closing = asyncio.create_task(run.close())
        await asyncio.sleep(0.3)  # the stop is under way (not a wait for a result)
        assert not closing.done(), "the service stopped with its send still on the wire"
        hook.release.set()
        await asyncio.wait_for(closing, 20)

        # ... and the next start finds nothing left to send again
        run = Running(cfg)
        await run.ready(mosquitto)
        pending = [r for r in run.svc.outbox.rows() if r["channel"] == "hook"]
        assert pending == [], f"delivered, yet queued again: {pending}"
        # the service is alive and delivers what comes next exactly once
        await publish_until_seen(mosquitto, [batch(10, t0 + 6000, 40.0)], topic,
                                 lambda: len(hook.bodies) >= 2, "the resolved")
        await until(lambda: run.svc.outbox.rows() == [], "outbox drained")
        assert [b["kind"] for b in hook.bodies] == ["firing", "resolved"]
        await run.close()
    finally:
        hook.release.set()
        await runner.cleanup()
