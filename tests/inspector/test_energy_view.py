"""The console's per-building energy view over the API: its figures are the report's.

On the session's stored days (``loaded``/``stack``: three simulated days of October 2026 in
a real influxd), the view's month bucket of a building equals the monthly report's total
and sub-items of that building, its day buckets the report's daily figures, an ISO week
starts on Monday 00:00 in Asia/Shanghai, and the comparisons (previous period, a year
before) are the same function over the other buckets: no figure where nothing was read.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from enmon.influx import InfluxConfig, InfluxQL
from inspector import energyview as ev
from inspector.report import Report, period_of
from inspector.store import Store, fetch_report
from tests.inspector.conftest import DB, INSPECTOR_TOKEN, MONTH, Loaded, Stack, auth

SH = ZoneInfo("Asia/Shanghai")
SITE = "demo-campus"


def _ms(y: int, m: int, d: int, h: int = 0) -> int:
    return int(dt.datetime(y, m, d, h, tzinfo=SH).timestamp() * 1000)


@pytest.fixture(scope="module")
def report(loaded: Loaded) -> Report:
    async def go() -> Report:
        store = Store(InfluxQL(InfluxConfig(url=loaded.url, database=DB)))
        try:
            return await fetch_report(store, site=loaded.data.site, period=MONTH,
                                      now_ms=period_of(MONTH, "Asia/Shanghai").end)
        finally:
            await store.close()
    return asyncio.run(go())


def _view(stack: Stack, building: str, **params: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/api/v1/sites/{SITE}/buildings/{building}/energy",
                     params=params, headers=auth(INSPECTOR_TOKEN), timeout=60)


@pytest.mark.parametrize("building", ["hospital", "mall", "school"])
def test_the_month_bucket_is_the_monthly_reports_figure(stack: Stack, report: Report,
                                                        building: str) -> None:
    r = _view(stack, building, every="month", start="2026-10-01", end="2026-11-01", lang="en")
    assert r.status_code == 200, r.text
    v = r.json()
    rb = next(b for b in report.buildings if b.id == building)
    elec = next(e for e in rb.energy if e.energy_type == "electricity")
    [bucket] = v["buckets"]
    assert bucket["start"] == _ms(2026, 10, 1) and bucket["end"] == _ms(2026, 11, 1)
    assert bucket["label"] == "October 2026" and not bucket["partial"]
    assert bucket["total"] == elec.amount  # the same function over the same readings
    assert bucket["parts"] == {code: kwh for code, _name, kwh in rb.subitems}
    assert [s["code"] for s in v["series"]] == [code for code, _n, _k in rb.subitems]
    assert v["unit"] == "kWh" and v["totals"]["current"] == elec.amount
    # nothing was stored in September or in October 2025: no figure, no change, never 0
    assert v["previous"][0]["label"] == "September 2026" and v["previous"][0]["total"] is None
    assert v["last_year"][0]["label"] == "October 2025" and v["last_year"][0]["total"] is None
    assert bucket["mom"] is None and bucket["yoy"] is None


def test_the_day_buckets_are_the_reports_daily_figures_and_compare_with_the_day_before(
        stack: Stack, report: Report) -> None:
    r = _view(stack, "hospital", every="day", start="2026-10-02", end="2026-10-04")
    assert r.status_code == 200, r.text
    v = r.json()
    rb = next(b for b in report.buildings if b.id == "hospital")
    days = [b["start"] for b in v["buckets"]]
    assert days == [_ms(2026, 10, 2), _ms(2026, 10, 3)]
    assert [b["label"] for b in v["buckets"]] == ["10月2日", "10月3日"]  # zh-CN by default
    for b in v["buckets"]:
        assert b["total"] == pytest.approx(rb.daily[b["start"]]["electricity"], rel=1e-12)
        parts = b["parts"]
        assert sum(parts.values()) == pytest.approx(b["total"], rel=1e-9)
        assert parts[""] == pytest.approx(b["total"] - sum(v for c, v in parts.items() if c))
    # the previous period: the two days before (30 Sep: nothing stored; 1 Oct)
    assert [p["start"] for p in v["previous"]] == [_ms(2026, 9, 30), _ms(2026, 10, 1)]
    assert v["previous"][0]["total"] is None
    oct1 = rb.daily[_ms(2026, 10, 1)]["electricity"]
    assert v["previous"][1]["total"] == pytest.approx(oct1, rel=1e-12)
    assert v["buckets"][0]["mom"] is None
    assert v["buckets"][1]["mom"] == pytest.approx(
        (v["buckets"][1]["total"] - oct1) / oct1, rel=1e-9)
    assert v["last_year"][1]["start"] == _ms(2025, 10, 3)
    names = {s["code"]: s["name"] for s in v["series"]}
    assert names["01A00"] == "照明插座用电" and names[""].startswith("未分项")


def test_a_week_starts_on_monday_in_site_time(stack: Stack, report: Report) -> None:
    r = _view(stack, "mall", every="week", start="2026-10-01", end="2026-10-04", lang="en")
    assert r.status_code == 200, r.text
    v = r.json()
    [week] = v["buckets"]
    # 1 October 2026 is a Thursday: its ISO week is Monday 28 September 00:00 Shanghai
    # (27 September 16:00 UTC) to Monday 5 October
    assert week["start"] == _ms(2026, 9, 28) == int(dt.datetime(
        2026, 9, 27, 16, tzinfo=dt.UTC).timestamp() * 1000)
    assert week["end"] == _ms(2026, 10, 5)
    assert week["label"].startswith("week 40 (")
    # every stored reading of the mall lies in that week and in October
    rb = next(b for b in report.buildings if b.id == "mall")
    assert week["total"] == pytest.approx(rb.energy[0].amount, rel=1e-12)
    assert v["previous"][0]["start"] == _ms(2026, 9, 21)
    assert v["last_year"][0]["start"] == _ms(2025, 9, 29)  # 52 weeks: a Monday again
    assert dt.datetime.fromtimestamp(v["last_year"][0]["start"] / 1000, SH).weekday() == 0


def test_water_has_no_subitems_and_bad_requests_are_refused(stack: Stack) -> None:
    r = _view(stack, "school", energy_type="water", every="day", start="2026-10-01",
              end="2026-10-04")
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["unit"] == "m³" and v["series"] == [] and len(v["buckets"]) == 3
    assert all(b["total"] is not None and b["parts"] == {} for b in v["buckets"])
    too_long = _view(stack, "school", every="month", start="2025-01-01", end="2026-03-01")
    assert too_long.status_code == 422 and too_long.json()["detail"].startswith("每次最多 400 天")
    en = _view(stack, "school", every="day", start="2025-01-01", end="2026-03-01", lang="en")
    assert en.status_code == 422 and "at most 400 days" in en.json()["detail"]
    assert _view(stack, "nosuch").status_code == 404
    gas = _view(stack, "school", energy_type="gas")  # the refusal names what it does meter
    assert gas.status_code == 422 and gas.json()["detail"] == (
        "建筑 school 没有天然气总表；其总表计量：电、水")
    assert _view(stack, "school", every="hour").status_code == 422
    assert _view(stack, "school", start="2099-01-01").status_code == 422
    assert httpx.get(f"{stack.url}/api/v1/sites/{SITE}/buildings/school/energy",
                     timeout=30).status_code == 401


def test_a_running_bucket_is_compared_with_as_much_of_the_other() -> None:
    """Pure: a month still running stops at now, and its comparisons at as many days."""
    now = _ms(2026, 12, 3, 7)
    span = ev.buckets("month", _ms(2026, 11, 1), None, now, "Asia/Shanghai")
    assert span.current == [(_ms(2026, 11, 1), _ms(2026, 12, 1)),
                            (_ms(2026, 12, 1), _ms(2027, 1, 1))]
    assert span.partial and span.end == now
    assert span.previous[1] == (_ms(2026, 10, 1), _ms(2026, 11, 1))
    assert span.cut(1, span.previous[1]) == _ms(2026, 10, 3, 7)
    assert span.cut(0, span.previous[0]) == span.previous[0][1]
    leap = ev.buckets("day", _ms(2028, 2, 29), _ms(2028, 3, 1), _ms(2029, 1, 1), "Asia/Shanghai")
    assert leap.last_year == [(_ms(2027, 2, 28), _ms(2027, 3, 1))]
    with pytest.raises(ev.ViewError, match="400 days"):
        ev.buckets("day", _ms(2025, 1, 1), _ms(2026, 3, 1), now, "Asia/Shanghai")


def test_the_running_month_stops_at_now_over_the_api(stack: Stack) -> None:
    """This month (the clock's) is still running: the view says so, and a month nothing was
    read in has no figure, never 0."""
    r = _view(stack, "admin", every="month", start="2026-09-01")
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["partial"] and v["buckets"][-1]["partial"]
    assert v["buckets"][-1]["until"] == v["end"] < v["buckets"][-1]["end"]
    october = next(b for b in v["buckets"] if b["start"] == _ms(2026, 10, 1))
    assert october["total"] is not None and october["total"] > 0
    assert v["buckets"][0]["total"] is None  # September 2026: nothing stored
    assert not v["totals"]["complete"]["current"] and v["totals"]["mom"] is None


def test_weeks_over_a_daylight_saving_change_start_on_local_mondays() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    start = int(dt.datetime(2026, 3, 25, tzinfo=berlin).timestamp() * 1000)
    end = int(dt.datetime(2026, 4, 2, tzinfo=berlin).timestamp() * 1000)
    span = ev.buckets("week", start, end, end + 30 * ev.DAY_MS, "Europe/Berlin")
    mondays = [dt.datetime.fromtimestamp(s / 1000, berlin) for s, _ in span.current]
    assert [(d.month, d.day, d.hour, d.weekday()) for d in mondays] == [(3, 23, 0, 0),
                                                                      (3, 30, 0, 0)]
    assert span.current[0][1] - span.current[0][0] == 167 * ev.HOUR_MS  # the short week


# a tariff changing band at 11:30: the month report reads counters per half hour
HALF_HOUR_TARIFF = {
    "id": "half-hour", "source": "test tariff with a band change at 11:30", "mark": "U",
    "seasons": [{"months": list(range(1, 13)), "periods": [
        {"start": "00:00", "end": "11:30", "band": "flat"},
        {"start": "11:30", "end": "12:00", "band": "peak"},
        {"start": "12:00", "end": "24:00", "band": "flat"}]}],
    "prices": [{"valid_from": "2026-01-01", "prices": {"flat": 0.5, "peak": 2.0}}]}


async def test_the_view_reads_at_the_reports_step_on_a_half_hour_tariff(influxdb: Any) -> None:
    """Hourly readings taken at :45 on a site whose tariff changes band at 11:30: the report
    reads the first reading of each half hour, and so must the view, or a bucket's edge
    falls on another reading (15 minutes earlier) and the month differs from the report's."""
    from energy.site import Site as SiteModel
    from enmon.influx import InfluxV1Writer
    from enmon.lineproto import line

    site = SiteModel.model_validate({
        "site": "s", "timezone": "Asia/Shanghai", "tariffs": {"electricity": "half-hour"},
        "tariff_definitions": [HALF_HOUR_TARIFF],
        "buildings": [{"id": "b1", "floor_area_m2": 1000, "meters": [
            {"id": "main", "gateway": "gw", "device": "main", "energy_type": "electricity",
             "category": "01000", "building_total": True, "poll_interval_s": 3600},
            {"id": "light", "gateway": "gw", "device": "light", "energy_type": "electricity",
             "category": "01A00", "poll_interval_s": 3600}]}]})
    cfg = InfluxConfig(url=influxdb.url, database="enmon")
    w, q = InfluxV1Writer(cfg), InfluxQL(cfg)
    t0 = _ms(2026, 10, 30) + 45 * 60_000
    pts = []
    for i in range(24 * 5):  # 30 Oct to 4 Nov, a rising rate so every hour differs
        for dev, share in (("main", 1.0), ("light", 0.3)):
            pts.append(line("meter", {"site": "s", "gateway": "gw", "device": dev,
                                      "building": "b1", "energy_type": "electricity"},
                            {"active_energy_import_kwh": share * (1000.0 + i * i)},
                            t0 + i * ev.HOUR_MS))
    now = _ms(2026, 12, 1)
    try:
        await w.write(pts)
        rep = await fetch_report(Store(q), site=site, period="2026-11", now_ms=now,
                                 compare=False)
        v = await ev.fetch_view(Store(q), site=site, building="b1", energy_type="electricity",
                                every="month", start=_ms(2026, 11, 1), end=now, now_ms=now)
        days = await ev.fetch_view(Store(q), site=site, building="b1",
                                   energy_type="electricity", every="day",
                                   start=_ms(2026, 11, 1), end=_ms(2026, 11, 4), now_ms=now)
    finally:
        await w.close()
        await q.close()
    rb = rep.buildings[0]
    [month] = v.current
    assert month.total == rb.energy[0].amount
    assert month.parts == {code: kwh for code, _n, kwh in rb.subitems}
    for f in days.current:
        assert f.total == pytest.approx(rb.daily[f.start]["electricity"], rel=1e-12)
