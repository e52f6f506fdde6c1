"""DL/T 645 broadcast time sync: the codec against published frames, the simulated meters
setting their clocks from it, and the gateway sending it on schedule (off by default)
over a pty with 2400-baud line timing while it keeps polling."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

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
