"""DL/T 645 broadcast time sync: the codec against published frames, the simulated meters
setting their clocks from it, and the gateway sending it on schedule (off by default)
over a pty with 2400-baud line timing while it keeps polling."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from enmon.config import parse_model
from enmon.localrun import Mosquitto
from firmware_sim.dlt645_meter import Dlt645Server, Meter
from gateway import dlt645 as d
from gateway import library
from gateway.agent import Gateway, time_sync_allowed
from gateway.config import GatewayConfig
from tests.support import wait_until

# published broadcast time-sync frames (data ss mm hh DD MM YY, +33H), checksums included
PUBLISHED = [
    ("68 99 99 99 99 99 99 68 08 06 84 55 43 38 39 4A 4B 16", dt.datetime(2017, 6, 5, 10, 22, 51)),
]


def test_time_sync_frames_are_the_published_ones() -> None:
    for text, when in PUBLISHED:
        raw = bytes.fromhex(text)
        assert d.time_sync_request(when, preamble=False) == raw
        frame, used = d.find_frame(b"\xfe\xfe\xfe\xfe" + raw)
        assert frame is not None and used == 4 + len(raw)
        assert d.parse_time_sync(frame) == when
    # the same command addressed to one meter, as published beside it (checksum 0D)
    one = d.build_frame("111111111111", d.C_TIME_SYNC, bytes.fromhex("254010050617"),
                        preamble=False)
    assert one.hex(" ").upper() == "68 11 11 11 11 11 11 68 08 06 58 73 43 38 39 4A 0D 16"


def test_a_bad_time_sync_is_refused_by_name() -> None:
    for data, why in ((bytes.fromhex("00003030" "0224"), "day is out of range"),  # 30 Feb
                      (bytes.fromhex("5A0000010124"), "not 6 BCD"),
                      (bytes.fromhex("0000000101"), "not 6 BCD")):
        with pytest.raises(d.Dlt645FrameError, match=why):
            d.parse_time_sync(d.Frame(d.TIME_SYNC_ADDRESS, d.C_TIME_SYNC, data))
    with pytest.raises(d.Dlt645FrameError, match="not a time sync"):
        d.parse_time_sync(d.Frame("000000000001", d.C_TIME_SYNC, bytes(6)))
    with pytest.raises(ValueError, match="two digits"):
        d.time_sync_request(dt.datetime(1999, 12, 31, 23, 0, 0))


def test_never_near_midnight_and_off_by_default() -> None:
    day = dt.datetime(2026, 12, 3)
    assert not time_sync_allowed(day.replace(hour=0, minute=4, second=59))
    assert not time_sync_allowed(day.replace(hour=23, minute=55, second=1))
    assert time_sync_allowed(day.replace(hour=0, minute=5))
    assert time_sync_allowed(day.replace(hour=12))
    cfg = parse_model(GatewayConfig, {"site": "s", "gateway": "g", "state_dir": "/tmp/x",
                                      "devices": []})
    assert cfg.time_sync.enabled is False
    with pytest.raises(Exception, match="time zone"):
        parse_model(GatewayConfig, {"site": "s", "gateway": "g", "state_dir": "/tmp/x",
                                    "devices": [], "time_sync": {"timezone": "Mars/Olympus"}})


def _zone_at_noon() -> str:
    """A fixed-offset zone where it is about noon now, far from the midnight guard."""
    offset = 12 - dt.datetime.now(dt.UTC).hour  # -11 .. +12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


async def test_the_gateway_syncs_the_meters_on_schedule_and_keeps_polling(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    tz = _zone_at_noon()
    dlt = library.load("chint-dtsu666-dlt645")
    assert isinstance(dlt, d.Dlt645Profile)
    values = {"voltage_l1_v": 230.1, "active_energy_import_kwh": 1234.56}
    fast, slow, far = (Meter(dlt, values, clock_offset_s=120, tz=tz),
                       Meter(dlt, values, clock_offset_s=-200, tz=tz),
                       Meter(dlt, values, clock_offset_s=3600, tz=tz))
    sim = Dlt645Server({"000000000001": fast, "000000000002": slow, "000000000003": far},
                       baud=2400).start()
    line = {"type": "serial", "port": sim.device, "baud": 2400, "timeout_s": 0.5}
    cfg = parse_model(GatewayConfig, {
        "site": "hosp-a", "gateway": "gw-ts", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "end_to_end": False},
        "poll": {"interval_s": 0.3, "health_interval_s": 60},
        "time_sync": {"enabled": True, "interval_s": 1, "timezone": tz},
        "devices": [{"name": f"m{i}", "profile": "chint-dtsu666-dlt645",
                     "address": f"00000000000{i}", "quantities": ["voltage_l1_v"],
                     "transport": line} for i in (1, 2, 3)]})
    gw = Gateway(cfg)
    polled: list[int] = []
    enqueue = gw.enqueue

    def counting(samples: list[Any]) -> int:  # how many readings the poll loop produced
        polled.append(len(samples))
        return enqueue(samples)

    gw.enqueue = counting  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        def synced() -> bool:
            return (fast.time_syncs >= 2 and slow.time_syncs >= 2
                    and far.time_syncs_refused >= 2 and gw.time_syncs >= 2)

        await asyncio.to_thread(wait_until, synced, 15, "two time syncs applied")
        for m in (fast, slow):  # their clocks now read the gateway's time
            assert abs(m.clock_offset_s) < 2.0, m.clock_offset_s
        assert abs(far.clock_offset_s - 3600) < 1e-9  # a step of an hour is refused
        assert gw.time_syncs >= 2 and gw.health()["time_syncs"] == gw.time_syncs
        # polling went on beside the broadcasts, and no answer was garbled by one
        await asyncio.to_thread(wait_until, lambda: sum(polled) >= 6, 15, "polls")
        assert all(dev.stats.frame_errors == 0 and dev.stats.timeouts == 0
                   for b in gw.buses for dev in b.devices)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.stop()


# --------------------------------------------------------------------------- the command


def test_the_meter_clock_codec_and_the_rounded_sync_time() -> None:
    # DL/T 645-2007 04000101 YYMMDDWW (0 = Sunday) and 04000102 hhmmss, LSB first on the wire
    when = dt.datetime(2026, 12, 6, 9, 8, 7)  # a Sunday
    assert d.date_bytes(when).hex() == "00061226" and d.time_bytes(when).hex() == "070809"
    assert d.parse_clock(d.date_bytes(when), d.time_bytes(when)) == when
    with pytest.raises(d.Dlt645FrameError, match="not 4 \\+ 3 BCD"):
        d.parse_clock(bytes.fromhex("ffffffff"), bytes(3))
    with pytest.raises(d.Dlt645FrameError, match="month must be"):
        d.parse_clock(bytes.fromhex("00011326"), bytes(3))  # month 13
    # a frame taking 0.3 s on the wire sent at :59.4 arrives at :59.7 and says :00
    sent = dt.datetime(2026, 12, 3, 12, 0, 59, 400_000)
    assert d.rounded_time_sync(sent, 0.3) == dt.datetime(2026, 12, 3, 12, 1, 0)
    assert d.rounded_time_sync(sent, 0.0) == dt.datetime(2026, 12, 3, 12, 0, 59)


async def test_a_signed_time_sync_sets_one_meters_clock_and_reads_it_back(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A ``time_sync`` command over a real mosquitto to the command service, on a 2400-baud
    pty bus with three simulated meters (2007 and 1997): the meter's clock is read, the
    broadcast sent, the clock read back and the offsets published; a meter an hour off
    refuses the step and the command fails ``not_synced`` with what was read. Not allowed,
    not a DL/T 645 meter, a write to a DL/T 645 meter, near midnight and a malformed
    time_sync are refused before anything is sent."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from gateway import commands as cmds
    from gateway.bus import Bus, Timing
    from gateway.profile import ModbusProfile
    from gateway.transport import SerialLink
    from tests.gateway.test_commands import GW, KEY, SITE, Results

    tz = _zone_at_noon()
    p07, p97 = library.load("chint-dtsu666-dlt645"), library.load("generic-dlt645-1997")
    sdm = library.load("eastron-sdm630")
    assert isinstance(p07, d.Dlt645Profile) and isinstance(p97, d.Dlt645Profile)
    assert isinstance(sdm, ModbusProfile)
    values = {"voltage_l1_v": 230.1}
    fast, far, old = (Meter(p07, values, clock_offset_s=120, tz=tz),
                      Meter(p07, values, clock_offset_s=3600, tz=tz),
                      Meter(p97, values, clock_offset_s=-60, tz=tz))
    sim = Dlt645Server({"000000000001": fast, "000000000002": far, "000000000003": old},
                       baud=2400).start()
    bus = Bus("rs485-1", SerialLink(sim.device, baud=2400), [])
    timing = Timing(timeout_s=0.5)

    def meter(name: str, prof: d.Dlt645Profile, addr: str, allowed: set[str]
              ) -> cmds.Dlt645Target:
        return cmds.Dlt645Target(bus, name, prof, addr, timing, frozenset(allowed),
                                 baud=2400, timezone=tz)

    targets: dict[str, cmds.AnyTarget] = {
        "m1": meter("m1", p07, "000000000001", {"time_sync"}),
        "m2": meter("m2", p07, "000000000002", {"time_sync"}),
        "m3": meter("m3", p97, "000000000003", {"time_sync"}),
        "m1-locked": meter("m1-locked", p07, "000000000001", set()),
        "main": cmds.Target(bus, "main", sdm, 1, "rtu", timing, frozenset({"time_sync"})),
    }
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="gw-ts", protocol=paho.MQTTv5)
    subscribed = asyncio.Event()
    loop = asyncio.get_running_loop()
    client.on_subscribe = lambda *_a: loop.call_soon_threadsafe(subscribed.set)
    service = cmds.CommandService(
        SITE, GW, {"ops-1": KEY}, targets,
        cmds.NonceStore(tmp_path / "commands.db", max_entries=100),
        publish=lambda topic, payload: client.publish(topic, payload, qos=1) and None)
    service.attach(client, loop)
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    results = Results(mosquitto)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))

    async def command(device: str, **kw: Any) -> dict[str, Any]:
        cmd = cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device=device,
                               **{"action": "time_sync", **kw})
        await asyncio.to_thread(results.send, cmd)
        return await asyncio.to_thread(results.wait, cmd["id"], f"{device} answered")

    try:
        await asyncio.wait_for(subscribed.wait(), 10)
        # 1. a 1997 meter a minute behind (C010/C011 read): set, read back in sync
        r = await command("m3")
        assert (r["status"], r["action"], r["target"], r["value"]) == (
            "ok", "time_sync", "time_sync", "now"), r
        assert abs(r["offset_before_s"] + 60) < 2 and abs(r["offset_s"]) < 1.5, r
        assert abs(old.clock_offset_s) < 1.5 and r["key_id"] == "ops-1" and r["issued_at"]
        assert dt.datetime.fromisoformat(r["clock"]) - dt.datetime.fromisoformat(
            r["clock_before"]) > dt.timedelta(seconds=55)
        # the broadcast reached the other meters on the line within ±5 minutes, as documented
        assert abs(fast.clock_offset_s) < 1.5 and fast.time_syncs == 1
        # 2. the 2007 meter: already in sync before, still after
        r = await command("m1")
        assert r["status"] == "ok" and abs(r["offset_before_s"]) < 1.5 and abs(
            r["offset_s"]) < 1.5, r
        # 3. an hour off: the meter refuses the step, the command fails with the readings
        r = await command("m2")
        assert (r["status"], r["reason"]) == ("failed", "not_synced"), r
        assert abs(r["offset_before_s"] - 3600) < 2 and abs(r["offset_s"] - 3600) < 2
        assert far.time_syncs_refused == 3 and far.time_syncs == 0
        # 4. refusals before anything is sent
        sent = sim.requests
        for device, kw, reason in (("m1-locked", {}, "not_allowed"),
                                   ("main", {}, "not_writable"),
                                   ("m1", {"action": "write", "target": "voltage_l1_v",
                                           "value": "1"}, "not_writable"),
                                   ("nowhere", {}, "unknown_device")):
            r = await command(device, **kw)
            assert (r["status"], r["reason"]) == ("refused", reason), (device, r)
        with pytest.raises(ValueError, match="time_sync has target time_sync"):
            cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="m1",
                             action="time_sync", value="15")
        assert sim.requests == sent  # no frame for a refused command
        # near the meters' midnight: refused (the service's clock set to 23:57:30 there)
        midnight = dt.datetime.combine(dt.datetime.now(ZoneInfo(tz)).date(), dt.time(23, 57, 30),
                                       ZoneInfo(tz)).timestamp()
        late = cmds.CommandService(SITE, GW, {"ops-1": KEY}, targets,
                                   cmds.NonceStore(tmp_path / "late.db", max_entries=10),
                                   publish=lambda _t, _p: None, clock=lambda: midnight)
        cmd = cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="m1",
                               action="time_sync", now=midnight)
        r = await late.handle(json.dumps(cmd).encode())
        assert (r["status"], r["reason"]) == ("refused", "near_midnight"), r
        late.store.close()
        assert sim.requests == sent
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        client.loop_stop()
        client.disconnect()
        results.close()
        service.store.close()
        await bus.close()
        sim.stop()
    store = cmds.NonceStore(tmp_path / "commands.db", max_entries=100)
    kept = [(o["device"], o["status"], o["reason"]) for o in store.outcomes()]
    store.close()
    assert kept[:3] == [("m3", "ok", ""), ("m1", "ok", ""), ("m2", "failed", "not_synced")]


def test_a_dlt645_device_may_allow_time_sync_and_nothing_else() -> None:
    from enmon.errors import ConfigError
    from gateway.config import check_profiles

    def cfg(writable: list[str]) -> GatewayConfig:
        return parse_model(GatewayConfig, {
            "site": "s", "gateway": "g", "state_dir": "/tmp/x", "devices": [
                {"name": "m1", "profile": "chint-dtsu666-dlt645", "address": "000000000001",
                 "writable": writable,
                 "transport": {"type": "serial", "port": "/dev/ttyUSB0", "baud": 2400}}]})

    assert len(check_profiles(cfg(["time_sync"]), "gw.yaml")) == 1
    with pytest.raises(ConfigError, match="time_sync"):  # the fix names what is writable
        check_profiles(cfg(["voltage_l1_v"]), "gw.yaml")


async def test_the_configured_gateway_takes_a_signed_time_sync(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The gateway built from its config (devices[].writable: [time_sync]) answers a signed
    time_sync from the broker while it polls: the meter's clock set and read back."""
    from gateway import commands as cmds
    from tests.gateway.test_commands import GW, KEY, SITE, Results

    tz = _zone_at_noon()
    dlt = library.load("chint-dtsu666-dlt645")
    assert isinstance(dlt, d.Dlt645Profile)
    behind = Meter(dlt, {"voltage_l1_v": 230.1}, clock_offset_s=-90, tz=tz)
    sim = Dlt645Server({"000000000001": behind}, baud=2400).start()
    key_file = tmp_path / "cmd.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    line = {"type": "serial", "port": sim.device, "baud": 2400, "timeout_s": 0.5}
    cfg = parse_model(GatewayConfig, {
        "site": SITE, "gateway": GW, "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "end_to_end": False},
        "poll": {"interval_s": 0.5, "health_interval_s": 60},
        "time_sync": {"timezone": tz},  # the schedule off: only the command syncs
        "commands": {"enabled": True, "keys": [{"id": "ops-1", "file": str(key_file)}]},
        "devices": [{"name": "m1", "profile": "chint-dtsu666-dlt645",
                     "address": "000000000001", "quantities": ["voltage_l1_v"],
                     "writable": ["time_sync"], "transport": line}]})
    results = Results(mosquitto)
    gw = Gateway(cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        await asyncio.to_thread(wait_until, lambda: results.births >= 1, 15, "gateway online")
        cmd = cmds.new_command(KEY, key_id="ops-1", site=SITE, gateway=GW, device="m1",
                               action="time_sync")
        await asyncio.to_thread(results.send, cmd)
        r = await asyncio.to_thread(results.wait, cmd["id"], "the time sync answered")
        assert r["status"] == "ok", r
        assert abs(r["offset_before_s"] + 90) < 2 and abs(r["offset_s"]) < 1.5, r
        assert abs(behind.clock_offset_s) < 1.5 and behind.time_syncs == 1
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        results.close()
        sim.stop()
