"""DL/T 645-1997 beside 2007: codec checked against frames published by others, then read
end to end over a pty at 2400 baud with line timing, a 1997 and a 2007 meter sharing the bus,
and with faults (garbage, wrong checksum, wrong address, timeout) yielding no value and a
logged reason.

Public frames (copied byte for byte; sources also named in
``gateway/profiles/generic-dlt645-1997.yaml``):

* kaledl.com/down/1493168.html — 1997 read of 9010 from meter 138000130754:
  ``68 54 07 13 00 80 13 68 01 02 43 C3 DA 16`` →
  ``68 54 07 13 00 80 13 68 81 06 43 C3 34 33 33 33 2B 16`` (0.01 kWh); and a request to
  meter 000003430163: ``68 63 01 43 03 00 00 68 01 02 43 C3 83 16``.
* Heyuan Intelligence ASDU-LS manual (manualshive.com), "1997 DL/645 Protocol
  Configuration": B611 from meter 000000000003: ``68 03 00 00 00 00 00 68 01 02 44 E9 03 16``
  → ``68 03 00 00 00 00 00 68 81 04 44 E9 33 34 EC 16`` (100 V).
* a public "DLT645-2007报文解析" log: 2007 read of 00010000 from meter 000000000161:
  ``FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16`` →
  ``68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16`` (0.26 kWh), and of
  02010100: ``… 68 91 06 33 34 34 35 34 43 10 16`` (100.1 V).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.faults import Fault, Faults
from firmware_sim.rtu import LineServer
from gateway import dlt645 as d
from gateway import library
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import Dlt645Driver
from gateway.transport import SerialLink, TcpLink


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


def profile(name: str) -> d.Dlt645Profile:
    p = library.load(name)
    assert isinstance(p, d.Dlt645Profile)
    return p


# --------------------------------------------------------------------------- public frames


def test_1997_energy_read_matches_published_frames() -> None:
    req = d.read_request("138000130754", "9010", "1997", preamble=False)
    assert req == hx("68 54 07 13 00 80 13 68 01 02 43 C3 DA 16")
    assert d.read_request("000003430163", "9010", "1997", preamble=False) == hx(
        "68 63 01 43 03 00 00 68 01 02 43 C3 83 16")
    answer = hx("68 54 07 13 00 80 13 68 81 06 43 C3 34 33 33 33 2B 16")
    frame, used = d.find_frame(answer)
    assert frame is not None and used == len(answer)
    assert (frame.address, frame.control) == ("138000130754", d.C_READ_OK_1997)
    raw = d.parse_read_response("138000130754", "9010", frame, "1997")
    item = profile("generic-dlt645-1997").quantities["active_energy_import_kwh"]
    assert d.item_value(item, raw) == 0.01


def test_1997_voltage_read_matches_published_frames() -> None:
    assert d.read_request("000000000003", "B611", "1997", preamble=False) == hx(
        "68 03 00 00 00 00 00 68 01 02 44 E9 03 16")
    frame, _ = d.find_frame(hx("68 03 00 00 00 00 00 68 81 04 44 E9 33 34 EC 16"))
    assert frame is not None
    raw = d.parse_read_response("000000000003", "B611", frame, "1997")
    assert d.item_value(profile("generic-dlt645-1997").quantities["voltage_l1_v"], raw) == 100


def test_2007_reads_match_published_frames() -> None:
    assert d.read_request("000000000161", "00010000") == hx(
        "FE FE FE FE 68 61 01 00 00 00 00 68 11 04 33 33 34 33 14 16")
    p = profile("chint-dtsu666-dlt645")
    energy, _ = d.find_frame(hx("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"))
    volts, _ = d.find_frame(hx("68 61 01 00 00 00 00 68 91 06 33 34 34 35 34 43 10 16"))
    assert energy is not None and volts is not None
    raw = d.parse_read_response("000000000161", "00010000", energy)
    assert d.item_value(p.quantities["active_energy_import_kwh"], raw) == 0.26
    raw = d.parse_read_response("000000000161", "02010100", volts)
    assert d.item_value(p.quantities["voltage_l1_v"], raw) == pytest.approx(100.1)


def test_editions_do_not_mix() -> None:
    # a 2007 answer to a 1997 request, and the other way round, is refused by name
    frame, _ = d.find_frame(hx("68 61 01 00 00 00 00 68 91 08 33 33 34 33 59 33 33 33 8A 16"))
    assert frame is not None
    with pytest.raises(d.Dlt645FrameError, match="want 0x81"):
        d.parse_read_response("000000000161", "9010", frame, "1997")
    old, _ = d.find_frame(hx("68 54 07 13 00 80 13 68 81 06 43 C3 34 33 33 33 2B 16"))
    assert old is not None
    with pytest.raises(d.Dlt645FrameError, match="want 0x91"):
        d.parse_read_response("138000130754", "00010000", old)
    with pytest.raises(ValueError, match="1997"):
        d.read_request("000000000001", "00010000", "1997")
    data: dict[str, Any] = {"model": "x", "manufacturer": "t", "name": "t", "protocol": "dlt645",
                            "source": "test fixture", "version": "1997",
                            "quantities": {"voltage_l1_v": {"di": "02010100", "bytes": 2,
                                                            "decimals": 1}}}
    with pytest.raises(ValueError, match="DL/T 645-1997 identifiers have 4"):
        d.Dlt645Profile.model_validate(data)


def test_1997_abnormal_answer() -> None:
    err = d.build_frame("000000000003", d.C_READ_ERR_1997, b"\x02", preamble=False)
    frame, _ = d.find_frame(err)
    assert frame is not None
    with pytest.raises(d.Dlt645Error, match="wrong data identifier"):
        d.parse_read_response("000000000003", "B611", frame, "1997")


# --------------------------------------------------------------------------- end to end

OLD = {"active_energy_import_kwh": 98765.43, "voltage_l1_v": 231, "current_l1_a": 12.34,
       "active_power_kw": 8.5432}
NEW = {"active_energy_import_kwh": 1234.56, "voltage_l1_v": 230.1, "active_power_kw": -0.5}
BAUD = 2400  # the usual DL/T 645 line speed


async def test_1997_and_2007_meters_share_a_2400_baud_bus(servers: list[LineServer]) -> None:
    p97, p07 = profile("generic-dlt645-1997"), profile("chint-dtsu666-dlt645")
    srv = Dlt645Server({"000000000097": Meter(p97, OLD), "000000002007": Meter(p07, NEW)},
                       link="pty", baud=BAUD)
    servers.append(srv.start())
    timing = Timing(timeout_s=1.0, retries=1, inter_frame_s=0.015)
    old = BusDevice(Dlt645Driver("old", p97, "000000000097", quantities=list(OLD)), timing)
    new = BusDevice(Dlt645Driver("new", p07, "000000002007", quantities=list(NEW)), timing)
    bus = Bus("dlt", SerialLink(srv.device, baud=BAUD, parity="E"), [old, new])
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert readings["old"].values == pytest.approx(OLD) and readings["old"].complete
    assert readings["new"].values == pytest.approx(NEW) and readings["new"].complete
    # line timing: a 1997 read of 9010 is 14 + 18 bytes plus 3.5 characters of silence at
    # 11 bits a character: ≥ 0.16 s per transaction at 2400 baud
    per_read = old.stats.last_latency_s / len(OLD)
    assert per_read >= (14 + 18 + 3.5) * 11 / BAUD
    assert old.stats.frame_errors == new.stats.frame_errors == 0


async def test_1997_and_2007_meters_read_over_tcp(servers: list[LineServer]) -> None:
    # an RS-485 serial server in transparent mode: the same frames over TCP
    p97, p07 = profile("generic-dlt645-1997"), profile("chint-dtsu666-dlt645")
    srv = Dlt645Server({"000000000097": Meter(p97, OLD), "000000002007": Meter(p07, NEW)},
                       link="tcp")
    servers.append(srv.start())
    timing = Timing(timeout_s=1.0, retries=1, inter_frame_s=0.0)
    old = BusDevice(Dlt645Driver("old", p97, "000000000097", quantities=list(OLD)), timing)
    new = BusDevice(Dlt645Driver("new", p07, "000000002007", quantities=list(NEW)), timing)
    bus = Bus("dlt-tcp", TcpLink("127.0.0.1", srv.port), [old, new])
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    assert readings["old"].values == pytest.approx(OLD) and readings["old"].complete
    assert readings["new"].values == pytest.approx(NEW) and readings["new"].complete
    assert old.stats.frame_errors == new.stats.frame_errors == 0


@pytest.mark.parametrize(("fault", "reason"), [
    ("garbage", "event=bad_frame"), ("crc", "bad checksum"),
    ("address", "answer from meter 000000000098, asked 000000000097"),
    ("timeout", "event=timeout")])
async def test_1997_faults_yield_no_value_and_a_reason(
        fault: Fault, reason: str, servers: list[LineServer],
        caplog: pytest.LogCaptureFixture) -> None:
    p97 = profile("generic-dlt645-1997")
    srv = Dlt645Server({"000000000097": Meter(p97, OLD, Faults.always(fault))}, link="pty",
                       baud=9600)
    servers.append(srv.start())
    dev = BusDevice(Dlt645Driver("old", p97, "000000000097", quantities=["voltage_l1_v"]),
                    Timing(timeout_s=0.4, retries=1, inter_frame_s=0.005))
    bus = Bus("dlt", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.WARNING, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == {}  # no value, never 0
    assert any(reason in m for m in caplog.messages), caplog.messages
    if fault != "timeout":
        assert dev.stats.frame_errors == 2  # the first try and one retry, both refused
