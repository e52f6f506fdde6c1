"""CJ/T 188 water and heat meters: the codec checked against frames published by others,
then read end to end over a pty at 2400 baud, even parity, with line timing (a water and a
heat meter sharing the bus) and over TCP, and with faults (garbage, wrong checksum, wrong
address, timeout, abnormal answer) yielding no value and a logged reason.

Public frames (copied byte for byte; sources also named in ``gateway/cjt188.py`` and the
profiles):

* hftangyu.com/563.html — a 2018-order (DI ``1F 90``) read of SC water meter
  78330011223344: ``FE FE FE FE 68 10 44 33 22 11 00 33 78 01 03 1F 90 00 80 16``, answered
  ``68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01 22 11 05 15
  20 21 84 08 16`` (556677.00 m³) — whose printed checksum 08 is a typo: the bytes sum to 13h.
* cnblogs.com/llguanli/p/8683992.html — a 2004-order (DI ``90 1F``) read of JY heat meter
  00000040314132: ``FE FE FE FE 68 20 32 41 31 40 00 00 00 01 03 90 1F 01 20 16``, answered
  with 46 data bytes, unit code before each value (0.02 MWh, 10.34 m³, 25.35 / 25.66 °C).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from enmon.errors import ConfigError
from firmware_sim.cjt188_meter import Cjt188Server, Meter
from firmware_sim.faults import Fault, Faults
from firmware_sim.rtu import LineServer
from gateway import cjt188 as cj
from gateway import library
from gateway.bus import Bus, BusDevice, Timing
from gateway.config import GatewayConfig, check_profiles
from gateway.drivers import Cjt188Driver
from gateway.transport import SerialLink, TcpLink


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def profile(name: str) -> cj.Cjt188Profile:
    p = library.load(name)
    assert isinstance(p, cj.Cjt188Profile)
    return p


SC_READ = "FE FE FE FE 68 10 44 33 22 11 00 33 78 01 03 1F 90 00 80 16"
SC_ANSWER = ("68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C "
             "31 01 22 11 05 15 20 21 84 08 16")
JY_READ = "FE FE FE FE 68 20 32 41 31 40 00 00 00 01 03 90 1F 01 20 16"
JY_ANSWER = ("FE FE FE FE 68 20 32 41 31 40 00 00 00 81 2E 90 1F 01 08 02 00 00 00 "
             "08 02 00 00 00 17 00 00 00 00 35 00 00 00 00 2C 34 10 00 00 35 25 00 66 25 00 "
             "00 00 00 53 00 12 10 07 15 20 00 00 31 16")


# --------------------------------------------------------------------------- public frames


def test_water_read_matches_published_frame() -> None:
    water = profile("generic-cjt188-water")
    assert cj.read_request(0x10, "78330011223344", "901F", 0, water.version) == hx(SC_READ)
    # the page's answer carries a wrong checksum (08, the bytes sum to 13h): refused by name
    with pytest.raises(cj.Cjt188FrameError, match="sum 0x13, sent 0x08"):
        cj.find_frame(hx(SC_ANSWER))
    fixed = hx(SC_ANSWER)[:-2] + bytes([cj.checksum(hx(SC_ANSWER)[:-2]), 0x16])
    frame, used = cj.find_frame(fixed)
    assert frame is not None and used == len(fixed)
    assert (frame.meter_type, frame.address) == (0x10, "78330011223344")
    values = cj.parse_read_response(0x10, "78330011223344", frame, "901F", 0, water.version)
    assert cj.item_value(water, "water_volume_m3", values) == 556677.00
    assert cj.Status.of(values[17:19]) == cj.Status(valve="closed", battery_low=False)


def test_heat_read_matches_published_frame() -> None:
    heat = profile("generic-cjt188-heat")
    assert cj.read_request(0x20, "00000040314132", "901F", 1, heat.version) == hx(JY_READ)
    frame, _ = cj.find_frame(hx(JY_ANSWER))  # checksum 31h is right
    assert frame is not None and frame.meter_type == 0x20
    values = cj.parse_read_response(0x20, "00000040314132", frame, "901F", 1, heat.version)
    assert len(values) == heat.length
    # this maker sends the unit code before the value
    jy = heat.model_copy(update={"unit_position": "before"})
    got = {q: cj.item_value(jy, q, values) for q in jy.quantities}
    assert got == pytest.approx({"heat_energy_gj": 0.02 * 3.6, "heat_power_kw": 0,
                                 "water_flow_m3_h": 0, "water_volume_m3": 10.34,
                                 "supply_temp_c": 25.35, "return_temp_c": 25.66,
                                 "alarm_active": 0})
    # read with the standard order, the unit byte is a value byte: refused, not misread
    with pytest.raises(cj.Cjt188FrameError, match="unknown unit code 0x00"):
        cj.item_value(heat, "heat_energy_gj", values)


def test_editions_and_answers_do_not_mix() -> None:
    frame, _ = cj.find_frame(hx(JY_ANSWER))
    assert frame is not None
    # a 2004-order answer (90 1F) to a 2018 request (1F 90) is refused by name
    with pytest.raises(cj.Cjt188FrameError, match="CJ/T 188-2018"):
        cj.parse_read_response(0x20, "00000040314132", frame, "901F", 1, "2018")
    with pytest.raises(cj.Cjt188FrameError, match="meter type 0x20, asked 0x10"):
        cj.parse_read_response(0x10, "00000040314132", frame, "901F", 1, "2004")
    with pytest.raises(cj.Cjt188FrameError, match="answer from meter 00000040314132"):
        cj.parse_read_response(0x20, "00000040314133", frame, "901F", 1, "2004")
    with pytest.raises(cj.Cjt188FrameError, match="SER 1, asked 2"):
        cj.parse_read_response(0x20, "00000040314132", frame, "901F", 2, "2004")
    # the wildcard address and type accept any meter (a one-meter bus at commissioning)
    assert cj.parse_read_response(0xAA, cj.WILDCARD, frame, "901F", 1, "2004")
    err = cj.build_frame(0x10, "00000000000001", 0xC1, b"\x05\x04\x00")
    bad, _ = cj.find_frame(err)
    assert bad is not None
    with pytest.raises(cj.Cjt188Error, match="abnormal answer C=0xC1 data=050400"):
        cj.parse_read_response(0x10, "00000000000001", bad)
    with pytest.raises(ValueError, match="14 hex digits"):
        cj.read_request(0x10, "000000000001")


def test_profile_refuses_misfits() -> None:
    base: dict[str, Any] = {"model": "x", "manufacturer": "t", "name": "t", "protocol": "cjt188",
                            "source": "test fixture", "meter_type": "10", "length": 19}
    with pytest.raises(ValueError, match="is in m3; unit kWh is not"):
        cj.Cjt188Profile.model_validate({**base, "quantities": {"water_volume_m3": {
            "offset": 0, "bytes": 4, "decimals": 2, "unit_code": True, "unit": "kWh"}}})
    with pytest.raises(ValueError, match="exceed length 19"):
        cj.Cjt188Profile.model_validate({**base, "quantities": {"water_volume_m3": {
            "offset": 16, "bytes": 4, "unit": "m3"}}})


@pytest.mark.parametrize("name", ["generic-cjt188-water", "generic-cjt188-heat"])
@pytest.mark.parametrize("position", ["after", "before"])
def test_encode_decode_round_trip(name: str, position: str) -> None:
    p = profile(name).model_copy(update={"unit_position": position})
    want = {"water_volume_m3": 98765.43, "heat_energy_gj": 1234.56 * 0.0036,
            "heat_power_kw": 15.25, "water_flow_m3_h": 1.2345, "supply_temp_c": 70.5,
            "return_temp_c": 50.25, "alarm_active": 1}
    want = {q: v for q, v in want.items() if q in p.quantities}
    raw = cj.encode_values(p, want)
    assert {q: cj.item_value(p, q, raw) for q in want} == pytest.approx(want)


def test_config_takes_cjt188_devices_on_a_shared_bus() -> None:
    def cfg(*addresses: str | None) -> GatewayConfig:
        return GatewayConfig.model_validate({
            "site": "s", "gateway": "g", "state_dir": "/tmp/x",
            "devices": [{"name": f"m{i}", "profile": p,
                         **({"address": a} if a is not None else {}),
                         "transport": {"type": "serial", "port": "/dev/ttyUSB0", "baud": 2400,
                                       "parity": "E"}}
                        for i, (a, p) in enumerate(zip(addresses, [
                            "generic-cjt188-water", "generic-cjt188-heat",
                            "chint-dtsu666-dlt645"], strict=False))]})

    ps = check_profiles(cfg("00000000000001", "000000000000AB", "000000000003"), "gw.yaml")
    assert [p.protocol for p in ps] == ["cjt188", "cjt188", "dlt645"]
    with pytest.raises(ConfigError, match="14-digit meter address"):
        check_profiles(cfg(None), "gw.yaml")
    with pytest.raises(ConfigError, match="14-digit meter address"):
        check_profiles(cfg("000000000001"), "gw.yaml")
    with pytest.raises(ConfigError, match="a DL/T 645 address has 12 digits"):
        check_profiles(cfg("00000000000001", "00000000000002", "00000000000003"), "gw.yaml")


# --------------------------------------------------------------------------- end to end

WATER = {"water_volume_m3": 1234.56, "alarm_active": 0}
HEAT = {"heat_energy_gj": 45678.12 * 0.0036, "heat_power_kw": 12.5, "water_flow_m3_h": 0.8765,
        "water_volume_m3": 321.09, "supply_temp_c": 65.5, "return_temp_c": 45.25,
        "alarm_active": 1}
BAUD = 2400  # the usual CJ/T 188 line speed, even parity


async def test_water_and_heat_meters_share_a_2400_baud_bus(servers: list[LineServer]) -> None:
    pw, ph = profile("generic-cjt188-water"), profile("generic-cjt188-heat")
    srv = Cjt188Server({"00000000000001": Meter(pw, WATER), "000000000000AB": Meter(ph, HEAT)},
                       link="pty", baud=BAUD)
    servers.append(srv.start())
    timing = Timing(timeout_s=1.5, retries=1, inter_frame_s=0.016)
    water = BusDevice(Cjt188Driver("water", pw, "00000000000001"), timing)
    heat = BusDevice(Cjt188Driver("heat", ph, "000000000000AB"), timing)
    bus = Bus("cjt", SerialLink(srv.device, baud=BAUD, parity="E"), [water, heat])
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert readings["water"].values == pytest.approx(WATER) and readings["water"].complete
    assert readings["heat"].values == pytest.approx(HEAT) and readings["heat"].complete
    # line timing: the heat read is 20 + 63 bytes (4 FE before each frame) plus 3.5
    # characters of silence, at 11 bits a character (8E1): ≥ 0.38 s at 2400 baud
    assert heat.stats.last_latency_s >= (20 + 63 + 3.5) * 11 / BAUD
    assert water.stats.frame_errors == heat.stats.frame_errors == 0


async def test_read_over_tcp(servers: list[LineServer]) -> None:
    pw = profile("generic-cjt188-water")
    srv = Cjt188Server({"78330011223344": Meter(pw, WATER)}, link="tcp")
    servers.append(srv.start())
    dev = BusDevice(Cjt188Driver("water", pw, "78330011223344"),
                    Timing(timeout_s=1.0, retries=1, inter_frame_s=0.0))
    bus = Bus("cjt-tcp", TcpLink("127.0.0.1", srv.port), [dev])
    first, second = await bus.poll_device(dev), await bus.poll_device(dev)
    await bus.close()
    assert first.values == pytest.approx(WATER) and second.values == pytest.approx(WATER)
    assert srv.requests == 2


@pytest.mark.parametrize(("fault", "reason"), [
    ("garbage", "event=bad_frame"), ("crc", "bad checksum"),
    ("address", "answer from meter 00000000000002, asked 00000000000001"),
    ("timeout", "event=timeout"), ("exception", "abnormal answer C=0xC1")])
async def test_faults_yield_no_value_and_a_reason(
        fault: Fault, reason: str, servers: list[LineServer],
        caplog: pytest.LogCaptureFixture) -> None:
    pw = profile("generic-cjt188-water")
    srv = Cjt188Server({"00000000000001": Meter(pw, WATER, Faults.always(fault))}, link="pty",
                       baud=9600)
    servers.append(srv.start())
    dev = BusDevice(Cjt188Driver("water", pw, "00000000000001"),
                    Timing(timeout_s=0.4, retries=1, inter_frame_s=0.005))
    bus = Bus("cjt", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.WARNING, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == {}  # no value, never 0
    assert any(reason in m for m in caplog.messages), caplog.messages
    if fault == "exception":
        assert dev.stats.exceptions == 1 and dev.stats.online  # alive, refused that read
    elif fault != "timeout":
        assert dev.stats.frame_errors == 2  # the first try and one retry, both refused


async def test_only_the_addressed_meter_answers(servers: list[LineServer]) -> None:
    # a meter at the right address but of another type stays silent: a timeout, not a value
    ph = profile("generic-cjt188-heat")
    srv = Cjt188Server({"00000000000001": Meter(ph, HEAT)}, link="pty")
    servers.append(srv.start())
    pw = profile("generic-cjt188-water")
    dev = BusDevice(Cjt188Driver("water", pw, "00000000000001"),
                    Timing(timeout_s=0.3, retries=1, inter_frame_s=0.005))
    bus = Bus("cjt", SerialLink(srv.device), [dev])
    r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == {} and dev.stats.timeouts == 1 and srv.requests == 0


async def test_the_gateway_polls_a_cjt188_meter_from_its_config(
        servers: list[LineServer], tmp_path: Path) -> None:
    """From the YAML a deployer writes to samples, through the gateway's own wiring."""
    from gateway.agent import Gateway

    pw = profile("generic-cjt188-water")
    srv = Cjt188Server({"00000000000001": Meter(pw, WATER)}, link="pty", baud=BAUD)
    servers.append(srv.start())
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "water", "profile": "generic-cjt188-water",
                     "address": "00000000000001",
                     "transport": {"type": "serial", "port": srv.device, "baud": BAUD,
                                   "parity": "E", "timeout_s": 1.5}}]})
    gw = Gateway(cfg)
    try:
        samples = await gw.poll_once()
    finally:
        for b in gw.buses:
            await b.close()
        gw.queue.close()
    assert [s.device for s in samples] == ["water"]
    assert samples[0].values["water_volume_m3"] == pytest.approx(1234.56)
