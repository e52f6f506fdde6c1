"""The simulated ironworks' day and month statistics, from InfluxDB, equal its ground truth.

Real parts: the factory's meters are Modbus TCP servers with their real register maps
(firmware_sim), read by the gateway's own Modbus driver and bus over TCP; readings are
stored in a real influxd 1.6 as ingest writes them (``enmon.lineproto``); the hand-kept
coal and output ledgers are entered as manual readings through the product's manual path
(``inspector.manual.enter``: checked against the readings before, flagged ``manual``, author
and reason audited). The day and month documents are then uploaded through the outbox to a
local HTTPS platform that goes down half way: each arrives once, as computed.
Time is compressed: the test steps the factory's simulated clock through November
2026 an hour at a time and stamps each reading with the simulated time (as the gateway
stamps the time it read at), so a month runs in seconds. Not in this test: MQTT and the
ingest process (their end-to-end guarantees have their own tests; this one is about the
statistics), so the test writes the lines ingest would write.

Tolerances are the registers' resolution only: the electricity meter carries 0.01 kWh,
the gas corrector whole m³, the steam computer a float64; the ledgers are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from energy.manual import Entry
from energy.site import Site
from enmon import lineproto
from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.localrun import InfluxDB1, free_port
from firmware_sim.factory import DAY_S, Factory
from firmware_sim.modbus_tcp import ModbusMeterServer
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import ModbusDriver
from gateway.profile import load_profile
from gateway.transport import TcpLink
from inspector import manual
from inspector.store import Store
from tests.upload.platform import Platform
from upload import collect
from upload.config import parse_config
from upload.outbox import Outbox
from upload.transport import create

TZ = ZoneInfo("Asia/Shanghai")
T0 = dt.datetime(2026, 11, 1, tzinfo=TZ).timestamp()
DAYS = 30
# kgce per unit (energy/data/factors.yaml): 当量值 and DB31/T 783-2026 等价值, gas, steam, coal
E_CAL, E_EQ, GAS, STEAM, COAL = 0.1229, 0.28078, 1.2143, 128.6, 714.3
# register resolution: per difference of two readings
TOL = {"furnace-e": 0.02, "aux-e": 0.02, "gas": 2.0, "steam": 1e-6, "coal": 1e-9,
       "hot-metal": 1e-9}


async def run_factory(factory: Factory, writer: InfluxV1Writer, store: Store, site: Site
                      ) -> None:
    """Step the factory through the month: poll each served meter hourly, enter the ledgers
    as manual readings (``inspector.manual``: checked, flagged ``manual``, audited)."""
    clock = {"t": T0}

    def source(dev: str) -> Callable[[float], dict[str, float]]:
        return lambda _wall: factory.values(dev, clock["t"])  # simulated, not wall, time

    servers, buses = [], []
    for dev, name in factory.PROFILES.items():
        profile = load_profile(name)
        srv = ModbusMeterServer(profile, source(dev), port=free_port())
        await srv.start()
        servers.append(srv)
        bd = BusDevice(ModbusDriver(dev, profile, 1, framing="tcp"), Timing(timeout_s=3.0))
        buses.append((dev, Bus(dev, TcpLink("127.0.0.1", srv.port), [bd])))
    try:
        lines: list[str] = []
        for hour in range(DAYS * 24 + 1):
            clock["t"] = T0 + hour * 3600
            ts = int(clock["t"] * 1000)
            for dev, bus in buses:
                r = await bus.poll_device(bus.devices[0])
                assert r.complete, (dev, hour)
                tags = {"site": factory.site, "gateway": factory.gateway, "device": dev,
                        "building": "plant", "energy_type": factory.ENERGY[dev]}
                lines.append(lineproto.line("meter", tags, r.values, ts))
            if hour % 24 == 0:  # the storekeeper enters the day's ledgers by hand
                for dev in ("coal", "hot-metal"):
                    t, q, v = factory.ledger_entry(dev, hour // 24)
                    await manual.enter(store, writer, Entry(
                        "reading", factory.site, "manual", dev, q, int(t * 1000), v, "仓库 刘工",
                        "地磅单" if dev == "coal" else "产量日报", source="cli"),
                        site_model=site, now_ms=int(t * 1000))
            if len(lines) >= 2000:
                await writer.write(lines)
                lines = []
        await writer.write(lines)
    finally:
        for _, bus in buses:
            await bus.close()
        for srv in servers:
            await srv.stop()


def expected(truth: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Indicator code → (value, tolerance) from the simulator's exact consumption."""
    e = truth["furnace-e"] + truth["aux-e"]
    te = TOL["furnace-e"] + TOL["aux-e"]
    rest = truth["gas"] * GAS + truth["steam"] * STEAM + truth["coal"] * COAL
    rest_tol = TOL["gas"] * GAS + TOL["steam"] * STEAM
    cal = e * E_CAL + rest
    return {
        "energy.electricity": (e, te), "energy.gas": (truth["gas"], TOL["gas"]),
        "energy.steam": (truth["steam"], TOL["steam"]), "energy.coal": (truth["coal"], 1e-9),
        "output.hot_metal": (truth["hot-metal"], 1e-9),
        "comprehensive_energy.calorific": (cal / 1000, (te * E_CAL + rest_tol) / 1000),
        "comprehensive_energy.equivalent": ((e * E_EQ + rest) / 1000,
                                            (te * E_EQ + rest_tol) / 1000),
        "unit_energy.hot_metal": (cal / truth["hot-metal"],
                                  (te * E_CAL + rest_tol) / truth["hot-metal"]),
    }


@pytest.mark.timeout(240)
async def test_day_and_month_statistics_from_influxdb_equal_the_simulators_truth(
        influxdb: InfluxDB1, tmp_path: Path) -> None:
    factory = Factory(T0)
    site = Site.model_validate(factory.site_file())
    cfg = InfluxConfig(url=influxdb.url, database="enmon")
    writer, ql = InfluxV1Writer(cfg), InfluxQL(cfg)
    try:
        await run_factory(factory, writer, Store(ql), site)
        now_ms = int((T0 + DAYS * DAY_S + 7200) * 1000)
        docs = await collect.documents(ql, site, factory.unit_code, "month", "2026-11",
                                       now_ms=now_ms)
        (one_day,) = await collect.documents(ql, site, factory.unit_code, "day", "2026-11-03",
                                             now_ms=now_ms)
    finally:
        await writer.close()
        await ql.close()
    assert [d["kind"] for d in docs] == ["day"] * DAYS + ["month"]
    assert one_day["indicators"] == docs[2]["indicators"]
    checked = 0
    for i, doc in enumerate(docs):
        start = T0 + (i * DAY_S if doc["kind"] == "day" else 0)
        end = start + (DAY_S if doc["kind"] == "day" else DAYS * DAY_S)
        want = expected(factory.truth(start, end))
        got = {ind["code"]: ind for ind in doc["indicators"]}
        for code, (value, tol) in want.items():
            assert got[code]["value"] == pytest.approx(value, abs=tol + 1e-9), (doc["period"],
                                                                                  code)
            checked += 1
        assert doc["quality"]["ok"] is True, doc["quality"]
        assert doc["quality"]["completeness"]["value"] == 1.0
    month = docs[-1]
    assert month["period"] == "2026-11" and month["stat_time"] == "2026-11-01T00:00:00+08:00"
    assert month["unit"] == {"code": factory.unit_code, "name": factory.unit_name}
    assert month["quality"]["day_month"]["calorific"]["deviation"] < 1e-9
    assert docs[2]["period"] == "2026-11-03"
    assert docs[2]["stat_time"] == "2026-11-03T00:00:00+08:00"
    assert checked == (DAYS + 1) * 8

    # the ledgers came in as manual readings, each with its author and reason kept
    rows = await _entries(influxdb)
    assert len(rows) == 2 * (DAYS + 1) and {r["author"] for r in rows} == {"仓库 刘工"}

    # `enmon upload collect` computes the same day from the database (printed, not queued)
    import asyncio
    import json

    import yaml
    from typer.testing import CliRunner

    from upload.cli import app

    site_yaml = tmp_path / "site.yaml"
    site_yaml.write_text(yaml.safe_dump(factory.site_file(), allow_unicode=True), "utf-8")
    r = await asyncio.to_thread(CliRunner().invoke, app, [
        "collect", "2026-11-03", "-s", str(site_yaml), "--influx-url", influxdb.url])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["indicators"] == one_day["indicators"]

    # uploaded through the outbox to the platform, which goes down half way: each day and
    # the month arrive once, as the documents computed above
    await upload_across_an_outage(docs, tmp_path)


async def _entries(influxdb: InfluxDB1) -> list[dict[str, object]]:
    ql = InfluxQL(InfluxConfig(url=influxdb.url, database="enmon"))
    try:
        return await Store(ql).entries("ironworks", int(T0 * 1000),
                                       int((T0 + (DAYS + 1) * DAY_S) * 1000))
    finally:
        await ql.close()


async def upload_across_an_outage(docs: list[dict[str, object]], tmp_path: Path) -> None:
    import asyncio
    import time

    with Platform(tmp_path / "platform") as p:
        cfg = parse_config(p.config(outbox=tmp_path / "outbox.sqlite",
                                    backoff={"base_s": 0.05, "max_s": 0.3}))
        transport = create(cfg)

        async def drain(until: Callable[[], bool], box: Outbox) -> None:
            stop = asyncio.Event()
            task = asyncio.create_task(box.run(transport, stop, poll_s=0.05))
            deadline = time.monotonic() + 60
            try:
                while not until():
                    assert time.monotonic() < deadline, box.counts()
                    assert not task.done(), task
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)

        with Outbox(cfg.outbox, backoff=cfg.backoff) as box:
            half = len(docs) // 2
            for d in docs[:half]:
                box.put(d)
            await drain(lambda: len(p.records) == half, box)
            p.stop()
            for d in docs[half:]:
                box.put(d)
            stop = asyncio.Event()
            task = asyncio.create_task(box.run(transport, stop, poll_s=0.05))
            await asyncio.sleep(0.5)  # retrying against the closed port
            stop.set()
            await asyncio.wait_for(task, 20)
            assert box.counts() == {"pending": len(docs) - half, "sent": half, "dead": 0}
            p.start()
            await drain(lambda: len(p.records) == len(docs), box)
        await transport.aclose()
        recs = p.records
        assert all(revs.keys() == {1} for revs in recs.values())
        by_period = {next(iter(r.values())).document["period"]: next(iter(r.values())).document
                     for r in recs.values()}
        assert sorted(by_period) == sorted(str(d["period"]) for d in docs)
        for d in docs:
            assert by_period[str(d["period"])]["indicators"] == d["indicators"]
