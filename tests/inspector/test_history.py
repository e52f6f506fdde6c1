"""Meter history: gaps, flags and refusals found in data that went through the real pipeline.

The store's answers are checked against influxd read back independently
(``tests.support.influx_rows``, plain urllib), and the planned faults of the
simulated month (an outage, a spike, a garbage payload) must each show up
exactly where they were made.
"""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from enmon.influx import InfluxConfig, InfluxQL
from inspector import history as hist
from inspector.store import Store, fetch_history
from tests.inspector.conftest import DB, Loaded
from tests.support import influx_rows

SITE = "demo-campus"
STEP = 900_000


def _history(loaded: Loaded, device: str, mode: str = "raw", **kw: Any) -> hist.History:
    async def go() -> hist.History:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            h: hist.History = await fetch_history(store, site=SITE, device=device,
                                                  start=loaded.data.start_ms,
                                                  end=loaded.data.end_ms, mode=mode, **kw)
            return h
        finally:
            await store.close()
    return asyncio.run(go())


# ------------------------------------------------------------------ pure


def test_gaps_worked_example() -> None:
    # readings every 60 s, a 10-minute hole, and a silent last quarter hour of the range
    times = [0, 60_000, 120_000, 720_000, 780_000]
    gaps = hist.find_gaps(times, 0, 1_800_000, interval_ms=hist.typical_interval(times))
    assert hist.typical_interval(times) == 60_000
    assert gaps == [hist.Gap(120_000, 720_000), hist.Gap(780_000, 1_800_000, edge=True)]
    assert hist.find_gaps([], 0, 10, interval_ms=None) == [hist.Gap(0, 10, edge=True)]
    assert hist.human_duration(6 * 3_600_000 + 15 * 60_000) == "6 h 15 min"


def test_csv_puts_gaps_and_refusals_in_place() -> None:
    h = hist.raw_history(
        site="s", device="d", start=0, end=4 * STEP, tz="UTC", fields=["active_power_kw"],
        rows=[{"time": 0, "active_power_kw": 1.0}, {"time": STEP, "active_power_kw": 2.0},
              {"time": 2 * STEP, "active_power_kw": 3.0, "flag_active_power_kw": "spike"},
              {"time": 3 * STEP + 1, "active_power_kw": 4.0}],
        rejected=[{"time": STEP, "reason": "bad_json", "detail": "x", "gateway": "g"},
                  {"time": STEP, "reason": "bad_type", "detail": "y", "device": "other"}],
        gap_factor=1.0)
    buf = io.StringIO()
    n = hist.write_csv(h, buf)
    rows = list(csv.reader(io.StringIO(buf.getvalue())))
    assert rows[0] == ["time", "epoch_ms", "active_power_kw [kW]", "flag_active_power_kw", "note"]
    # 4 readings; notes sit on the reading they start at; the other device's refusal is not ours
    assert n == len(rows) - 1 == 4
    assert rows[2][-1].startswith("rejected bad_json")
    assert rows[3][3] == "spike"
    assert rows[3][-1].startswith("gap: no reading for 15 min")


# ------------------------------------------------------------------ real influxd


@pytest.mark.slow
def test_outage_is_one_gap_where_it_happened(loaded: Loaded) -> None:
    device, g0, g1 = loaded.data.gap
    h = _history(loaded, device)
    stored = influx_rows(loaded.url, DB, f"SELECT active_power_kw FROM meter WHERE "
                                         f"device = '{device}' AND time >= "
                                         f"{loaded.data.start_ms}ms AND time < "
                                         f"{loaded.data.end_ms}ms")
    assert h.readings == len(stored) > 0
    assert h.interval_ms == STEP
    assert len(h.gaps) == 1
    gap = h.gaps[0]
    # the last reading before the outage and the first after it
    assert gap.start == g0 - STEP and gap.end == g1
    assert not any(g0 <= r["time"] < g1 for r in h.rows)  # a failed read is absent, never 0
    assert [r["reason"] for r in h.rejected] == ["bad_json", "unknown_quantity"]


@pytest.mark.slow
def test_flagged_spike_and_other_meters_clean(loaded: Loaded) -> None:
    device, ts = loaded.data.spike
    h = _history(loaded, device)
    assert [(f.ts, f.quantity, f.flag, f.value) for f in h.flags] == [
        (ts, "active_power_kw", "out_of_range", 9999.0)]
    assert h.gaps == [] and h.rejected == []


@pytest.mark.slow
def test_daily_rollup_matches_the_counters(loaded: Loaded) -> None:
    h = _history(loaded, "admin-main", mode="day")
    assert h.mode == "day" and len(h.rows) == 3
    col = "active_energy_import_kwh_consumption"
    first = influx_rows(loaded.url, DB, "SELECT first(active_energy_import_kwh) AS v FROM meter "
                                        "WHERE device = 'admin-main'")[0]["v"]
    last = influx_rows(loaded.url, DB, "SELECT last(active_energy_import_kwh) AS v FROM meter "
                                       "WHERE device = 'admin-main'")[0]["v"]
    assert sum(r[col] for r in h.rows) == pytest.approx(last - first, rel=1e-9)
    counts = [r["active_power_kw_count"] for r in h.rows]
    assert counts == [96, 96, 96]  # one reading per 15 min, computed by the database
    assert all(r["active_power_kw_min"] <= r["active_power_kw_mean"] <= r["active_power_kw_max"]
               for r in h.rows)


@pytest.mark.slow
def test_cli_exports_csv_and_xlsx(loaded: Loaded, tmp_path: Path) -> None:
    from openpyxl import load_workbook

    csv_path, xlsx_path = tmp_path / "school.csv", tmp_path / "school.xlsx"
    r = subprocess.run(
        [sys.executable, "-m", "enmon", "history", SITE, "school-main", "--from", "2026-10-01",
         "--to", "2026-10-04", "--csv", str(csv_path), "--xlsx", str(xlsx_path),
         "--influx-url", loaded.url, "--database", DB],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 gap(s)" in r.stdout and "2 rejected record(s)" in r.stdout
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    notes = [x["note"] for x in rows if x["note"]]
    assert any(n.startswith("gap: no reading for 6 h 15 min") for n in notes)
    assert sum(1 for x in rows if x["active_power_kw [kW]"]) == 3 * 96 - 6 * 4
    wb = load_workbook(xlsx_path, read_only=True)
    assert wb.sheetnames == ["Readings", "Gaps", "Flags", "Rejected", "About"]
    gaps = list(wb["Gaps"].iter_rows(values_only=True))
    assert len(gaps) == 2 and gaps[1][2] == "6 h 15 min"
    assert len(list(wb["Rejected"].iter_rows(values_only=True))) == 3


@pytest.mark.slow
def test_cli_building_csv_puts_meters_side_by_side(loaded: Loaded, tmp_path: Path) -> None:
    out = tmp_path / "admin.csv"
    r = subprocess.run(
        [sys.executable, "-m", "enmon", "history", SITE, "--building", "admin", "--from",
         "2026-10-01", "--to", "2026-10-04", "--mode", "hour", "--csv", str(out),
         "--influx-url", loaded.url, "--database", DB],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == 72
    col = "{} active_energy_import_kwh_consumption [kWh]"
    for row in rows:
        subs = sum(float(row[col.format(d)]) for d in
                   ("admin-light", "admin-hvac", "admin-power", "admin-spec"))
        # the simulated mains is exactly the sum of its sub-item meters, hour by hour
        assert float(row[col.format("admin-main")]) == pytest.approx(subs, rel=1e-9)


def test_exports_never_carry_a_live_formula(tmp_path: Path) -> None:
    """A rejected payload's text is a sender's words: in CSV it is defused with a leading
    apostrophe, in XLSX stored as text, so opening the export runs nothing."""
    from openpyxl import load_workbook

    evil = '=HYPERLINK("http://attacker.example","click")'
    h = hist.raw_history(
        site="s", device="d", start=0, end=2 * STEP, tz="UTC", fields=["active_power_kw"],
        rows=[{"time": 0, "active_power_kw": -1.5}, {"time": STEP, "active_power_kw": 2.0}],
        rejected=[{"time": STEP, "reason": "bad_type", "detail": evil, "device": "d",
                   "quantity": "+cmd|' /C calc'!A0", "gateway": "@SUM(1+1)",
                   "payload_sha256": "ab"}],
        gap_factor=10.0)
    buf = io.StringIO()
    hist.write_csv(h, buf)
    cells = [c for row in csv.reader(io.StringIO(buf.getvalue())) for c in row]
    assert not any(c.startswith(("=", "+", "@")) for c in cells)
    assert "-1.5" in cells  # numbers are not touched
    path = tmp_path / "h.xlsx"
    hist.write_xlsx(h, path)
    wb = load_workbook(path)
    rej = next(iter(wb["Rejected"].iter_rows(min_row=2, values_only=True)))
    assert rej[2] == evil and rej[5] == "@SUM(1+1)"  # kept verbatim, as text
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for c in row:
                assert c.data_type != "f", (ws.title, c.coordinate, c.value)
