"""Modbus beyond holding/input registers: coils and discrete inputs (FC 1/2), string, BCD,
int8 and bit-field types, exact 64-bit counters, and the busy-retry budget (exceptions 5/6).

Frame vectors are the worked examples of the MODBUS Application Protocol Specification
V1.1b3 (§6.1 Read Coils: coils 20..38 answered ``01 03 CD 6B 05``; §6.2 Read Discrete
Inputs: inputs 197..218 answered ``02 03 AC DB 35``), so the bit order cannot be wrong
the same way on the master and the simulator. End to end, the production bus scheduler
reads the RTU simulator over a pty with 9600-baud line timing, and over TCP (MBAP).

The states are quantities of the vocabulary (``breaker_closed``, ``pump_running``,
``alarm_active``: gauges, 0 or 1).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from firmware_sim.faults import Fault, Faults
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import modbus_frames as mf
from gateway.bus import Bus, BusDevice, Timing
from gateway.drivers import ModbusDriver
from gateway.planner import plan, wire_cost
from gateway.profile import Field_, ModbusProfile, decode, encode, from_canonical, to_canonical
from gateway.transport import SerialLink, TcpLink


def plant_profile() -> ModbusProfile:
    """A plant-room controller: states on coils, discrete inputs and a status word, plus
    one quantity of each new register type."""
    data: dict[str, Any] = {
        "model": "test-plant-controller", "manufacturer": "test", "name": "controller",
        "source": "test fixture (not a real device)", "confidence": "I",
        "quantities": {
            "breaker_closed": {"address": 0, "function": "coil"},
            "pump_running": {"address": 9, "function": "discrete"},
            # a status word: bit 2 is the alarm
            "alarm_active": {"address": 10, "type": "u16", "bit": 2, "width": 1},
            # one register, two bytes: temperature (signed, low byte), humidity (high byte)
            "outdoor_temp_c": {"address": 11, "type": "i8"},
            "relative_humidity_pct": {"address": 11, "type": "u8", "bit": 8},
            "water_volume_m3": {"address": 12, "type": "bcd32", "scale": 0.1},
            "gas_volume_m3": {"address": 14, "type": "str", "length": 4},
            "active_energy_import_kwh": {"address": 20, "type": "u64"},
            "heat_energy_gj": {"address": 24, "type": "i64", "scale": 0.01},
        },
    }
    return ModbusProfile.model_validate(data)


def field(**kw: Any) -> Field_:
    base: dict[str, Any] = {"quantity": "q", "address": 0, "function": "holding", "type": "u16",
                            "byte_order": "big", "word_order": "big", "scale": 1.0,
                            "offset": 0.0}
    base.update(kw)
    return Field_(**base)


# --------------------------------------------------------------------------- frames


def test_read_coils_spec_example() -> None:
    req = mf.ReadRequest(1, "coil", 19, 19)  # coils 20..38 (1-based) = addresses 19..37
    assert req.pdu().hex(" ") == "01 00 13 00 13"
    frame = mf.with_crc(bytes.fromhex("01 01 03 CD 6B 05"))
    assert mf.rtu_response_length(frame[:3]) == len(frame)
    bits = mf.parse_rtu_response(req, frame)
    # CD = 1100 1101: coils 27..20, LSB = coil 20; 05 = coils 38..36 (high bits padding)
    assert bits[:8] == [1, 0, 1, 1, 0, 0, 1, 1]
    assert bits[8:16] == [1, 1, 0, 1, 0, 1, 1, 0]
    assert bits[16:] == [1, 0, 1]
    assert mf.bits_response_pdu(1, bits) == bytes.fromhex("01 03 CD 6B 05")


def test_read_discrete_inputs_spec_example() -> None:
    req = mf.ReadRequest(1, "discrete", 196, 22)  # inputs 197..218
    assert req.pdu().hex(" ") == "02 00 c4 00 16"
    bits = mf.parse_rtu_response(req, mf.with_crc(bytes.fromhex("01 02 03 AC DB 35")))
    assert len(bits) == 22
    assert mf.pack_bits(bits) == bytes.fromhex("AC DB 35")
    assert bits[:8] == [0, 0, 1, 1, 0, 1, 0, 1]  # AC, LSB first: inputs 197..204


def test_bit_read_errors() -> None:
    req = mf.ReadRequest(1, "coil", 0, 10)
    with pytest.raises(mf.FrameError, match="bits"):  # 10 bits need 2 bytes, not 1
        mf.parse_rtu_response(req, mf.with_crc(bytes.fromhex("01 01 01 FF")))
    with pytest.raises(mf.ModbusException) as info:
        mf.parse_rtu_response(req, mf.with_crc(bytes.fromhex("01 81 06")))
    assert info.value.code == 6
    with pytest.raises(ValueError, match="2000"):
        mf.ReadRequest(1, "coil", 0, 2001).pdu()
    assert mf.ReadRequest(1, "discrete", 0, 2000).pdu()  # the spec's maximum


def test_planner_counts_bits_and_keeps_spaces_apart() -> None:
    coils = [field(quantity=f"c{a}", address=a, function="coil", type="bool")
             for a in (0, 5, 40, 3000)]
    regs = [field(quantity="r", address=0)]
    reads = plan(coils + regs, gap=2, max_bits=2000)
    # gap 2 registers = 32 bits: 0..5 and 40 merge (hole 34 > 32? no: 6..39 is 34 bits)
    assert [(r.function, r.address, r.count) for r in reads] == [
        ("coil", 0, 6), ("coil", 40, 1), ("coil", 3000, 1), ("holding", 0, 1)]
    assert [(r.address, r.count) for r in plan(coils, gap=3)] == [(0, 41), (3000, 1)]
    # an answer of 41 bits is 6 bytes, not 82
    assert wire_cost(plan(coils[:3], gap=3))[1] == 8 + 5 + 6


# --------------------------------------------------------------------------- types


def test_int8_bitfield_bcd_string_codecs() -> None:
    assert decode([0x12F6], "i8") == -10  # the low byte
    assert to_canonical(field(type="u8", bit=8), [0x37F6]) == 0x37
    status = field(type="u16", bit=2, width=1)
    assert to_canonical(status, [0b0100]) == 1 and to_canonical(status, [0b1011]) == 0
    wide = field(type="u32", bit=4, width=8)
    assert to_canonical(wide, encode(0xAB0, "u32")) == 0xAB
    assert decode([0x1234, 0x5678], "bcd32") == 12345678
    assert decode([0x5678, 0x1234], "bcd32", word_order="little") == 12345678
    with pytest.raises(ValueError, match="BCD"):
        decode([0x12FF], "bcd16")  # a nibble above 9: the meter's "no value"
    text = field(type="str", length=4)
    regs = [0x3132, 0x3334, 0x2E35, 0x0000]  # "1234.5" NUL-padded
    assert to_canonical(text, regs) == 1234.5
    assert from_canonical(text, 1234.5) == regs
    with pytest.raises(ValueError, match="not a number"):
        to_canonical(text, [0x4F46, 0x4600, 0, 0])  # "OFF"


def test_u64_is_exact_above_2_pow_53() -> None:
    v = 2**53 + 1
    regs = encode(v, "u64")
    assert regs == [0x0020, 0x0000, 0x0000, 0x0001]
    got = to_canonical(field(type="u64"), regs)
    assert got == v and isinstance(got, int)  # not 2**53, as a float round trip gives
    # scaled: rounded once from the exact decimal (…409.93 → nearest double …409.94),
    # where the float path rounds twice and lands on …409.92
    scaled = to_canonical(field(type="u64", scale=0.01), regs)
    assert scaled == 90071992547409.94
    assert scaled != float(v) * 0.01
    assert to_canonical(field(type="i64"), encode(-(2**63), "i64")) == -(2**63)
    assert from_canonical(field(type="u64"), v) == regs


def test_profile_refuses_impossible_types() -> None:
    base: dict[str, Any] = {"model": "bad", "manufacturer": "t", "name": "t",
                            "source": "test fixture"}
    for q, why in [({"address": 0, "function": "coil", "type": "u16"}, "bool"),
                   ({"address": 0, "type": "str"}, "length"),
                   ({"address": 0, "type": "f32", "bit": 3}, "unsigned"),
                   ({"address": 0, "type": "u16", "bit": 15, "width": 2}, "exceed")]:
        with pytest.raises(Exception, match=why):
            ModbusProfile.model_validate({**base, "quantities": {"breaker_closed": q}})


# --------------------------------------------------------------------------- end to end


VALUES: dict[str, float] = {
    "breaker_closed": 1, "pump_running": 1, "alarm_active": 1, "outdoor_temp_c": -12,
    "relative_humidity_pct": 87, "water_volume_m3": 123456.7, "gas_volume_m3": 1234.5,
    "active_energy_import_kwh": 2**53 + 1, "heat_energy_gj": -42.42,
}

FAST = Timing(timeout_s=0.5, retries=2, inter_frame_s=0.002)


@pytest.mark.parametrize(("framing", "link"), [("rtu", "pty"), ("tcp", "tcp")])
async def test_every_new_type_over_the_wire(framing: str, link: str,
                                            servers: list[LineServer]) -> None:
    p = plant_profile()
    srv = ModbusSlaveServer({3: Unit(p, VALUES)}, framing=framing, link=link,  # type: ignore[arg-type]
                            baud=9600 if link == "pty" else None)
    servers.append(srv.start())
    drv = ModbusDriver("plc", p, 3, framing=framing, gap=19)  # type: ignore[arg-type]
    # coils, discrete inputs and the holding block: three transactions
    assert sorted(r.function for r in drv.reads) == ["coil", "discrete", "holding"]
    bus = Bus("b", SerialLink(srv.device) if link == "pty" else TcpLink("127.0.0.1", srv.port),
              [BusDevice(drv, FAST)])
    r = await bus.poll_device(bus.devices[0])
    await bus.close()
    assert r.complete
    for q, want in VALUES.items():
        assert r.values[q] == pytest.approx(want, rel=1e-12), q
    assert r.values["active_energy_import_kwh"] == 2**53 + 1  # exact, not approx

    # the states read back as 0 when the plant is off (absent would mean a failed read)
    srv.units[3] = Unit(p, {**VALUES, "breaker_closed": 0, "pump_running": 0,
                            "alarm_active": 0})
    bus = Bus("b", SerialLink(srv.device) if link == "pty" else TcpLink("127.0.0.1", srv.port),
              [BusDevice(drv, FAST)])
    r = await bus.poll_device(bus.devices[0])
    await bus.close()
    assert (r.values["breaker_closed"], r.values["pump_running"], r.values["alarm_active"]) == (
        0, 0, 0)


@pytest.mark.parametrize("fault", ["garbage", "crc", "address", "timeout"])
async def test_bit_read_faults_yield_no_value_and_a_reason(
        fault: Fault, servers: list[LineServer],
        caplog: pytest.LogCaptureFixture) -> None:
    p = plant_profile()
    srv = ModbusSlaveServer({3: Unit(p, VALUES, Faults.always(fault))}, link="pty",
                            baud=9600)
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("plc", p, 3, gap=19), Timing(timeout_s=0.3, retries=1,
                                                              inter_frame_s=0.002))
    bus = Bus("b", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.WARNING, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    await bus.close()
    assert r.values == {}  # never a 0 for a state that was not read
    want = {"garbage": "event=bad_frame", "crc": "CRC error", "address": "answer from unit 4",
            "timeout": "event=timeout"}[fault]
    assert any(want in m for m in caplog.messages), caplog.messages
    if fault == "timeout":
        assert dev.stats.timeouts == 1 and dev.stats.frame_errors == 0
    else:
        assert dev.stats.frame_errors >= 2  # retried, then given up


async def test_busy_meter_is_retried_then_read(servers: list[LineServer],
                                               caplog: pytest.LogCaptureFixture) -> None:
    p = plant_profile()
    srv = ModbusSlaveServer({3: Unit(p, VALUES, Faults(busy_first=2))}, link="pty", baud=9600)
    servers.append(srv.start())
    dev = BusDevice(ModbusDriver("plc", p, 3, gap=19),
                    Timing(timeout_s=0.5, retries=0, inter_frame_s=0.002, busy_retries=3,
                           busy_backoff_s=0.02))
    bus = Bus("b", SerialLink(srv.device), [dev])
    with caplog.at_level(logging.INFO, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    await bus.close()
    assert r.complete and r.values["breaker_closed"] == 1
    assert dev.stats.busy == 2 and dev.stats.frame_errors == 0
    assert sum("event=busy " in m for m in caplog.messages) == 2


async def test_busy_budget_is_bounded(servers: list[LineServer],
                                      caplog: pytest.LogCaptureFixture) -> None:
    p = plant_profile()
    srv = ModbusSlaveServer({3: Unit(p, VALUES, Faults(busy_first=10**6))}, link="pty",
                            baud=9600)
    servers.append(srv.start())
    timing = Timing(timeout_s=0.5, retries=0, inter_frame_s=0.002, busy_retries=2,
                    busy_backoff_s=0.02)
    dev = BusDevice(ModbusDriver("plc", p, 3, gap=19), timing)
    bus = Bus("b", SerialLink(srv.device), [dev])
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="enmon.gateway.bus"):
        r = await bus.poll_device(dev)
    took = time.monotonic() - started
    await bus.close()
    steps = len(dev.driver.steps)
    assert r.values == {} and not r.complete
    assert srv.requests == steps * (1 + timing.busy_retries)  # 3 tries per read, no more
    assert dev.stats.busy == steps * 3
    assert sum("event=busy_gave_up" in m for m in caplog.messages) == steps
    # pauses 20 + 40 ms per read plus the 9600-baud line: well under a second
    assert took < steps * (0.06 + 3 * 0.05) + 0.5
    assert dev.stats.online  # a busy meter answered: it is not offline


async def test_pymodbus_server_agrees_on_bits_and_types() -> None:
    """pymodbus' own Modbus TCP server (firmware_sim.modbus_tcp) serves the same profile;
    our master reads coils, discrete inputs and every new type from it unchanged."""
    from enmon.localrun import free_port
    from firmware_sim.modbus_tcp import ModbusMeterServer

    p = plant_profile()
    port = free_port()
    async with ModbusMeterServer(p, lambda _t: dict(VALUES), port=port, unit_id=3) as srv:
        dev = BusDevice(ModbusDriver("plc", p, 3, framing="tcp", gap=19), FAST)
        bus = Bus("t", TcpLink("127.0.0.1", port), [dev])
        r = await bus.poll_device(dev)
        await bus.close()
    assert r.complete, dev.stats
    for q, want in VALUES.items():
        assert r.values[q] == pytest.approx(want, rel=1e-12), q
    assert r.values["active_energy_import_kwh"] == 2**53 + 1
    served = {q: v for s in srv.served for q, v in s.values.items()}
    assert served["breaker_closed"] == 1 and served["pump_running"] == 1
