"""Per-quantity poll intervals on one shared bus, CT/PT ratios and "no value" sentinels.

End to end through the gateway (config → parts → earliest-deadline-first schedule → the
production bus → validation → samples), against firmware_sim meters on a pty with
9600-baud line timing and on Modbus TCP. Time is compressed tenfold where the schedule
is driven by the real clock (0.1 s for 1 s, 6 s for 60 s); the pure schedule runs the
real 1 s / 60 s in simulated time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from enmon import wire
from enmon.errors import ConfigError
from firmware_sim.dlt645_meter import Dlt645Server
from firmware_sim.dlt645_meter import Meter as DlMeter
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import cjt188, dlt645, library
from gateway.agent import Gateway
from gateway.config import GatewayConfig
from gateway.drivers import Cjt188Driver, Values
from gateway.planner import PollSchedule, interval_groups
from gateway.profile import ModbusProfile
from gateway.validation import NO_VALUE, ROLLOVER

HERE = Path(__file__).parent
FAST = ["active_power_kw", "current_l1_a"]
SLOW = ["active_energy_import_kwh", "active_energy_export_kwh", "voltage_l1_v"]


def test_interval_precedence() -> None:
    """device intervals_s > profile intervals_s > the device's own default."""
    groups = interval_groups(["p", "e", "v", "i"], device={"p": 1.0},
                             profile={"p": 5.0, "e": 3600.0}, default=60.0)
    assert groups == {1.0: ["p"], 60.0: ["v", "i"], 3600.0: ["e"]}


def test_one_second_and_sixty_second_parts_share_a_line_in_simulated_time() -> None:
    """A 1 s part of a meter, its 60 s part and a slow meter's 60 s part (long reads) on
    one half-duplex line for ten simulated minutes."""
    cost = {("m", 1.0): 0.05, ("m", 60.0): 0.4, ("w", 60.0): 0.6}
    s: PollSchedule[tuple[str, float]] = PollSchedule({k: k[1] for k in cost}, 0.0)
    starts: dict[tuple[str, float], list[float]] = {k: [] for k in cost}
    now = 0.0
    for _ in range(100_000):  # bounded
        if now >= 600.0:
            break
        due = s.due(now)
        if not due:
            now = s.next_wake()
            continue
        k = due[0]
        starts[k].append(now)
        s.done(k, now, now + cost[k], wire_s=cost[k] * 0.9)
        now += cost[k]
    assert len(starts[("m", 1.0)]) == 600
    assert len(starts[("m", 60.0)]) == len(starts[("w", 60.0)]) == 10
    slow = starts[("w", 60.0)]
    assert all(b - a == pytest.approx(60.0, abs=0.5) for a, b in itertools.pairwise(slow))
    per = s.by_interval()
    assert per[1.0]["skipped"] == per[60.0]["skipped"] == 0
    assert per[60.0]["parts"] == 2 and per[60.0]["cycle_ms"] == pytest.approx(1000.0)
    # equal deadlines go in config order: the 1 s part first, then both slow reads (1 s of
    # line time); the next 1 s tick waits 50 ms behind them once a minute — not "late"
    assert per[1.0]["late"] == 0 and per[1.0]["lag_max_ms"] == pytest.approx(50.0)
    assert s.line_budget() == pytest.approx(0.9 * (0.05 / 1 + 1.0 / 60))


async def _run_for(gw: Gateway, seconds: float) -> list[list[wire.Sample]]:
    """The run loop's poll path for ``seconds`` of real time: one list per batch."""
    batches: list[list[wire.Sample]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = await gw.poll_due(time.monotonic())
        if got:
            batches.append(got)
        await asyncio.sleep(max(0.0, min(gw.next_due(), end) - time.monotonic()))
    return batches


async def _close(gw: Gateway) -> None:
    for b in gw.buses:
        await b.close()
    gw.queue.close()


async def test_a_fast_quantity_and_a_slow_one_on_one_line_keep_their_intervals(
        servers: list[LineServer], tmp_path: Path) -> None:
    """A meter's power and current every 0.1 s, its energy and voltage every 6 s (the
    device's interval), and a second meter every 6 s, on one 9600-baud line."""
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    vals = dict.fromkeys(sdm.quantities, 1.0)
    srv = ModbusSlaveServer({1: Unit(sdm, vals), 2: Unit(sdm, vals)}, link="pty", baud=9600)
    servers.append(srv.start())
    port = {"type": "serial", "port": srv.device, "baud": 9600, "timeout_s": 0.5}
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [
            {"name": "main", "profile": "eastron-sdm630", "unit_id": 1, "transport": port,
             "quantities": FAST + SLOW, "poll_interval_s": 6.0,
             "intervals_s": dict.fromkeys(FAST, 0.1)},
            {"name": "ahu", "profile": "eastron-sdm630", "unit_id": 2, "transport": port,
             "poll_interval_s": 6.0}]})
    gw = Gateway(cfg)
    try:
        batches = await _run_for(gw, 6.25)
        health = gw.health()
    finally:
        await _close(gw)
    samples = [s for b in batches for s in b]
    main = [s for s in samples if s.device == "main"]
    fast = [s for s in main if set(FAST) <= set(s.values)]
    slow = [s for s in main if set(SLOW) & set(s.values)]
    # 0.1 s for 6.25 s: ticks at 0.0 … 6.2 (63), a few skipped behind the slow reads
    assert 55 <= len(fast) <= 63
    assert len(slow) == 2 and all(set(SLOW) <= set(s.values) <= set(FAST + SLOW)
                                  for s in slow)
    assert all(set(s.values) == set(FAST) for s in main if s not in slow)
    assert sum(1 for s in samples if s.device == "ahu") == 2  # t = 0 and 6 s: not starved
    # a batch never carries two samples of one meter (ingest would refuse the second)
    assert all(max(Counter(s.device for s in b).values()) == 1 for b in batches)

    sched = health["schedule"][gw.buses[0].name]
    per = sched["intervals"]
    assert set(per) == {"0.1", "6"} and sched["baud"] == 9600
    assert per["6"]["parts"] == 2 and per["6"]["polls"] == 4 and per["6"]["skipped"] == 0
    assert per["0.1"]["polls"] == len(fast)
    for figs in per.values():
        # the wire minimum is below what the line really took, and the budget below 1
        assert 0 < figs["wire_min_ms"] <= figs["cycle_ms"]
        assert 0 < figs["budget"] <= figs["load"]
    # current at 0x06 and power at 0x34 are too far apart to coalesce at 9600 baud: two
    # 2-register reads, (8 + 9 + 7) characters each at 1.15 ms ≈ 55 ms
    assert per["0.1"]["wire_min_ms"] == pytest.approx(2 * 24 * 11 / 9600 * 1000, abs=0.2)
    assert 0 < sched["line_budget"] < sched["line_load"] < 1
    assert sched["devices"]["main"]["0.1"]["quantities"] == FAST


async def test_a_slow_part_is_not_starved_by_an_overloaded_fast_one(
        servers: list[LineServer], tmp_path: Path) -> None:
    """Three meters' fast parts ask for more than the line has (0.1 s each for a read that
    takes ~60 ms): the fast ticks are skipped, the slow part still keeps its 1 s."""
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    vals = dict.fromkeys(sdm.quantities, 1.0)
    srv = ModbusSlaveServer({u: Unit(sdm, vals) for u in (1, 2, 3)}, link="pty", baud=9600)
    servers.append(srv.start())
    port = {"type": "serial", "port": srv.device, "baud": 9600, "timeout_s": 0.5}
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [
            {"name": f"m{u}", "profile": "eastron-sdm630", "unit_id": u, "transport": port,
             "poll_interval_s": 1.0, "gap": 19,
             "intervals_s": dict.fromkeys(sdm.quantities, 0.1) if u < 3 else
             {"active_power_kw": 0.1}} for u in (1, 2, 3)]})
    gw = Gateway(cfg)
    try:
        batches = await _run_for(gw, 3.5)
        health = gw.health()
    finally:
        await _close(gw)
    per = health["schedule"][gw.buses[0].name]["intervals"]
    assert per["0.1"]["load"] > 1 and per["0.1"]["skipped"] > 0  # it says it cannot keep up
    slow = [s for b in batches for s in b if s.device == "m3" and "voltage_l1_v" in s.values]
    assert len(slow) == 4  # t = 0, 1, 2, 3 s


async def test_a_block_of_slow_meters_due_together_does_not_make_a_fast_part_skip(
        servers: list[LineServer], tmp_path: Path) -> None:
    """Four meters at 3 s (a whole SDM630 each, ~145 ms of line time) are due together,
    a block of ~0.6 s; a power reading at 0.2 s beside them keeps every tick: once
    released it has the earliest deadline and goes between two slow meters."""
    sdm = library.load("eastron-sdm630")
    assert isinstance(sdm, ModbusProfile)
    vals = dict.fromkeys(sdm.quantities, 1.0)
    srv = ModbusSlaveServer({u: Unit(sdm, vals) for u in range(1, 6)}, link="pty", baud=9600)
    servers.append(srv.start())
    port = {"type": "serial", "port": srv.device, "baud": 9600, "timeout_s": 0.5}
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "demand", "profile": "eastron-sdm630", "unit_id": 1,
                     "quantities": ["active_power_kw"], "poll_interval_s": 0.2,
                     "transport": port}]
        + [{"name": f"m{u}", "profile": "eastron-sdm630", "unit_id": u, "gap": 19,
            "poll_interval_s": 3.0, "transport": port} for u in range(2, 6)]})
    gw = Gateway(cfg)
    try:
        batches = await _run_for(gw, 6.8)
        health = gw.health()
    finally:
        await _close(gw)
    per = health["schedule"][gw.buses[0].name]["intervals"]
    assert per["0.2"]["skipped"] == 0 and per["0.2"]["polls"] >= 33
    assert per["0.2"]["lag_max_ms"] < 200  # at most one slow meter's read
    assert per["3"]["polls"] == 12 and per["3"]["skipped"] == 0  # t = 0, 3, 6 s
    assert sum(1 for b in batches for s in b if s.device == "demand") == per["0.2"]["polls"]


async def test_ct_pt_ratios_give_primary_values_before_the_counter_checks(
        servers: list[LineServer], tmp_path: Path) -> None:
    """An Acrel ADL400 behind 200/5 A CTs and 10 kV/100 V PTs reports secondary values
    over Modbus TCP; the gateway sends primary ones, and the counter check sees primary
    values against the register's capacity scaled the same way: a wrap of the secondary
    register (42 949 672.95 kWh) is a rollover, not a reset."""
    adl = library.load("acrel-adl400")
    assert isinstance(adl, ModbusProfile)
    secondary = {"voltage_l1_v": 100.0, "current_l1_a": 5.0, "active_power_kw": 0.5,
                 "frequency_hz": 50.0, "active_energy_import_kwh": 42_900_000.00}
    srv = ModbusSlaveServer({1: Unit(adl, secondary)}, framing="tcp", link="tcp")
    servers.append(srv.start())
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{
            "name": "hv", "profile": "acrel-adl400", "ct_ratio": 40, "pt_ratio": 100,
            "quantities": ["voltage_l1_v", "current_l1_a", "active_power_kw", "frequency_hz",
                           "active_energy_import_kwh"],
            "counters": {"active_energy_import_kwh": {"capacity": 42_949_672.95}},
            "transport": {"type": "tcp", "host": "127.0.0.1", "port": srv.port}}]})
    gw = Gateway(cfg)
    try:
        first = await gw.poll_once()
        secondary["active_energy_import_kwh"] = 1_000_000.00  # the register wrapped
        second = await gw.poll_once()
    finally:
        await _close(gw)
    v = first[0].values
    assert v["voltage_l1_v"] == pytest.approx(10_000.0)
    assert v["current_l1_a"] == pytest.approx(200.0)
    assert v["active_power_kw"] == pytest.approx(2000.0)
    assert v["frequency_hz"] == pytest.approx(50.0)  # not marked: left alone
    assert v["active_energy_import_kwh"] == 42_900_000.00 * 4000
    assert second[0].values["active_energy_import_kwh"] == 1_000_000.00 * 4000
    assert second[0].flags == {"active_energy_import_kwh": ROLLOVER}


def test_a_ratio_on_a_profile_that_marks_nothing_is_refused(tmp_path: Path) -> None:
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "m", "profile": "eastron-sdm630", "ct_ratio": 40,
                     "transport": {"type": "tcp", "host": "127.0.0.1"}}]})
    with pytest.raises(ConfigError, match="ct_ratio"):
        Gateway(cfg)


async def test_a_no_value_sentinel_is_no_value_with_a_logged_reason(
        servers: list[LineServer], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A meter that sends 0xFFFF for a voltage it has not measured and 0xFFFFFFFF for an
    energy it has not counted (the test profile's ``no_value``), on a pty at 9600 baud: no
    figure, the flag ``no_value``, and ``event=value_dropped … reason=no_value`` logged."""
    profile_file = HERE / "test-no-value.yaml"
    p = library.load(str(profile_file))
    assert isinstance(p, ModbusProfile)
    # what the meter's registers hold: 0xFFFF (6553.5 V at 0.1 V) and 0xFFFFFFFF
    vals: dict[str, Any] = {"voltage_l1_v": 6553.5, "current_l1_a": 5.0,
                            "active_energy_import_kwh": 42_949_672.95, "active_power_kw": 1.5}
    srv = ModbusSlaveServer({1: Unit(p, vals)}, link="pty", baud=9600)
    servers.append(srv.start())
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "m", "profile": str(profile_file),
                     "transport": {"type": "serial", "port": srv.device, "timeout_s": 0.5}}]})
    gw = Gateway(cfg)
    caplog.set_level(logging.WARNING, logger="enmon.gateway.bus")
    try:
        samples = await gw.poll_once()
        vals["voltage_l1_v"] = 230.0  # the meter has measured it now
        again = await gw.poll_once()
        health = gw.health()
    finally:
        await _close(gw)
    (s,) = samples
    assert s.values == {"current_l1_a": 5.0, "active_power_kw": 1.5}
    assert s.flags == {"voltage_l1_v": NO_VALUE, "active_energy_import_kwh": NO_VALUE}
    dropped = [r.getMessage() for r in caplog.records if "event=value_dropped" in
               r.getMessage()]
    assert any("quantity=voltage_l1_v raw=0xFFFF reason=no_value" in m for m in dropped)
    assert any("quantity=active_energy_import_kwh raw=0xFFFFFFFF reason=no_value" in m
               for m in dropped)
    assert again[0].values["voltage_l1_v"] == pytest.approx(230.0)
    assert "voltage_l1_v" not in again[0].flags
    assert health["flags"][NO_VALUE] == 3


class _NoDataYet(Dlt645Server):
    """firmware_sim's DL/T 645 meter, answering FF value bytes for one DI (it has no knob
    for raw bytes; every other answer is the simulator's own)."""

    def __init__(self, meters: dict[str, DlMeter], di: str) -> None:
        super().__init__(meters, baud=2400)
        self.di = di

    def _answer_as(self, addr: str, frame: dlt645.Frame) -> bytes | None:
        answer = super()._answer_as(addr, frame)
        if answer is not None and frame.data[::-1].hex().upper() == self.di:
            _, ok, _ = dlt645.CONTROL["2007"]
            return dlt645.build_frame(addr, ok, frame.data + b"\xff" * 4)
        return answer


async def test_a_dlt645_no_data_answer_is_no_value_not_a_bad_frame(
        servers: list[LineServer], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """FF FF FF FF for an energy (not BCD) on a 2400-baud pty: with the sentinel in the
    profile it is no value with reason no_value — not a corrupt frame retried and counted."""
    profile_file = HERE / "test-no-value-dlt645.yaml"
    p = library.load(str(profile_file))
    assert isinstance(p, dlt645.Dlt645Profile)
    addr = "000000000042"
    srv = _NoDataYet({addr: DlMeter(p, {"active_energy_import_kwh": 1.0,
                                        "voltage_l1_v": 229.5})}, "00010000")
    servers.append(srv.start())
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [{"name": "d", "profile": str(profile_file), "address": addr,
                     "transport": {"type": "serial", "port": srv.device, "baud": 2400,
                                   "timeout_s": 0.5}}]})
    gw = Gateway(cfg)
    caplog.set_level(logging.WARNING, logger="enmon.gateway.bus")
    try:
        (s,) = await gw.poll_once()
        health = gw.health()
    finally:
        await _close(gw)
    assert s.values == {"voltage_l1_v": pytest.approx(229.5)}
    assert s.flags == {"active_energy_import_kwh": NO_VALUE}
    assert any("quantity=active_energy_import_kwh raw=0xFFFFFFFF reason=no_value"
               in r.getMessage() for r in caplog.records)
    assert health["devices"]["d"]["frame_errors"] == 0


def test_a_cjt188_no_data_index_is_no_value() -> None:
    """A CJ/T 188 water meter answering FF FF FF FF for its index (not BCD): with the
    sentinel listed it is no value (the status bits of the same answer still count)."""
    water = library.load("generic-cjt188-water")
    assert isinstance(water, cjt188.Cjt188Profile)
    p = water.model_copy(update={"no_value": {"water_volume_m3": [0xFFFFFFFF]}})
    addr = "00000000000001"
    step = Cjt188Driver("w", p, addr).steps[0]
    request = step.request()
    assert request is not None
    ser = request[-3]  # … DI(2) SER CS 16
    body = bytearray(cjt188.encode_values(p, {"water_volume_m3": 1.0, "alarm_active": 1.0}))
    body[0:4] = b"\xff" * 4
    answer = cjt188.build_frame(p.type_byte, addr, cjt188.C_READ_OK,
                                cjt188.di_bytes(p.di, p.version) + bytes([ser]) + body)
    got = step.parse(answer)
    assert isinstance(got, Values) and dict(got) == {"alarm_active": 1}
    assert got.no_value == {"water_volume_m3": "0xFFFFFFFF"}
