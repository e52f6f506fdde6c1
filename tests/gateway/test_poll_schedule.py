"""Per-device poll intervals on one shared bus, in compressed (simulated) time."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from firmware_sim.mbus_meter import MbusServer, Meter
from firmware_sim.rtu import LineServer
from gateway import mbus as m
from gateway.agent import Gateway
from gateway.config import GatewayConfig
from gateway.planner import PollSchedule


def run(intervals: dict[str, float], cost: dict[str, float], horizon: float
        ) -> tuple[PollSchedule, dict[str, list[float]]]:
    """Drive the schedule over ``horizon`` seconds of a single half-duplex line."""
    s = PollSchedule(intervals, 0.0)
    now = 0.0
    starts: dict[str, list[float]] = {n: [] for n in intervals}
    for _ in range(100_000):  # bounded
        if now >= horizon:
            break
        due = s.due(now)
        if not due:
            now = s.next_wake()
            continue
        name = due[0]  # one transaction at a time on the line
        starts[name].append(now)
        s.done(name, now, now + cost[name])
        now += cost[name]
    return s, starts


def test_fast_and_slow_devices_both_keep_their_intervals() -> None:
    s, starts = run({"fast": 1.0, "slow": 60.0}, {"fast": 0.3, "slow": 0.5}, 600.0)
    fast = [b - a for a, b in zip(starts["fast"], starts["fast"][1:], strict=False)]
    slow = [b - a for a, b in zip(starts["slow"], starts["slow"][1:], strict=False)]
    assert len(starts["fast"]) == 600 and len(starts["slow"]) == 10
    assert all(iv == pytest.approx(60.0) for iv in slow)
    # the fast one is delayed at most by one slow read, and never drifts
    assert max(fast) <= 1.0 + 0.5 and min(fast) >= 1.0 - 0.5
    assert starts["fast"][-1] == pytest.approx(599.0, abs=0.5)
    assert s.skipped == {"fast": 0, "slow": 0}
    assert s.line_load() == pytest.approx(0.3 / 1 + 0.5 / 60)
    assert s.line_budget() is None  # no wire minimum given


def test_overloaded_line_skips_ticks_without_starving_anyone() -> None:
    s, starts = run({"a": 1.0, "b": 1.0, "c": 60.0}, {"a": 0.8, "b": 0.8, "c": 0.8}, 300.0)
    assert s.line_load() > 1  # the health shows it cannot keep up
    # the slow device still gets a turn every interval (earliest deadline first: under
    # overload just before its deadline, the next tick's release)
    c = starts["c"]
    assert len(c) >= 4 and c[0] <= 60.0
    assert all(b - a < 2 * 60.0 for a, b in itertools.pairwise(c))
    assert abs(len(starts["a"]) - len(starts["b"])) <= 1  # fair between equals
    assert s.skipped["a"] > 0 and s.figures()["a"]["mean_poll_ms"] == 800.0


async def test_the_gateway_keeps_each_devices_interval_on_one_bus(
        servers: list[LineServer], tmp_path: Path) -> None:
    """Two M-Bus meters on one simulated line, 0.2 s and 1 s, through the gateway's loop."""
    heat = {"heat_energy_gj": 1.0, "supply_temp_c": 70.0}
    lug = m.manufacturer_code("LUG")
    sec = [m.SecondaryAddress(x, lug, 7, 4) for x in ("00000001", "00000002")]
    srv = MbusServer([Meter(sec[0], heat, primary=1), Meter(sec[1], heat, primary=2)],
                     link="pty", baud=9600)
    servers.append(srv.start())
    port = {"type": "serial", "port": srv.device, "baud": 9600, "parity": "E",
            "timeout_s": 0.5}
    cfg = GatewayConfig.model_validate({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path),
        "devices": [
            {"name": "fast", "profile": "landis-gyr-t550-mbus", "unit_id": 1,
             "poll_interval_s": 0.2, "transport": port},
            {"name": "slow", "profile": "landis-gyr-t550-mbus", "unit_id": 2,
             "poll_interval_s": 1.0, "transport": port}]})
    gw = Gateway(cfg)
    seen: dict[str, int] = {"fast": 0, "slow": 0}
    end = time.monotonic() + 2.15
    try:
        while time.monotonic() < end:
            for smp in await gw.poll_due(time.monotonic()):
                seen[smp.device] += 1
            await asyncio.sleep(max(0.0, min(gw.next_due(), end) - time.monotonic()))
        figures = gw.health()["schedule"][gw.buses[0].name]
    finally:
        for b in gw.buses:
            await b.close()
        gw.queue.close()
    # the slow one's phase is where its first poll got the line (just after the fast one)
    assert 10 <= seen["fast"] <= 11 and seen["slow"] == 3  # t ≈ 0, 1, 2 s
    assert figures["devices"]["fast"]["0.2"]["skipped"] == 0
    assert 0 < figures["line_budget"] < figures["line_load"] < 1
