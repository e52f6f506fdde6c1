"""M-Bus (EN 13757-2/-3) codec: published frames decode to their documented values, and
anything malformed is refused with a reason instead of being read as a value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firmware_sim.faults import Fault, Faults
from firmware_sim.mbus_meter import MbusServer, Meter
from firmware_sim.rtu import LineServer
from gateway import library
from gateway import mbus as m
from gateway.bus import Bus, BusDevice, Timing
from gateway.config import GatewayConfig
from gateway.drivers import MbusDriver
from gateway.transport import SerialLink, TcpLink

# "The M-Bus: A Documentation" (m-bus.com, rev 4.8), ch. 6.5 example RSP_UD, variable data
# structure: ID 12345678, manufacturer 4024h (PAD), version 1, medium 07h water, access 55h.
DOC_RSP_UD = bytes.fromhex(
    "681F1F68080272785634122440010755000000"
    "0313153100"      # volume 12.565 m3 (24-bit integer, VIF 13h = 1e-3 m3)
    "DA023B1301"      # max. volume flow 0.113 m3/h, 4-digit BCD, storage 5
    "8B60043718021816"  # energy 218.37 kWh, 6-digit BCD, tariff 2, subunit 1
)


# libmbus (github.com/rscada/libmbus) test/test-frames/landis+gyr_ultraheat_t230.hex, a
# real Landis+Gyr ULTRAHEAT T230 answer; expected values from its landis+gyr_ultraheat_t230.norm.xml
T230 = bytes.fromhex(
    "68E2E268080072050266 66A73207040110000009740409700 80C06000000000C14000000000B2D000000"
    "0B3B0000000B5A9501000B5E9701000B620200F00C78050266668910710 73C226937000 00C2269370000"
    "0C26000000008C901006000000009B102D0000009B103B0000009B105A0703009B105E07050094 10AD6F"
    "0000000094 10BB6F0000000094 10DA6F32147A1894 10DE6F2B0B69184C06000000004C14000000007C"
    "22693400004C2600000000CC901006000000 00DB102D000000DB103B000000DB105A070300DB105E0705"
    "00848F0F6D0000E1F1046D040C8D110F09070066017D16".replace(" ", ""))


def test_landis_gyr_t230_frame_decodes_as_libmbus_does() -> None:
    r = m.parse_response(m.decode_frame(T230))
    assert (r.secondary.ident, r.manufacturer, r.secondary.version) == ("66660205", "LUG", 7)
    assert (r.medium, r.access, r.status) == ("heat (outlet)", 1, 0x10)
    by = {(x.description, x.storage, x.tariff, x.function): x for x in r.records if not x.vifes}
    assert by[("flow temperature", 0, 0, "instantaneous")].value == pytest.approx(19.5)
    assert by[("return temperature", 0, 0, "instantaneous")].value == pytest.approx(19.7)
    assert by[("temperature difference", 0, 0, "instantaneous")].value == pytest.approx(-0.2)
    assert by[("fabrication number", 0, 0, "instantaneous")].value == 66660205
    assert by[("energy", 0, 0, "instantaneous")].value == 0
    assert by[("on time", 0, 0, "instantaneous")].value == 3769  # h (libmbus: 13568400 s)
    assert by[("on time", 1, 0, "error")].value == 3469
    assert by[("flow temperature", 0, 1, "maximum")].value == pytest.approx(30.7)
    assert str(by[("date and time", 510, 0, "instantaneous")].value).startswith("2027-01")
    assert by[("date and time", 0, 0, "instantaneous")].value == "2012-01-13T12:04"
    assert len(r.records) == 34  # libmbus lists 35: the last is manufacturer data
    # read as the gateway does, through the profile (the max-value records carry VIFEs)
    values = {q: m.item_value(t550(), q, r.records) for q in t550().quantities}
    assert values["supply_temp_c"] == pytest.approx(19.5)
    assert values["heat_energy_gj"] == 0 and values["water_volume_m3"] == 0


def test_documented_rsp_ud_decodes() -> None:
    f = m.decode_frame(DOC_RSP_UD)
    assert (f.kind, f.c, f.a, f.ci) == ("long", 0x08, 0x02, 0x72)
    r = m.parse_response(f)
    assert r.secondary.ident == "12345678"
    assert r.manufacturer == "PAD" and r.secondary.manufacturer == 0x4024
    assert r.medium == "water" and r.access == 0x55 and r.status == 0
    vol, flow, energy = r.records
    assert (vol.description, vol.unit, vol.value) == ("volume", "m3", pytest.approx(12.565))
    assert (flow.description, flow.function, flow.storage) == ("volume flow", "maximum", 5)
    assert flow.value == pytest.approx(0.113)
    assert (energy.description, energy.unit, energy.tariff, energy.subunit) == (
        "energy", "Wh", 2, 1)
    assert energy.value == pytest.approx(218370)
    assert m.canonical(energy) == ("GJ", pytest.approx(218.37 * 0.0036))


def test_short_frames_and_checksums() -> None:
    assert m.req_ud2(1) == bytes.fromhex("105B015C16")
    assert m.snd_nke(0xFD) == bytes.fromhex("1040FD3D16")
    assert m.decode_frame(bytes.fromhex("107B017C16")).c == 0x7B
    assert m.decode_frame(b"\xe5").kind == "ack"


@pytest.mark.parametrize("raw,reason", [
    (DOC_RSP_UD[:-2] + b"\x19\x16", "checksum"),
    (DOC_RSP_UD[:-1] + b"\x17", "stop byte"),
    (bytes.fromhex("105B015D16"), "checksum"),
    (b"\x68\x1f\x1e\x68" + DOC_RSP_UD[4:], "68 L L 68"),
    (b"\x00\x01garbage", "not an M-Bus frame"),
    (DOC_RSP_UD[:20], "needs"),
])
def test_malformed_frames_refused_with_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(m.MbusFrameError, match=reason):
        m.decode_frame(raw)


def test_cut_record_refused() -> None:
    data = DOC_RSP_UD[7:-2][:-2]  # body after C A CI, last record cut
    f = m.Frame("long", 0x08, 2, 0x72, data)
    with pytest.raises(m.MbusFrameError, match="needs 3 bytes"):
        m.parse_response(f)


def test_secondary_address_roundtrip_and_wildcards() -> None:
    a = m.SecondaryAddress.parse("12345678.PAD.01.07")
    assert a.to_bytes() == bytes.fromhex("7856341224400107")
    assert m.SecondaryAddress.from_bytes(a.to_bytes()) == a
    sel = m.decode_frame(m.select_request(m.SecondaryAddress("1234FFFF")))
    pattern = m.parse_select_request(sel)
    assert pattern is not None and pattern.matches(a)
    assert not m.SecondaryAddress("1235FFFF").matches(a)
    assert not m.SecondaryAddress("12345678", manufacturer=m.manufacturer_code("LUG")).matches(a)


def test_wildcard_search_finds_every_meter() -> None:
    meters = [m.SecondaryAddress(x) for x in ("12345678", "12345699", "70000001")]

    def probe(pattern: str) -> m.Probe:
        n = sum(m.SecondaryAddress(pattern).matches(x) for x in meters)
        return "none" if n == 0 else "one" if n == 1 else "collision"

    assert sorted(m.wildcard_search(probe)) == ["12345678", "12345699", "70000001"]


def test_heat_meter_vifs_and_types() -> None:
    recs = (
        b"\x04\x06" + (123456).to_bytes(4, "little")    # energy, 32-bit int, kWh
        + b"\x0c\xfb\x08" + m.encode_bcd(1234, 4)        # energy 0.1 GJ (FBh 08h), 8-digit BCD
        + b"\x0a\x5a" + m.encode_bcd(705, 2)             # flow temperature 70.5 °C
        + b"\x0a\x5e" + m.encode_bcd(502, 2)             # return temperature 50.2 °C
        + b"\x02\x61" + (2030).to_bytes(2, "little")     # temperature difference 20.30 K
        + b"\x04\x2b" + (15000).to_bytes(4, "little")    # power 15000 W
        + b"\x04\x3b" + (1234).to_bytes(4, "little")     # flow 1.234 m3/h
        + b"\x04\x22" + (8760).to_bytes(4, "little")     # on time 8760 h
        + b"\x0c\x78" + m.encode_bcd(87654321, 4)        # fabrication number
        + b"\x44\x06" + (100000).to_bytes(4, "little")   # energy, storage 1 (due date)
        + b"\x02\x5a" + (-55).to_bytes(2, "little", signed=True)  # -5.5 °C signed int
    )
    sec = m.SecondaryAddress("87654321", m.manufacturer_code("LUG"), 0x07, 0x04)
    r = m.parse_response(m.decode_frame(m.response_frame(1, sec, 3, 0, recs)))
    got = [(x.description, x.value, x.storage) for x in r.records]
    assert got == [
        ("energy", pytest.approx(123456000.0), 0), ("energy", pytest.approx(123.4), 0),
        ("flow temperature", pytest.approx(70.5), 0),
        ("return temperature", pytest.approx(50.2), 0),
        ("temperature difference", pytest.approx(20.30), 0),
        ("power", pytest.approx(15000.0), 0), ("volume flow", pytest.approx(1.234), 0),
        ("on time", 8760, 0), ("fabrication number", 87654321, 0),
        ("energy", pytest.approx(100000000.0), 1), ("flow temperature", pytest.approx(-5.5), 0),
    ]
    assert m.canonical(r.records[0]) == ("GJ", pytest.approx(444.4416))
    assert m.canonical(r.records[5]) == ("kW", pytest.approx(15.0))
    assert r.manufacturer == "LUG"


# --------------------------------------------------------------------------- end to end
# (real serial path: the gateway's SerialLink on a pty, the simulator on the other end)



HEAT = {"heat_energy_gj": 1234567 * 0.0036, "water_volume_m3": 87654.32, "heat_power_kw": 152.0,
        "water_flow_m3_h": 0.654, "supply_temp_c": 70.5, "return_temp_c": 50.2}
HEAT2 = {**HEAT, "heat_energy_gj": 42 * 0.0036, "supply_temp_c": 60.0}
BAUD = 2400  # the usual M-Bus speed, 8E1


def t550() -> m.MbusProfile:
    p = library.load("landis-gyr-t550-mbus")
    assert isinstance(p, m.MbusProfile)
    return p


def lug(ident: str) -> m.SecondaryAddress:
    return m.SecondaryAddress(ident, m.manufacturer_code("LUG"), 0x07, 0x04)


async def test_primary_read_over_the_serial_path(servers: list[LineServer]) -> None:
    srv = MbusServer([Meter(lug("71234567"), HEAT, primary=5)], link="pty", baud=BAUD)
    servers.append(srv.start())
    dev = BusDevice(MbusDriver("heat", t550(), 5), Timing(timeout_s=1.5, retries=1,
                                                         inter_frame_s=0.02))
    bus = Bus("mbus", SerialLink(srv.device, baud=BAUD, parity="E"), [dev])
    r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == pytest.approx(HEAT) and r.complete
    # line timing: REQ_UD2 (5) + 3.5 characters + RSP_UD (6 + 3 + 12 + 32) at 11 bits (8E1)
    assert dev.stats.last_latency_s >= (5 + 3.5 + 53) * 11 / BAUD
    assert dev.stats.frame_errors == 0


async def test_primary_read_over_tcp(servers: list[LineServer]) -> None:
    # an M-Bus level converter behind a serial server (transparent TCP): the same frames
    srv = MbusServer([Meter(lug("71234567"), HEAT, primary=5)], link="tcp")
    servers.append(srv.start())
    dev = BusDevice(MbusDriver("heat", t550(), 5), Timing(timeout_s=1.0, retries=1,
                                                         inter_frame_s=0.0))
    bus = Bus("mbus-tcp", TcpLink("127.0.0.1", srv.port), [dev])
    first, second = await bus.poll_device(dev), await bus.poll_device(dev)
    await bus.close()
    assert first.values == pytest.approx(HEAT) and first.complete
    assert second.values == pytest.approx(HEAT) and dev.stats.frame_errors == 0


async def test_secondary_selection_with_two_meters_on_one_bus(
        servers: list[LineServer]) -> None:
    # both at primary address 0 (unconfigured): only secondary addressing tells them apart
    srv = MbusServer([Meter(lug("71234567"), HEAT), Meter(lug("71234568"), HEAT2)],
                     link="pty", baud=9600)
    servers.append(srv.start())
    timing = Timing(timeout_s=1.0, retries=1, inter_frame_s=0.01)
    a = BusDevice(MbusDriver("a", t550(), 0, "71234567"), timing)
    b = BusDevice(MbusDriver("b", t550(), 0, "71234568"), timing)
    # a primary read of address 0 gets both meters' answers at once: refused, no value
    both = BusDevice(MbusDriver("both", t550(), 0), Timing(timeout_s=0.3, retries=0,
                                                          inter_frame_s=0.01))
    bus = Bus("mbus", SerialLink(srv.device, baud=9600, parity="E"), [a, b, both])
    readings = {r.device: r for r in await bus.poll_cycle(0)}
    await bus.close()
    collided = readings["both"]
    assert readings["a"].values == pytest.approx(HEAT)
    assert readings["b"].values == pytest.approx(HEAT2)
    assert collided.values == {} and both.stats.frame_errors >= 1


async def test_wildcard_search_over_the_line(servers: list[LineServer]) -> None:
    import os
    import select
    import termios
    import time
    import tty

    srv = MbusServer([Meter(lug("71234567"), HEAT), Meter(lug("71234568"), HEAT2),
                      Meter(lug("10000000"), HEAT)], link="pty")
    servers.append(srv.start())
    fd = os.open(srv.device, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)

    def probe(pattern: str) -> m.Probe:
        os.write(fd, m.select_request(m.SecondaryAddress(pattern)))
        # no answer: a quiet 60 ms (the simulator answers at once); an answer: read to its end
        got, deadline = b"", time.monotonic() + 0.06
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.01)
            if r:
                got += os.read(fd, 64)
                deadline = time.monotonic() + 0.02
        return "none" if not got else "one" if got == b"\xe5" else "collision"

    try:
        assert m.wildcard_search(probe) == ["10000000", "71234567", "71234568"]
    finally:
        os.close(fd)


@pytest.mark.parametrize(("fault", "reason"), [
    ("garbage", "event=bad_frame"), ("crc", "checksum"),
    ("address", "answer from meter 71234568, not 71234567"), ("timeout", "event=timeout")])
async def test_faults_yield_no_value_and_a_reason(
        fault: Fault, reason: str, servers: list[LineServer],
        caplog: pytest.LogCaptureFixture) -> None:
    srv = MbusServer([Meter(lug("71234567"), HEAT, faults=Faults.always(fault))], link="pty",
                     baud=9600)
    servers.append(srv.start())
    dev = BusDevice(MbusDriver("heat", t550(), 0, "71234567"),
                    Timing(timeout_s=0.4, retries=1, inter_frame_s=0.005))
    bus = Bus("mbus", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.WARNING, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
        again = await bus.poll_device(dev)  # the gateway keeps polling, never crashes
    await bus.close()
    assert r.values == {} and again.values == {}  # no value, never 0
    assert any(reason in msg for msg in caplog.messages), caplog.messages


async def test_the_gateway_polls_an_mbus_meter_from_its_config(
        servers: list[LineServer], tmp_path: Path) -> None:
    from gateway.agent import Gateway

    srv = MbusServer([Meter(lug("71234567"), HEAT)], link="pty", baud=BAUD)
    servers.append(srv.start())
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "heat", "profile": "landis-gyr-t550-mbus", "address": "71234567",
                     "transport": {"type": "serial", "port": srv.device, "baud": BAUD,
                                   "parity": "E", "timeout_s": 1.5}}]})
    gw = Gateway(cfg)
    try:
        samples = await gw.poll_once()
    finally:
        for b in gw.buses:
            await b.close()
        gw.queue.close()
    assert [s.device for s in samples] == ["heat"]
    assert samples[0].values["heat_energy_gj"] == pytest.approx(HEAT["heat_energy_gj"])
