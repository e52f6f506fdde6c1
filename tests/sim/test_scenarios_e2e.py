"""Every shipped scenario produces the alert it is meant to, end to end.

The whole chain runs for real: the simulated campus on Modbus TCP and serial-line
endpoints with real meter register maps, ``enmon gateway run`` per gateway
(replaying a year-to-date of history from its own disk queue, then polling),
mosquitto, ``enmon ingest run``, influxd 1.6 and ``enmon rules run``, whose
webhook notifier delivers the alerts to this test. All five scenarios run at
once on a small campus (one device per scenario target) to keep this to about
a minute and a half.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from enmon.localrun import InfluxDB1, Mosquitto
from firmware_sim.campus import load_campus, load_scenario
from firmware_sim.campus.scenario import library
from stack.campus_run import CampusRun, RunOptions, influx_rows

CAMPUS = Path(__file__).parent / "e2e-campus.yaml"
# what each expectation's target is, in the alert's labels
TARGET_LABEL = {"quota_early_warning": "building", "boiler_efficiency": "boiler",
                "meter_offline": "device", "gateway_offline": "gateway",
                "counter_backwards": "device"}


def _matches(note: dict[str, object], rule: str, target: str) -> bool:
    labels = note.get("labels") or {}
    assert isinstance(labels, dict)
    return (note.get("rule") == rule and note.get("state") == "firing"
            and labels.get(TARGET_LABEL[rule]) == target)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_each_scenario_raises_its_alert_through_the_whole_chain(
    mosquitto: Mosquitto, influxdb: InfluxDB1, tmp_path: Path
) -> None:
    names = [n for n in library() if n != "boiler-fouls-slowly"]  # same alert, slower story
    scenarios = [load_scenario(n) for n in names]
    expected = [(sc.name, e) for sc in scenarios for e in sc.expect]
    assert {e.alert for _, e in expected} == set(TARGET_LABEL)
    log: list[str] = []
    options = RunOptions(poll_s=2.0, offline_after_s=15.0, gateway_grace_s=5.0,
                         rules_interval_s=20.0, dense_days=1.2)
    async with CampusRun(load_campus(CAMPUS), scenarios, mosquitto, influxdb,
                         tmp_path / "run", options=options, say=log.append) as run:
        assert await run.start(), "\n".join(log)
        deadline = run.live_start + max(e.within for _, e in expected) + 30
        while time.time() < deadline:
            if all(any(_matches(a, e.alert, e.target) for a in run.alerts) for _, e in expected):
                break
            dead = run.dead_part()
            assert dead is None, f"{dead.name} exited:\n{dead.log_tail()}"
            await asyncio.sleep(0.5)
        for name, e in expected:
            hits = [a for a in run.alerts if _matches(a, e.alert, e.target)]
            assert hits, f"scenario {name}: no {e.alert} alert for {e.target}; got " + ", ".join(
                sorted({f"{a.get('rule')}:{a.get('labels')}" for a in run.alerts}))
            assert hits[0]["received_at"] - run.live_start <= e.within + 15, (name, e)
        # nothing that should not have happened: the healthy meters raised nothing
        quiet = {"admin-main", "lodge-main", "steam1-gas", "steam1-steam", "steam1-flue",
                 "admin-water", "campus-weather"}
        noisy = [a for a in run.alerts if (a.get("labels") or {}).get("device") in quiet]
        assert not noisy, noisy
        # every protocol delivered: Modbus TCP, Modbus RTU and DL/T 645 behind serial
        # servers, an ASCII flue-gas analyser
        live = influx_rows(influxdb.url, "enmon", "SELECT count(*) FROM meter WHERE "
                           f"time > {int(run.live_start * 1000)}ms GROUP BY device")
        assert {r["device"] for r in live} >= {"mall-main", "school-main", "lodge-main",
                                               "steam1-flue", "admin-water", "campus-weather"}
        # water: the ultrasonic meter's register map carries whole m³ and L/h, tagged 02000
        water = influx_rows(influxdb.url, "enmon", "SELECT last(water_volume_m3) AS v, "
                            "last(water_flow_m3_h) AS f FROM meter WHERE device = 'admin-water' "
                            f"AND energy_type = 'water' AND category = '02000' "
                            f"AND time > {int(run.live_start * 1000)}ms")
        assert water and water[0]["v"] == int(water[0]["v"]) and water[0]["f"] >= 0, water
        assert run.sim is not None
        assert abs(water[0]["v"] - run.sim.counter("admin-water", "water_volume_m3")) <= 1.0
        air = influx_rows(influxdb.url, "enmon", "SELECT last(outdoor_temp_c) AS t FROM meter "
                          "WHERE device = 'campus-weather'")
        assert air and abs(air[0]["t"] - run.sim.outdoor_c) < 2.0, air
        # the alert history the inspectors read holds the same alerts
        stored = influx_rows(influxdb.url, "enmon", "SELECT * FROM alert")
        rules_stored = {r.get("rule") for r in stored}
        assert {e.alert for _, e in expected} <= rules_stored, rules_stored
        # the uplink comes back at 45 s: the mall's readings of the outage are replayed, in full
        run_ms = int(run.live_start * 1000)
        outage = ("SELECT active_energy_import_kwh FROM meter WHERE device = 'mall-main'"
                  f" AND time > {run_ms + 17_000}ms AND time < {run_ms + 43_000}ms")
        rows: list[dict[str, object]] = []
        while time.time() < run.live_start + 45 + 45 and len(rows) < 11:
            await asyncio.sleep(1.0)
            rows = influx_rows(influxdb.url, "enmon", outage)
        # 26 s of 2-second polls is 13 readings; allow a couple lost to timeouts on a busy box
        assert len(rows) >= 11, f"only {len(rows)} readings of the outage reached InfluxDB"
