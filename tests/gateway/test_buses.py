"""Every bus type over a real link: Modbus RTU on a pty, RTU over TCP, Modbus TCP,
DL/T 645 on a pty, ASCII sensors (request/response and streaming) on a pty.

The simulators are threads on the other end of the pty / socket speaking the
real framing; the gateway side is the production bus scheduler and drivers.
Every profile in the library is served with its own test-vector values and
must come back through the wire unchanged.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from firmware_sim.cjt188_meter import Cjt188Server
from firmware_sim.cjt188_meter import Meter as Cjt188Meter
from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.faults import Faults
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from firmware_sim.serial_sensor import SerialSensorServer
from gateway import library
from gateway.bus import Bus, BusDevice, Timing
from gateway.cjt188 import Cjt188Profile
from gateway.dlt645 import Dlt645Profile
from gateway.drivers import Cjt188Driver, Dlt645Driver, Driver, LineDriver, ModbusDriver
from gateway.profile import ModbusProfile
from gateway.serial_line import SerialLineProfile
from gateway.transport import Link, SerialLink, TcpLink

FAST = Timing(timeout_s=0.5, retries=2, inter_frame_s=0.002)


def close(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-6, abs_tol=1e-9) for k in a)


def serve(profile: object, values: dict[str, float], link: str) -> tuple[LineServer, Driver]:
    if isinstance(profile, ModbusProfile):
        srv: LineServer = ModbusSlaveServer({7: Unit(profile, values)}, link=link)  # type: ignore[arg-type]
        return srv, ModbusDriver("dev", profile, 7, gap=125)
    if isinstance(profile, Dlt645Profile):
        srv = Dlt645Server({"000012345678": Meter(profile, values)}, link=link)  # type: ignore[arg-type]
        return srv, Dlt645Driver("dev", profile, "000012345678")
    if isinstance(profile, Cjt188Profile):
        srv = Cjt188Server({"00000012345678": Cjt188Meter(profile, values)}, link=link)  # type: ignore[arg-type]
        return srv, Cjt188Driver("dev", profile, "00000012345678")
    assert isinstance(profile, SerialLineProfile)
    template = ";".join(f"{q}={{{q}}}" for q in values)  # replaced below per profile
    if profile.model == "generic-ascii-flue-gas":
        template = "O2={flue_o2_pct};T={flue_temp_c}" + (";CO={flue_co_ppm}"
                                                         if "flue_co_ppm" in values else "")
    elif profile.model == "generic-ascii-flue-gas-stream":
        template = "$O2,{flue_o2_pct},TF,{flue_temp_c}*"
    srv = SerialSensorServer(profile, template, values, link=link, period=0.05)  # type: ignore[arg-type]
    return srv, LineDriver("dev", profile)


def link_for(srv: LineServer) -> Link:
    return SerialLink(srv.device) if srv.link == "pty" else TcpLink("127.0.0.1", srv.port)


# M-Bus profiles are read through their own frames and simulator (firmware_sim/mbus_meter.py):
# tests/gateway/test_mbus.py::test_the_gateway_polls_an_mbus_meter_from_its_config
LINE_PROFILES = [n for n in library.names()
                 if getattr(library.load(n), "protocol", "") != "mbus"]


@pytest.mark.parametrize("link", ["pty", "tcp"])
@pytest.mark.parametrize("name", LINE_PROFILES)
async def test_every_profile_vector_over_a_pty_and_tcp(name: str, link: str,
                                                       servers: list[LineServer]) -> None:
    # each meter's frames over the serial path and over TCP (a serial server / DTU in
    # transparent mode), from the same simulator
    profile = library.load(name)
    for vec in profile.test_vectors:
        srv, driver = serve(profile, dict(vec.expect), link)
        servers.append(srv.start())
        bus = Bus(link, link_for(srv), [BusDevice(driver, FAST)])
        reading = await bus.poll_device(bus.devices[0])
        await bus.close()
        got = {q: v for q, v in reading.values.items() if q in vec.expect}
        assert close(got, dict(vec.expect)), (name, vec.name, got)
        # quantities the vector does not set are absent (line) or read as the sim's zeros
        assert reading.complete or isinstance(profile, SerialLineProfile | Dlt645Profile)


@pytest.mark.parametrize(("framing", "link"), [("rtu", "pty"), ("rtu", "tcp"), ("tcp", "tcp")])
async def test_modbus_bus_with_several_units(framing: str, link: str,
                                             servers: list[LineServer]) -> None:
    sdm = library.load("eastron-sdm630")
    adl = library.load("acrel-adl400")
    assert isinstance(sdm, ModbusProfile) and isinstance(adl, ModbusProfile)
    a = {"voltage_l1_v": 231.5, "active_energy_import_kwh": 1500.25, "active_power_kw": 3.5}
    b = {"voltage_l1_v": 229.9, "active_energy_import_kwh": 88.12, "active_power_kw": -1.234}
    srv = ModbusSlaveServer({1: Unit(sdm, a), 2: Unit(adl, b)}, framing=framing,  # type: ignore[arg-type]
                            link=link)  # type: ignore[arg-type]
    servers.append(srv.start())
    devs = [BusDevice(ModbusDriver("m1", sdm, 1, framing=framing, gap=125), FAST),  # type: ignore[arg-type]
            BusDevice(ModbusDriver("m2", adl, 2, framing=framing, gap=125), FAST)]  # type: ignore[arg-type]
    bus = Bus("b", link_for(srv), devs)
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert close({q: readings["m1"].values[q] for q in a}, a)
    assert close({q: readings["m2"].values[q] for q in b}, b)
    assert readings["m1"].complete and readings["m2"].complete


async def test_pymodbus_client_reads_the_rtu_simulator(servers: list[LineServer]) -> None:
    """An independent master (pymodbus) agrees with our RTU slave framing and CRC."""
    from pymodbus.client import AsyncModbusSerialClient

    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    srv = ModbusSlaveServer({5: Unit(sdm, {"voltage_l1_v": 230.0})}, link="pty")
    servers.append(srv.start())
    client = AsyncModbusSerialClient(srv.device, baudrate=9600, timeout=2, retries=1)
    await client.connect()
    try:
        rr = await client.read_input_registers(0, count=2, device_id=5)
        assert not rr.isError()
        assert rr.registers == [0x4366, 0x0000]  # 230.0 as float32
        # more than the profile's 80-register limit: exception 3, decoded by pymodbus
        err = await client.read_input_registers(0, count=90, device_id=5)
        assert err.isError() and err.exception_code == 3
    finally:
        client.close()


async def test_dead_meter_costs_at_most_its_timeout(servers: list[LineServer]) -> None:
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    vals = {"voltage_l1_v": 230.0}
    units = {u: Unit(sdm, vals) for u in (1, 2, 3)}
    units[2] = Unit(sdm, vals, Faults(dead=True))
    srv = ModbusSlaveServer(units, link="pty")
    servers.append(srv.start())
    timing = Timing(timeout_s=0.3, retries=3, inter_frame_s=0.002, offline_after=2)
    # gap=0: the dead meter has several transactions, none may add to its cost
    devs = [BusDevice(ModbusDriver(f"m{u}", sdm, u, gap=0), timing) for u in (1, 2, 3)]
    assert len(devs[1].driver.steps) > 1
    bus = Bus("b", SerialLink(srv.device), devs)
    for cycle in range(6):
        readings = {r.device: r for r in await bus.poll_cycle(cycle)}
        assert readings["m1"].values["voltage_l1_v"] == 230.0
        assert readings["m3"].values["voltage_l1_v"] == 230.0
        if "m2" in readings:
            assert readings["m2"].values == {}  # a failed read is absent, never 0
    await bus.close()
    dead = devs[1].stats
    # one timeout per attempted cycle, no retries, and never longer than the timeout (+ slack)
    assert dead.timeouts == dead.polls
    assert dead.last_latency_s < timing.timeout_s + 0.5  # slack for a loaded test machine
    assert not dead.online and dead.skipped >= 1  # offline after 2, then backed off
    assert devs[0].stats.ok == 6 and devs[2].stats.ok == 6


async def test_crc_errors_and_garbage_are_retried(servers: list[LineServer]) -> None:
    sdm = library.load("eastron-sdm120")
    assert isinstance(sdm, ModbusProfile)
    vals = {"voltage_l1_v": 230.0, "active_energy_import_kwh": 10.5}
    srv = ModbusSlaveServer({1: Unit(sdm, vals, Faults(crc=0.3, garbage=0.2, seed=3))}, link="pty")
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("m", sdm, 1, gap=125), Timing(timeout_s=0.5, retries=4,
                                                               inter_frame_s=0.005))
    bus = Bus("b", SerialLink(srv.device), [dev])
    got = [await bus.poll_device(dev) for _ in range(15)]
    await bus.close()
    assert dev.stats.frame_errors > 0  # faults happened and were noticed
    good = [r for r in got if r.values]
    assert len(good) >= 13  # and nearly every cycle still succeeded through retries
    for r in good:
        assert r.values["voltage_l1_v"] == 230.0  # a corrupt answer never leaks a value


async def test_exception_response_leaves_only_that_read_empty(servers: list[LineServer]) -> None:
    iem = library.load("schneider-iem3255")
    assert isinstance(iem, ModbusProfile)
    vals = {"voltage_l1_v": 230.0, "active_energy_import_kwh": 5.0}
    # the meter refuses the energy block (exception 2) but serves measurements
    limited = iem.model_copy(update={"limits": iem.limits.model_copy(
        update={"forbidden": [(3200, 3210)]})})
    srv = ModbusSlaveServer({1: Unit(limited, vals)}, link="pty")
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("m", iem, 1, gap=125), FAST)
    bus = Bus("b", SerialLink(srv.device), [dev])
    r = await bus.poll_device(dev)
    await bus.close()
    assert r.values["voltage_l1_v"] == pytest.approx(230.0)
    assert "active_energy_import_kwh" not in r.values
    assert dev.stats.exceptions == 1 and dev.stats.online


async def test_dlt645_bus_with_two_meters_and_faults(servers: list[LineServer]) -> None:
    p = library.load("chint-dtsu666-dlt645")
    assert isinstance(p, Dlt645Profile)
    a = {"active_energy_import_kwh": 1234.56, "voltage_l1_v": 230.1, "active_power_kw": -0.5}
    srv = Dlt645Server({"000000000001": Meter(p, a, Faults(crc=0.2, garbage=0.1, seed=1)),
                        "000000000002": Meter(p, {"voltage_l1_v": 229.0})}, link="pty")
    servers.append(srv.start())
    d1 = BusDevice(Dlt645Driver("a", p, "000000000001"), Timing(timeout_s=0.5, retries=4,
                                                                inter_frame_s=0.002))
    d2 = BusDevice(Dlt645Driver("b", p, "000000000002"), FAST)
    bus = Bus("dlt", SerialLink(srv.device), [d1, d2])
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert close({q: readings["a"].values[q] for q in a}, a)
    # meter b has only a voltage: the other DIs answer "no requested data" -> absent, not 0
    assert readings["b"].values == {"voltage_l1_v": 229.0}
    assert d2.stats.exceptions == len(p.quantities) - 1


async def test_line_sensor_faults_yield_no_value(servers: list[LineServer]) -> None:
    p = library.load("generic-ascii-flue-gas")
    assert isinstance(p, SerialLineProfile)
    srv = SerialSensorServer(p, "O2={flue_o2_pct};T={flue_temp_c}",
                             {"flue_o2_pct": 3.5, "flue_temp_c": 150.0},
                             faults=Faults(garbage=0.3, crc=0.2, seed=5), link="pty")
    servers.append(srv.start())
    dev = BusDevice(LineDriver("fg", p), Timing(timeout_s=0.5, retries=0, inter_frame_s=0.01))
    bus = Bus("fg", SerialLink(srv.device), [dev])
    got = [await bus.poll_device(dev) for _ in range(12)]
    await bus.close()
    assert dev.stats.frame_errors > 0
    for r in got:
        assert r.values in ({}, {"flue_o2_pct": 3.5, "flue_temp_c": 150.0})
    assert sum(1 for r in got if r.values) >= 3


async def test_tcp_link_survives_server_restart_of_connection(servers: list[LineServer]) -> None:
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    srv = ModbusSlaveServer({1: Unit(sdm, {"voltage_l1_v": 230.0})}, framing="tcp", link="tcp")
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("m", sdm, 1, framing="tcp", gap=125), FAST)
    bus = Bus("t", TcpLink("127.0.0.1", srv.port), [dev])
    assert (await bus.poll_device(dev)).values["voltage_l1_v"] == 230.0
    await bus.link.close()  # dropped connection: the next transaction reconnects
    await asyncio.sleep(0)
    assert (await bus.poll_device(dev)).values["voltage_l1_v"] == 230.0
    await bus.close()
