"""Fixtures for the inspector tests: one real influxd loaded once, one real API stack.

Loading simulated days through the wire contract, ingest's processor and the rule
engine takes seconds, so it happens once per session (``loaded``) and the tests
that only read share it. Tests that write (acknowledgements) only add ``alert``
rows and assert on their own rows.

``stack`` runs, in one background event loop on free loopback ports:
- the rules service's real alert API (``rules.service.RulesService.api``) with its
  outbox delivering alert changes into the same influxd, and one live firing alert
  (a ``peak_demand`` threshold crossed by a real telemetry batch);
- the inspector API (uvicorn + FastAPI) pointed at influxd and at that rules API.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from enmon.localrun import InfluxDB1, free_port

DB = "enmon"
# the faults happen early so three simulated days hold all of them
FAULTS = dict(gap_at=dt.timedelta(days=1, hours=8), gap_len=dt.timedelta(hours=6),
              spike_at=dt.timedelta(days=1, hours=14), reject_at=dt.timedelta(hours=3))
DAYS = 3
MONTH = "2026-10"
INSPECTOR_TOKEN = "enm_test-inspector-token-0123456789"
MANAGER_TOKEN = "enm_test-manager-token-0123456789"
CLERK_TOKEN = "enm_test-clerk-token-0123456789"  # a data clerk (抄表员): reads and enters
LIVE_ALERT_DEVICE = "hosp-main"


@dataclass
class Loaded:
    server: InfluxDB1
    url: str
    data: Any  # stack.month.Loaded


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(scope="session")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
    from stack.month import Faults, load_month, month_bounds

    server = InfluxDB1(workdir=tmp_path_factory.mktemp("inspector") / "influxd")
    server.start()

    async def load() -> Any:
        cfg = InfluxConfig(url=server.url, database=DB)
        q, w = InfluxQL(cfg), InfluxV1Writer(cfg)
        try:
            await q.create_database()
            start, _ = month_bounds(MONTH)
            return await load_month(query=q, writer=w, start=start,
                                    end=start + dt.timedelta(days=DAYS), faults=Faults(**FAULTS))
        finally:
            await q.close()
            await w.close()

    try:
        data = _run(load())
        yield Loaded(server, server.url, data)
    finally:
        server.stop()


@dataclass
class Stack:
    url: str  # inspector API
    rules_url: str
    service: Any  # rules.service.RulesService
    live_fingerprint: str
    loaded: Loaded
    loop: asyncio.AbstractEventLoop

    def fire(self, device: str, building: str) -> str:
        """Make the rules engine fire a fresh alert for ``device``; return its fingerprint.

        Runs in the stack's thread (the rules service's SQLite outbox belongs to it), so
        each test can have an alert of its own to acknowledge.
        """
        from enmon import wire

        async def go() -> str:
            now = int(time.time() * 1000)
            batch = wire.Batch(self.loaded.data.site.site, "gw-test", 1, now,
                               {device: wire.DeviceMeta(building, "01000", "electricity")},
                               [wire.Sample(device, now, {"active_power_kw": 812.5})])
            self.service.apply(self.service.engine.on_batch(batch))
            return next(a.fingerprint for a in self.service.book.alerts.values()
                        if a.labels.get("device") == device and a.state.value == "firing")

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(30)


@pytest.fixture(scope="session")
def stack(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import uvicorn
    from aiohttp import web

    from enmon.influx import InfluxConfig, InfluxV1Writer
    from inspector.api import create_app
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig, TokenEntry
    from rules.config import RulesConfig, ThresholdRule
    from rules.service import ALERT_DB, AlertDbSender, RulesService

    influx = InfluxConfig(url=loaded.url, database=DB)
    rules_cfg = RulesConfig(
        influx=influx, state_dir=tmp_path_factory.mktemp("rules-state"),
        thresholds=[ThresholdRule(name="hospital_demand", quantity="active_power_kw",
                                  above=500.0, clear_below=400.0, severity="warning")])
    holder: dict[str, Any] = {}  # the service lives in the stack's thread (SQLite is per thread)
    rules_port, api_port = free_port(), free_port()
    cfg = InspectorConfig(
        influx=influx, rules_url=f"http://127.0.0.1:{rules_port}",
        tokens=[TokenEntry(name="wang.inspector", role="inspector",
                           sha256=token_hash(INSPECTOR_TOKEN)),
                TokenEntry(name="li.facilities", role="facility_manager",
                           sha256=token_hash(MANAGER_TOKEN)),
                TokenEntry(name="zhao.clerk", role="data_clerk",
                           sha256=token_hash(CLERK_TOKEN))])
    app = create_app(cfg, sites={loaded.data.site.site: loaded.data.site})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=api_port,
                                           log_level="warning", lifespan="on"))
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        service = holder["service"] = RulesService(rules_cfg)
        writer = InfluxV1Writer(influx)
        service.outbox.senders = {ALERT_DB: AlertDbSender(writer)}
        runner = web.AppRunner(service.api())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", rules_port).start()
        outbox = asyncio.create_task(service.outbox.run(stop))
        api_task = asyncio.create_task(server.serve())
        deadline = time.monotonic() + 60
        while not server.started:
            if api_task.done():
                api_task.result()
            assert time.monotonic() < deadline, "the inspector API did not start in 60 s"
            await asyncio.sleep(0.02)
        ready.set()
        await stop.wait()
        server.should_exit = True
        await api_task
        await outbox
        await runner.cleanup()
        await writer.close()
        service.outbox.close()

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
            ready.set()

    t = threading.Thread(target=thread_main, name="inspector-stack", daemon=True)
    t.start()
    assert ready.wait(60), "the API stack did not start within 60 s"
    if failure:
        raise failure[0]
    service = holder["service"]
    stack = Stack(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{rules_port}", service,
                  "", loaded, loop)
    # a real telemetry batch crossing the threshold: the rules engine fires the alert
    stack.live_fingerprint = stack.fire(LIVE_ALERT_DEVICE, "hospital")
    try:
        yield stack
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(30)
        if not t.is_alive():
            loop.close()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    p = Path(__file__).resolve().parents[2] / "test-artifacts"
    p.mkdir(exist_ok=True)
    return p
