"""Coil writes by signed command (FC 5 / FC 15, read back with FC 1), every part real.

The frames are the MODBUS Application Protocol's own examples. A real ``enmon gateway
run`` polls a simulated pump controller on a pty RS-485 bus with 9600-baud line timing
while commands reach it over a real mosquitto: the pump's run coil is switched on (FC 5),
a bank of three valve coils set by a bit mask (FC 15) and a reset coil that takes only
FC 15 pulsed; the simulator holds the new coils and the gateway reads them back. Unsigned,
expired, replayed, not allow-listed, non-writable-coil, out-of-range and wrong-gateway
commands are refused — a result naming who signed it when, a log line, the outcome kept in
commands.db and no coil touched. Over Modbus TCP the same path runs against pymodbus'
server (an independent slave) and our MBAP simulator, which also refuse a coil that is no
output (exception 2) and a malformed FC 5 value (exception 3), as a real device does.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from enmon.config import parse_model
from enmon.localrun import Mosquitto, Part, free_port
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import commands as cmds
from gateway import modbus_frames as mf
from gateway import modbus_writes as mw
from gateway.profile import ModbusProfile
from tests.gateway.test_commands import GW, KEY, SITE, Results
from tests.support import wait_until

PUMP_PROFILE: dict[str, Any] = {
    "model": "lab-pump", "manufacturer": "test", "name": "a pump controller with coils",
    "protocol": "modbus", "energy_type": "heat", "confidence": "I",
    "source": "a test profile: a run coil, three valve coils, a reset coil, a breaker bit",
    "defaults": {"function": "holding", "type": "u16"},
    "quantities": {"supply_temp_c": {"address": 0, "scale": 0.1},
                   "pump_running": {"address": 0, "function": "coil"},
                   "breaker_closed": {"address": 8, "function": "coil"}},
    "writable": {
        "pump_run": {"address": 0, "function": "coil", "description": "run command"},
        "valve_bank": {"address": 4, "function": "coil", "coils": 3},
        "alarm_reset": {"address": 7, "function": "coil", "write_function": 15,
                        "choices": [1]},
        "boost_mode": {"address": 10, "function": "coil"},
    },
}
VALUES = {"supply_temp_c": 45.0, "breaker_closed": 1}


def pump() -> ModbusProfile:
    return parse_model(ModbusProfile, PUMP_PROFILE)


# --------------------------------------------------------------------------- frames, values


def test_coil_frames_are_the_modbus_spec_examples() -> None:
    # MODBUS Application Protocol V1.1b3 §6.5 (coil 173 on) and §6.11 (coils 20..29 set to
    # CD 01); the RTU frames with their CRCs as in the usual worked examples (unit 0x11)
    single = mw.coil_write_pdu(0x00AC, [1])
    assert single.hex() == "0500acff00"
    assert mw.frame("rtu", 0x11, single).hex() == "110500acff004e8b"
    assert mw.expected_response(single) == single  # FC 5 answers with its echo
    several = mw.coil_write_pdu(0x0013, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0])
    assert several.hex() == "0f0013000a02cd01"
    assert mw.frame("rtu", 0x11, several).hex() == "110f0013000a02cd01bf0b"
    assert mw.expected_response(several).hex() == "0f0013000a"
    assert mw.frame("rtu", 0x11, mw.expected_response(several)).hex() == "110f0013000a2699"
    assert mw.parse_coil_write_pdu(several) == (15, 0x13, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0])
    assert mw.parse_coil_write_pdu(mw.coil_write_pdu(5, [0])) == (5, 5, [0])
    assert mw.rtu_request_length(mw.frame("rtu", 0x11, several)) == 11
    assert mw.rtu_request_length(mw.frame("rtu", 0x11, single)) == 8
    with pytest.raises(ValueError, match="neither FF00h nor 0000h"):
        mw.parse_coil_write_pdu(bytes.fromhex("0500ac1234"))
    with pytest.raises(mf.ModbusException):
        mw.check_write_response(0x11, single, 0x11, bytes([0x85, 0x02]))


def test_coil_values_ranges_and_profile_rules() -> None:
    p = pump()
    assert [cmds.coil_bits(p, "pump_run", v) for v in ("on", "1", "off", "0")] == [
        [1], [1], [0], [0]]
    assert cmds.coil_bits(p, "valve_bank", "5") == [1, 0, 1]  # bit 0 = the first coil
    assert p.writable["valve_bank"].coil_function() == 15
    assert p.writable["pump_run"].coil_function() == 5
    assert p.writable["alarm_reset"].coil_function() == 15  # a device that takes FC 15 only
    for target, bad in (("pump_run", "2"), ("pump_run", "0.5"), ("pump_run", "-1"),
                        ("valve_bank", "8"), ("valve_bank", "on"), ("alarm_reset", "0")):
        with pytest.raises(cmds.Refused) as r:
            cmds.coil_bits(p, target, bad)
        assert r.value.reason == "out_of_range", (target, bad)
    for point, why in (({"scale": 10}, "no scale"), ({"write_function": 6}, "takes 5 or 15"),
                       ({"coils": 3, "write_function": 5}, "writes one coil"),
                       ({"type": "u16"}, "a coil is a bit"), ({"max": 2}, "0..1")):
        bad = json.loads(json.dumps(PUMP_PROFILE))
        bad["writable"]["pump_run"].update(point)
        with pytest.raises(Exception, match=why):
            parse_model(ModbusProfile, bad)
    bad = json.loads(json.dumps(PUMP_PROFILE))
    bad["writable"]["setpoint"] = {"address": 3}  # a register needs the manual's range
    with pytest.raises(Exception, match="needs min and max"):
        parse_model(ModbusProfile, bad)
    bad["writable"]["setpoint"] = {"address": 3, "min": 0, "max": 9, "write_function": 5}
    with pytest.raises(Exception, match="writes coils"):
        parse_model(ModbusProfile, bad)
    # a time sync is no Modbus command, and new_command fills its fixed fields
    ts = cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="m1",
                          action="time_sync")
    assert (ts["target"], ts["value"]) == ("time_sync", "now")
    with pytest.raises(ValueError, match="needs a target"):
        cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="m1")


# --------------------------------------------------------------------------- end to end


def _config(tmp_path: Path, mq: Mosquitto, port: str, key_file: Path) -> Path:
    prof = tmp_path / "lab-pump.yaml"
    prof.write_text(yaml.safe_dump(PUMP_PROFILE, allow_unicode=True))
    serial = {"type": "serial", "port": port, "baud": 9600, "timeout_s": 0.5}
    cfg = {
        "site": SITE, "gateway": GW, "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": mq.host, "port": mq.port, "end_to_end": False, "reconnect_max_s": 2},
        "poll": {"interval_s": 0.2, "health_interval_s": 60},
        "commands": {"enabled": True, "keys": [{"id": "ops-1", "file": str(key_file)}]},
        "devices": [{"name": "pump", "profile": str(prof), "unit_id": 3, "transport": serial,
                     "writable": ["pump_run", "valve_bank", "alarm_reset"]}],
    }
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


@pytest.mark.slow
def test_coil_writes_round_trip_over_a_pty_and_every_refusal_is_recorded(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    unit = Unit(pump(), VALUES, settings={"valve_bank": 0})
    sim = ModbusSlaveServer({3: unit}, baud=9600).start()
    key_file = tmp_path / "cmd.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    gw = Part(name="gw", args=["gateway", "run", "-c", str(_config(tmp_path, mosquitto,
                                                                   sim.device, key_file))],
              workdir=tmp_path)
    results = Results(mosquitto)

    def signed(**kw: Any) -> dict[str, Any]:
        args: dict[str, Any] = dict(key_id="ops-1", site=SITE, gateway=GW, device="pump",
                                    target="pump_run", value="on")
        args.update(kw)
        return cmds.new_command(args.pop("secret", KEY), **args)

    try:
        gw.start()
        wait_until(lambda: results.births == 1, 15, "gateway online")
        wait_until(lambda: "event=batch_queued" in gw.log_tail(10**6), 15, "polling")

        # 1. FC 5: the run coil on, read back with FC 1; the result says who signed when
        run = signed()
        results.send(run)
        r = results.wait(run["id"], "the pump switched on")
        assert (r["status"], r["action"], r["readback"], r["coils"]) == ("ok", "write", 1, [1])
        assert (r["issued_at"], r["key_id"]) == (run["issued_at"], "ops-1")
        assert unit.coils[0] == 1 and unit.coil_writes == 1
        # 2. FC 15: three valve coils from a mask; 3. FC 15 for one coil (the reset)
        valves = signed(target="valve_bank", value="6")
        results.send(valves)
        r = results.wait(valves["id"], "the valves set")
        assert (r["status"], r["readback"], r["coils"]) == ("ok", 6, [0, 1, 1])
        assert [unit.coils[a] for a in (4, 5, 6)] == [0, 1, 1]
        reset = signed(target="alarm_reset", value="1")
        results.send(reset)
        assert results.wait(reset["id"], "the reset pulsed")["status"] == "ok"
        assert unit.coils[7] == 1 and unit.coil_writes == 3

        # 4. every refusal: a result with its reason, a log line, no coil written
        snapshot = (dict(unit.coils), unit.coil_writes, unit.writes)
        unsigned = signed(value="off")
        unsigned["signature"] = ""
        cases = {
            "unsigned": unsigned,
            "expired": signed(value="off", now=time.time() - 3600, ttl_s=60),
            "not_allowed": signed(target="boost_mode"),  # writable, not in the allow-list
            "not_writable": signed(target="breaker_closed"),  # a coil read, never written
            "out_of_range": signed(value="2"),
            "wrong_gateway": signed(value="off", gateway="gw-02"),
        }
        for reason, cmd in cases.items():
            results.send(cmd)
            r = results.wait(cmd["id"], f"refusal {reason}")
            assert (r["status"], r["reason"]) == ("refused", reason), r
            assert (r["issued_at"], r["key_id"]) == (cmd["issued_at"], "ops-1"), r
            assert f"event=command_refused id={cmd['id']} reason={reason}" in gw.log_tail(10**6)
        off = signed(value="off")
        results.send(off)
        assert results.wait(off["id"], "switched off")["readback"] == 0
        results.send(run)  # the first command again: a replay, refused though signed
        r = results.wait(run["id"], "the replay refused", after=r["ts"] + 1)
        assert (r["status"], r["reason"]) == ("refused", "replayed")
        assert unit.coils[0] == 0  # still off: the replay did not switch the pump on
        assert (unit.coil_writes, unit.writes) == (snapshot[1] + 1, snapshot[2])
        log = gw.log_tail(10**6)
        assert "event=bad_frame" not in log and "event=timeout" not in log
        assert gw.stop() == 0
    finally:
        gw.kill()
        results.close()
        sim.stop()
    store = cmds.NonceStore(tmp_path / "state" / "commands.db", max_entries=10)
    kept = store.outcomes()
    store.close()
    assert [(o["status"], o["reason"]) for o in kept].count(("ok", "")) == 4
    assert {o["reason"] for o in kept if o["status"] == "refused"} == {*cases, "replayed"}
    assert [o["seq"] for o in kept] == list(range(1, len(kept) + 1))  # numbered, in order
    assert all(o["key_id"] == "ops-1" and o["issued_at"] for o in kept)


# --------------------------------------------------------------------------- Modbus TCP


@pytest.mark.parametrize("server", ["pymodbus", "firmware_sim"])
async def test_coil_writes_over_modbus_tcp_and_the_devices_refusals(server: str) -> None:
    """FC 5 and FC 15 over MBAP, read back with FC 1, against pymodbus' server and ours; a
    profile that (wrongly) declares the breaker's status bit writable is refused by the
    device with exception 2 and reported as failed, not ok."""
    from firmware_sim.modbus_tcp import ModbusMeterServer
    from gateway.bus import Bus, BusDevice, Timing
    from gateway.drivers import ModbusDriver
    from gateway.transport import TcpLink

    p = pump()
    port = free_port()
    if server == "pymodbus":
        ours = None
        theirs: ModbusMeterServer | None = ModbusMeterServer(
            p, lambda _t: dict(VALUES), port=port, settings={"valve_bank": 1})
        await theirs.start()
    else:
        theirs = None
        ours = ModbusSlaveServer({1: Unit(p, VALUES, settings={"valve_bank": 1})},
                                 framing="tcp", link="tcp").start()
        port = ours.port
    link = TcpLink("127.0.0.1", port)
    bus = Bus("tcp", link, [])
    t = cmds.Target(bus, "pump", p, 1, "tcp", Timing(timeout_s=1), frozenset())
    try:
        assert await cmds.execute_coils(t, "pump_run", [1]) == ([1], 1)
        assert await cmds.execute_coils(t, "valve_bank", [0, 1, 1]) == ([0, 1, 1], 6)
        assert await cmds.execute_coils(t, "alarm_reset", [1]) == ([1], 1)
        assert await cmds.execute_coils(t, "pump_run", [0]) == ([0], 0)
        # a poll beside it reads the written coil and the live breaker bit
        reading = await bus.poll_device(BusDevice(ModbusDriver(
            "pump", p, 1, framing="tcp", quantities=["pump_running", "breaker_closed"])))
        assert reading.values == {"pump_running": 0, "breaker_closed": 1}
        point = p.writable["pump_run"].model_copy(update={"address": 8})
        wrong = p.model_copy(update={"writable": {"breaker": point}})
        t_wrong = cmds.Target(bus, "pump", wrong, 1, "tcp", Timing(timeout_s=1), frozenset())
        with pytest.raises(cmds.Refused) as r:
            await cmds.execute_coils(t_wrong, "breaker", [0])
        assert r.value.reason == "device_exception" and "exception 2" in r.value.detail
        if ours is not None:  # FF00h/0000h only (pymodbus takes any non-zero as on)
            raw = mw.frame("tcp", 1, bytes.fromhex("0500001234"), 77)
            answer = await link.transact(raw, mf.tcp_frame_length, 1.0)
            assert answer[7:].hex() == "8503"
    finally:
        await bus.close()
        if theirs is not None:
            await theirs.stop()
        if ours is not None:
            ours.stop()
