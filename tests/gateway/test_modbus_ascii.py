"""Modbus ASCII (``:`` hex … LRC CR LF) over a serial line.

The request vector is the read of holding registers 108..110 from unit 17 used throughout
the MODBUS specifications (``11 03 00 6B 00 03``), whose ASCII frame with LRC 7E is
widely reproduced. pymodbus' own ASCII master then reads our ASCII slave over a pty (so
the two sides do not share a blind spot), and the production bus reads it at 9600 baud
with line timing, with faults yielding no value and a logged reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from enmon.errors import ConfigError
from firmware_sim.faults import Fault, Faults
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import library
from gateway import modbus_frames as mf
from gateway.agent import make_driver
from gateway.bus import Bus, BusDevice, Timing
from gateway.config import GatewayConfig, check_profiles
from gateway.drivers import ModbusDriver
from gateway.profile import ModbusProfile
from gateway.transport import SerialLink, TcpLink

VALUES = {"voltage_l1_v": 231.5, "active_energy_import_kwh": 1500.25, "active_power_kw": 3.5}


def sdm630() -> ModbusProfile:
    p = library.load("eastron-sdm630")
    assert isinstance(p, ModbusProfile)
    return p


def test_ascii_request_matches_the_spec_example() -> None:
    req = mf.ReadRequest(0x11, "holding", 0x006B, 3)
    assert mf.lrc(bytes.fromhex("11 03 00 6B 00 03")) == 0x7E
    assert mf.ascii_request(req) == b":1103006B00037E\r\n"


def test_ascii_answer_parse_and_errors() -> None:
    req = mf.ReadRequest(0x11, "holding", 0x006B, 3)
    # the spec's register values 0x022B, 0x0000, 0x0064 (Application Protocol §6.3)
    answer = mf.ascii_encode(bytes.fromhex("11 03 06 02 2B 00 00 00 64"))
    assert answer.startswith(b":110306022B00000064") and answer.endswith(b"\r\n")
    assert mf.ascii_frame_length(b"\x00\xff" + answer + b":11") == 2 + len(answer)
    assert mf.parse_ascii_response(req, answer) == [0x022B, 0, 0x64]
    bad_lrc = answer[:-3] + (b"0" if answer[-3:-2] != b"0" else b"1") + b"\r\n"
    with pytest.raises(mf.FrameError, match="LRC"):
        mf.parse_ascii_response(req, bad_lrc)
    with pytest.raises(mf.FrameError, match="not a Modbus ASCII"):
        mf.parse_ascii_response(req, b":11ZZ\r\n")
    with pytest.raises(mf.ModbusException) as info:
        mf.parse_ascii_response(req, mf.ascii_encode(bytes.fromhex("11 83 02")))
    assert info.value.code == 2
    with pytest.raises(mf.FrameError, match="unit 18"):
        mf.parse_ascii_response(req, mf.ascii_encode(bytes.fromhex("12 03 06 02 2B 00 00 00 64")))


async def test_pymodbus_ascii_master_reads_our_ascii_slave(servers: list[LineServer]) -> None:
    from pymodbus import FramerType
    from pymodbus.client import AsyncModbusSerialClient

    srv = ModbusSlaveServer({5: Unit(sdm630(), {"voltage_l1_v": 230.0})}, framing="ascii")
    servers.append(srv.start())
    client = AsyncModbusSerialClient(srv.device, framer=FramerType.ASCII, baudrate=9600,
                                     timeout=2, retries=1)
    await client.connect()
    try:
        rr = await client.read_input_registers(0, count=2, device_id=5)
        assert not rr.isError(), rr
        assert rr.registers == [0x4366, 0x0000]  # 230.0 as float32
    finally:
        client.close()


async def test_ascii_bus_reads_two_units_with_line_timing(servers: list[LineServer]) -> None:
    p = sdm630()
    other = {"voltage_l1_v": 229.0, "active_energy_import_kwh": 7.5, "active_power_kw": -1.25}
    srv = ModbusSlaveServer({1: Unit(p, VALUES), 2: Unit(p, other)}, framing="ascii", baud=9600)
    servers.append(srv.start())
    timing = Timing(timeout_s=1.0, retries=1, inter_frame_s=0.002)
    devs = [BusDevice(ModbusDriver(f"m{u}", p, u, framing="ascii", gap=19,
                                   quantities=list(VALUES)), timing) for u in (1, 2)]
    bus = Bus("ascii", SerialLink(srv.device), devs)
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert readings["m1"].values == pytest.approx(VALUES) and readings["m1"].complete
    assert readings["m2"].values == pytest.approx(other) and readings["m2"].complete
    # the line timing is real: ASCII sends two characters per byte, RTU one
    reads = len(devs[0].driver.steps)
    words = sum(r.count for r in devs[0].driver.reads)  # type: ignore[attr-defined]
    req, resp = mf.ascii_wire_bytes(words // reads)
    assert devs[0].stats.last_latency_s >= reads * (req + resp) * 11 / 9600 * 0.9


async def test_ascii_over_tcp(servers: list[LineServer]) -> None:
    # Modbus ASCII through a serial server in transparent mode: the same ":"…LRC CR LF frames
    p = sdm630()
    srv = ModbusSlaveServer({3: Unit(p, VALUES)}, framing="ascii", link="tcp")
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("m3", p, 3, framing="ascii", gap=19, quantities=list(VALUES)),
                    Timing(timeout_s=1.0, retries=1, inter_frame_s=0.0))
    bus = Bus("ascii-tcp", TcpLink("127.0.0.1", srv.port), [dev])
    r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == pytest.approx(VALUES) and r.complete and dev.stats.frame_errors == 0


@pytest.mark.parametrize(("fault", "reason"), [
    ("garbage", "event=bad_frame"), ("crc", "LRC error"), ("address", "answer from unit 2"),
    ("timeout", "event=timeout")])
async def test_ascii_faults_yield_no_value_and_a_reason(
        fault: Fault, reason: str, servers: list[LineServer],
        caplog: pytest.LogCaptureFixture) -> None:
    p = sdm630()
    srv = ModbusSlaveServer({1: Unit(p, VALUES, Faults.always(fault))}, framing="ascii",
                            baud=9600)
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("m", p, 1, framing="ascii", gap=19, quantities=list(VALUES)),
                    Timing(timeout_s=0.4, retries=1, inter_frame_s=0.002))
    bus = Bus("ascii", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.WARNING, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == {}
    assert any(reason in m for m in caplog.messages), caplog.messages


def config(**transport: Any) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": "/tmp/x",
        "devices": [{"name": "m", "profile": transport.pop("profile", "eastron-sdm630"),
                     **({"address": "000000000001"} if transport.pop("dlt", False) else {}),
                     "transport": {"type": "serial", "port": "/dev/ttyUSB0", **transport}}]})


def test_config_chooses_ascii_and_refuses_misfits(tmp_path: Path) -> None:
    cfg = config(framing="ascii", bytesize=7, parity="E")
    (p,) = check_profiles(cfg, "gw.yaml")
    drv = make_driver(cfg.devices[0], p)
    assert isinstance(drv, ModbusDriver) and drv.framing == "ascii"
    assert drv.steps[0].request() == mf.ascii_request(
        mf.ReadRequest(1, drv.reads[0].function, drv.reads[0].address,  # type: ignore[arg-type]
                       drv.reads[0].count))
    with pytest.raises(ConfigError, match="Modbus ASCII"):
        check_profiles(config(framing="ascii", profile="chint-dtsu666-dlt645", dlt=True), "gw")
    with pytest.raises(ConfigError, match="7 data bits"):
        check_profiles(config(bytesize=7), "gw.yaml")
