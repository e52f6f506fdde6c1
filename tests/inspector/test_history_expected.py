"""History without fake gaps: readings are expected at the meter's configured poll interval.

A meter like the demo's: a week of hourly history (a gateway's back-fill), then
15-minute readings for the last two days, a real 5-hour outage in them, and a
recorded meter replacement. Its site file says readings are due every hour
(``poll_interval_s: 3600``, as ``enmon demo`` writes it). The API, the CLI and the
console (Debian's chromium through Playwright) must each show the one outage and
nothing else, a range that ends now, a chart line over both the hourly and the
15-minute part, and hourly consumption that treats the swap as a swap.

The data is written relative to the wall clock into a database of its own on the
session's influxd, and served by an inspector API of its own, so the campus tests
are not disturbed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from enmon.influx import InfluxConfig, InfluxQL, InfluxV1Writer
from enmon.lineproto import line
from enmon.localrun import free_port
from inspector import history as hist
from tests.inspector.conftest import INSPECTOR_TOKEN, Loaded, auth
from tests.support import wait_until

DB = "enmon_hist"
SITE, GW, DEVICE = "lab", "gw-lab", "lab-main"
H, Q = 3_600_000, 900_000
RATE = 10.0  # kWh per hour, constant: the true consumption of any span is RATE × hours
CHROMIUM = Path("/usr/bin/chromium")
BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]


@dataclass
class Lab:
    url: str  # this module's inspector API
    influx: str
    cfg_path: Path
    first: int  # first reading
    dense: int  # first 15-minute reading (before it, hourly)
    last: int  # last reading
    outage: tuple[int, int]  # last reading before, first reading after
    swap: int
    readings: int


def _counter(t: int, swap: int, first: int) -> float:
    """The meter's index at ``t``: 4 000 kWh at the start; the new meter starts at 100."""
    if t < swap:
        return 4000.0 + RATE * (t - first) / H
    return 100.0 + RATE * (t - swap) / H


@pytest.fixture(scope="module")
def lab(loaded: Loaded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    import uvicorn

    from energy.site import Site
    from inspector.api import create_app
    from inspector.auth import token_hash
    from inspector.config import InspectorConfig, TokenEntry

    now = int(time.time() * 1000)
    first = (now - 7 * 86_400_000) // H * H
    dense = (now - 2 * 86_400_000) // H * H
    last = (now - 60_000) // Q * Q
    o0, o1 = dense + 12 * H, dense + 17 * H  # 5 h without a reading (> 2.5 × 1 h)
    swap = first + 30 * H + H // 2
    times = [*range(first, dense, H),
             *(t for t in range(dense, last + 1, Q) if not o0 <= t < o1)]
    tags = {"site": SITE, "gateway": GW, "device": DEVICE, "building": "lab",
            "category": "01000", "energy_type": "electricity"}
    lines = [line("meter", tags, {"active_energy_import_kwh": _counter(t, swap, first),
                                  "active_power_kw": RATE, "seq": i}, t)
             for i, t in enumerate(times)]
    site = Site.model_validate({"site": SITE, "timezone": "Asia/Shanghai", "buildings": [{
        "id": "lab", "floor_area_m2": 1000, "meters": [{
            "id": DEVICE, "gateway": GW, "device": DEVICE, "energy_type": "electricity",
            "building_total": True, "poll_interval_s": 3600,
            "replacements": [{"at": swap, "old_final": 4000.0 + RATE * (swap - first) / H,
                              "new_initial": 100.0}]}]}]})
    influx = InfluxConfig(url=loaded.url, database=DB)

    async def load() -> None:
        q, w = InfluxQL(influx), InfluxV1Writer(influx)
        try:
            await q.create_database()
            await w.write(lines)
        finally:
            await q.close()
            await w.close()
    asyncio.run(load())
    work = tmp_path_factory.mktemp("lab")
    site_path = work / "site.yaml"
    site_path.write_text(yaml.safe_dump(site.model_dump(mode="json"), allow_unicode=True),
                         encoding="utf-8")
    cfg_path = work / "inspector.yaml"
    cfg_path.write_text(yaml.safe_dump({
        "influx": {"url": loaded.url, "database": DB}, "sites": [str(site_path)],
        "tokens": [{"name": "wang.inspector", "role": "inspector",
                    "sha256": token_hash(INSPECTOR_TOKEN)}]}), encoding="utf-8")
    cfg = InspectorConfig(influx=influx, sites=[site_path], tokens=[TokenEntry(
        name="wang.inspector", role="inspector", sha256=token_hash(INSPECTOR_TOKEN))])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    t = threading.Thread(target=server.run, name="lab-api", daemon=True)
    t.start()
    wait_until(lambda: server.started or not t.is_alive(), timeout=60, what="lab API start")
    assert server.started, "the lab API did not start"
    try:
        yield Lab(f"http://127.0.0.1:{port}", loaded.url, cfg_path, first, dense, last,
                  (o0 - Q, o1), swap, len(times))
    finally:
        server.should_exit = True
        t.join(30)


def _history(lab: Lab, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{lab.url}/api/v1/sites/{SITE}/meters/{DEVICE}/history", params=params,
                  headers=auth(INSPECTOR_TOKEN), timeout=60)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# ------------------------------------------------------------------ pure


def test_expected_spacing_is_the_poll_interval_not_the_median() -> None:
    # 20 hourly readings, then 40 at 15 minutes with a 3 h hole: the median is 15 min,
    # which made every hourly spacing a "gap"; against the 1 h poll only the hole is one
    times = [*range(0, 20 * H, H), *(t for t in range(20 * H, 30 * H, Q)
                                     if not 24 * H <= t < 27 * H)]
    rows = [{"time": t, "active_power_kw": 1.0} for t in times]
    h = hist.raw_history(site="s", device="d", start=0, end=30 * H, tz="UTC",
                         fields=["active_power_kw"], rows=rows, poll_interval_s=3600)
    assert h.gaps == [hist.Gap(24 * H - Q, 27 * H)]
    assert h.interval_ms == H and h.meta["interval_source"] == "site file poll_interval_s"
    assert h.stretches() == [(0, 24 * H - Q), (27 * H, 30 * H)]
    # the tolerance is explicit: 2.5 polls of silence is not yet a gap, more is
    assert hist.find_gaps([0, int(2.5 * H)], 0, int(2.5 * H), interval_ms=H) == []
    assert len(hist.find_gaps([0, int(2.5 * H) + 1], 0, int(2.5 * H) + 1, interval_ms=H)) == 1


# ------------------------------------------------------------------ real influxd, API, CLI


@pytest.mark.slow
def test_api_shows_the_one_outage_and_ends_now(lab: Lab) -> None:
    before = int(time.time() * 1000)
    h = _history(lab, start=str(lab.first))  # no end: the range ends now
    after = int(time.time() * 1000)
    assert before <= h["end"] <= after
    assert h["readings"] == lab.readings
    assert [(g["start"], g["end"]) for g in h["gaps"]] == [lab.outage]
    assert h["interval_s"] == 3600 and h["gap_tolerance"] == 2.5
    assert h["stretches"] == [[lab.first, lab.outage[0]], [lab.outage[1], h["end"]]]
    # asking for a range that runs into the future shows no gap in the future either
    ahead = _history(lab, start=str(lab.first), end=str(after + 2 * 86_400_000))
    assert ahead["end"] <= int(time.time() * 1000)
    assert [(g["start"], g["end"]) for g in ahead["gaps"]] == [lab.outage]


@pytest.mark.slow
def test_hourly_consumption_treats_the_recorded_swap_as_a_swap(lab: Lab) -> None:
    h = _history(lab, start=str(lab.first), mode="hour")
    col = "active_energy_import_kwh_consumption"
    total = sum(r[col] or 0.0 for r in h["rows"])
    # constant use: the truth is RATE × the hours between the first and the last reading
    assert total == pytest.approx(RATE * (lab.last - lab.first) / H, rel=1e-9)
    swap_hour = next(r for r in h["rows"] if r["time"] <= lab.swap < r["time"] + H)
    assert swap_hour[col] == pytest.approx(RATE, rel=1e-9)


@pytest.mark.slow
def test_cli_agrees_with_the_api(lab: Lab) -> None:
    api = _history(lab, start=str(lab.first))
    r = subprocess.run([sys.executable, "-m", "enmon", "history", SITE, DEVICE, "--from",
                        str(lab.first), "-c", str(lab.cfg_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{api['readings']} readings" in r.stdout
    assert f"{len(api['gaps'])} gap(s)" in r.stdout and len(api["gaps"]) == 1
    assert "expected every 1 h 0 min (site file poll_interval_s)" in r.stdout
    g0, g1 = lab.outage
    gap_lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("gap ")]
    assert gap_lines == [f"  gap {hist.local_iso(g0, 'Asia/Shanghai')} → "
                         f"{hist.local_iso(g1, 'Asia/Shanghai')} (5 h 15 min)"]


# ------------------------------------------------------------------ the console


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install "
                                                  "chromium)")
def test_console_draws_every_stretch_and_its_default_range_ends_now(lab: Lab,
                                                                    artifacts: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_FLAGS,
                                     headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(lab.url + "/", timeout=30_000)
            page.fill("#token", INSPECTOR_TOKEN)
            page.click("#login-form button[type=submit]")
            expect(page.locator("#tree[data-loaded='1']")).to_have_count(1, timeout=15_000)
            with page.expect_response(lambda r: "/history?" in r.url, timeout=30_000) as resp:
                page.locator(f"a.meter-link[data-device='{DEVICE}']").click()
            opened = int(time.time() * 1000)
            h = resp.value.json()
            assert h["end"] <= opened  # the default range ends now, not a day ahead
            expect(page.locator("#history-svg path.series")).to_have_count(1, timeout=20_000)
            expect(page.locator("#summary")).to_contain_text("1 gap(s)")
            expect(page.locator("#history-svg rect.gap")).to_have_count(1)
            d = page.locator("#history-svg path.series").get_attribute("d") or ""
            # one line per stretch: the hourly history joined to the 15-minute data up to
            # the outage, and the 15-minute data after it
            drawn = sum(1 for r in h["rows"] if r.get("active_power_kw") is not None)
            assert d.count("M") == 2 and d.count("L") == drawn - 2
            assert sum(1 for r in h["rows"] if r["time"] < lab.dense) > 24  # hourly part shown
            page.screenshot(path=str(artifacts / "inspector-history-stretches.png"),
                            full_page=True)
            assert errors == []
        finally:
            browser.close()
