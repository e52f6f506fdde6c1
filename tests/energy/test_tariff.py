"""Time-of-use cost, worked by hand.

The tariff in these tests (November, so the non-summer periods): valley 22:00-06:00
(8 h), flat 06:00-08:00, 11:00-18:00, 21:00-22:00 (10 h), peak 08:00-11:00 and
18:00-21:00 (6 h). A steady 4 kW load is 1 kWh per 15 minutes: 32 kWh valley, 40 kWh
flat and 24 kWh peak a day.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from energy import accounting, figures, tariff
from energy.site import Site
from enmon.errors import ConfigError

TZ = ZoneInfo("Asia/Shanghai")
Q = 15 * 60_000


def _ms(*a: int) -> int:
    return int(dt.datetime(*a, tzinfo=TZ).timestamp() * 1000)  # type: ignore[arg-type,misc]


PERIODS = [
    {"start": "22:00", "end": "06:00", "band": "valley"},
    {"start": "06:00", "end": "08:00", "band": "flat"},
    {"start": "08:00", "end": "11:00", "band": "peak"},
    {"start": "11:00", "end": "18:00", "band": "flat"},
    {"start": "18:00", "end": "21:00", "band": "peak"},
    {"start": "21:00", "end": "22:00", "band": "flat"},
]


def _tariff(**over: Any) -> tariff.Tariff:
    d: dict[str, Any] = {
        "id": "t", "source": "test tariff", "mark": "user",
        "seasons": [{"months": list(range(1, 13)), "periods": PERIODS}],
        # the price list changes at midnight, 2 November
        "prices": [{"valid_from": "2026-11-02",
                    "prices": {"peak": 1.2, "flat": 0.7, "valley": 0.25}},
                   {"valid_from": "2026-11-01",
                    "prices": {"peak": 1.0, "flat": 0.6, "valley": 0.3}}],
    }
    d.update(over)
    return tariff.Tariff.model_validate(d)


def _steady(start: int, end: int, step: int = Q, kwh_per_step: float = 1.0
            ) -> list[accounting.Interval]:
    pts = [(t, 1000.0 + (t - start) / step * kwh_per_step) for t in range(start, end + 1, step)]
    return accounting.intervals(pts)


def test_two_days_of_15_minute_readings_across_bands_and_a_price_change_at_midnight() -> None:
    t = _tariff()
    start, end = _ms(2026, 11, 1), _ms(2026, 11, 3)
    ivs = _steady(start, end)
    c = tariff.cost(tariff.split(ivs, t, TZ, start, end), t)
    by = {(ln.band, str(ln.valid_from)): (round(ln.amount, 9), ln.price) for ln in c.lines}
    assert by == {
        ("peak", "2026-11-01"): (24.0, 1.0), ("flat", "2026-11-01"): (40.0, 0.6),
        ("valley", "2026-11-01"): (32.0, 0.3),
        ("peak", "2026-11-02"): (24.0, 1.2), ("flat", "2026-11-02"): (40.0, 0.7),
        ("valley", "2026-11-02"): (32.0, 0.25),
    }
    # day 1: 24×1.0 + 40×0.6 + 32×0.3 = 57.6; day 2: 24×1.2 + 40×0.7 + 32×0.25 = 64.8
    assert c.energy_cost == pytest.approx(122.4)
    assert c.unpriced == 0 and c.demand_cost == 0


def test_an_interval_across_a_band_boundary_is_split_exactly() -> None:
    t = _tariff()
    # 07:30 → 08:30 read 100 → 110: half flat (before 08:00), half peak
    ivs = accounting.intervals([(_ms(2026, 11, 5, 7, 30), 100.0), (_ms(2026, 11, 5, 8, 30), 110.0)])
    s = {x.band: x.amount for x in tariff.split(ivs, t, TZ, 0, 2**62)}
    assert s == pytest.approx({"flat": 5.0, "peak": 5.0})
    # hourly readings of the same steady load cost what 15-minute ones cost
    start, end = _ms(2026, 11, 1, 0, 30), _ms(2026, 11, 2, 0, 30)  # hours not on boundaries
    fine = tariff.cost(tariff.split(_steady(start, end), t, TZ, start, end), t)
    coarse = tariff.cost(tariff.split(_steady(start, end, 4 * Q, 4.0), t, TZ, start, end), t)
    assert coarse.energy_cost == pytest.approx(fine.energy_cost)


def test_the_slices_add_up_to_the_consumption() -> None:
    rnd = random.Random(7)
    t = _tariff()
    ts, v, pts = _ms(2026, 10, 31, 20), 0.0, []
    for _ in range(400):
        ts += rnd.randint(1, 200) * 60_000
        v += rnd.random() * 10
        pts.append((ts, v))
    ivs = accounting.intervals(pts)
    start, end = _ms(2026, 11, 1, 3, 17), _ms(2026, 11, 20, 13, 41)
    total = sum(s.amount for s in tariff.split(ivs, t, TZ, start, end))
    assert total == pytest.approx(accounting.consumption(ivs, start, end))


def test_a_month_with_a_maximum_demand_charge() -> None:
    assert tariff.find("example-tou-industrial-10kv").demand.price == 38.0  # type: ignore[union-attr]
    start, end = _ms(2026, 11, 1), _ms(2026, 12, 1)
    pts = []
    v = 0.0
    for i, ts in enumerate(range(start, end + 1, Q)):
        pts.append((ts, v))
        # one 15-minute window (10:00-10:15 on 12 Nov) draws 3 kWh: 12 kW; all others 4 kW
        v += 3.0 if ts == _ms(2026, 11, 12, 10) else 1.0
        assert i < 3000
    ivs = accounting.intervals(pts)
    assert tariff.max_demand_kw(ivs, start, end) == pytest.approx(12.0)
    site = _site(tariffs={"electricity": "example-tou-industrial-10kv"})
    c = figures.building_cost(site, site.buildings[0], "electricity", ivs, start, end,
                              billing_months=1)
    assert c is not None and c.tariff == "example-tou-industrial-10kv"
    assert c.demand_kw == pytest.approx(12.0)
    assert c.demand_cost == pytest.approx(12.0 * 38.0)
    # 30 days × (24 peak × 1.05 + 40 flat × 0.65 + 32 valley × 0.29) + 2 kWh more at peak
    assert c.energy_cost == pytest.approx(30 * (24 * 1.05 + 40 * 0.65 + 32 * 0.29) + 2 * 1.05)
    assert c.total == pytest.approx(c.energy_cost + c.demand_cost)
    assert c.mark == "U"  # an illustrative shipped tariff says so


def test_a_capacity_charge_uses_the_contracted_kva() -> None:
    own = _tariff(id="own-capacity", demand={"basis": "capacity", "price": 25.0})
    site = _site(tariffs={"electricity": "own-capacity"}, contracted_kva=630,
                 definitions=[own])
    start, end = _ms(2026, 11, 1), _ms(2026, 12, 1)
    c = figures.building_cost(site, site.buildings[0], "electricity", _steady(start, end),
                              start, end, billing_months=1)
    assert c is not None and c.demand_cost == pytest.approx(630 * 25.0)
    day = figures.building_cost(site, site.buildings[0], "electricity", _steady(start, end),
                                start, start + 86_400_000)  # a day carries no demand charge
    assert day is not None and day.demand_cost == 0


def test_a_meter_replaced_mid_month_is_costed_on_both_meters() -> None:
    site = _site(tariffs={"electricity": "own"}, definitions=[_tariff(id="own")],
                 replacements=[{"at": _ms(2026, 11, 1, 12, 7), "old_final": 1048.0,
                                "new_initial": 5.0}])
    m = site.buildings[0].meters[0]
    start, end = _ms(2026, 11, 1), _ms(2026, 11, 2)
    # old meter 1000 → 1048 by 12:00 (steady 1 kWh/15 min); new meter from 5 at the swap
    pts = [(t, 1000.0 + (t - start) / Q) for t in range(start, _ms(2026, 11, 1, 12) + 1, Q)]
    pts += [(t, 5.0 + (t - _ms(2026, 11, 1, 12)) / Q)
            for t in range(_ms(2026, 11, 1, 12, 15), end + 1, Q)]
    ivs = figures.meter_intervals(m, pts)
    c = figures.building_cost(site, site.buildings[0], "electricity", ivs, start, end)
    assert c is not None
    assert sum(ln.amount for ln in c.lines) == pytest.approx(96.0)  # 1 kWh per 15 min all day
    assert c.energy_cost == pytest.approx(24 * 1.0 + 40 * 0.6 + 32 * 0.3)


def test_a_building_overrides_the_sites_tariff_and_no_tariff_is_no_cost() -> None:
    site = _site(tariffs={"electricity": "a"}, definitions=[_tariff(id="a"), _tariff(id="b")],
                 building_tariffs={"electricity": "b"})
    assert figures.tariff_of(site, site.buildings[0], "electricity").id == "b"  # type: ignore[union-attr]
    assert figures.tariff_of(site, site.buildings[0], "gas") is None


def test_bad_tariffs_are_refused_with_the_reason() -> None:
    holes = [p for p in PERIODS if p["start"] != "11:00"]
    with pytest.raises(ValidationError, match="11:00 is not covered"):
        _tariff(seasons=[{"months": list(range(1, 13)), "periods": holes}])
    with pytest.raises(ValidationError, match="lack band"):
        _tariff(prices=[{"valid_from": "2026-01-01", "prices": {"peak": 1.0, "flat": 0.6}}])
    with pytest.raises(ValidationError, match="every month"):
        _tariff(seasons=[{"months": [1, 2], "periods": PERIODS}])
    with pytest.raises(ValidationError, match="HH:MM"):
        _tariff(seasons=[{"months": list(range(1, 13)),
                          "periods": [{"start": "25:00", "end": "06:00", "band": "valley"}]}])
    with pytest.raises(ConfigError, match="no tariff 'nosuch'"):
        tariff.find("nosuch")


def test_no_price_yet_is_shown_as_unpriced_not_free() -> None:
    t = _tariff()
    start, end = _ms(2026, 10, 31), _ms(2026, 11, 1)  # before the first price list
    c = tariff.cost(tariff.split(_steady(start, end), t, TZ, start, end), t)
    assert c.unpriced == pytest.approx(96.0) and c.energy_cost == 0
    assert all(ln.cost is None for ln in c.lines)


def _site(*, tariffs: dict[str, str], definitions: list[tariff.Tariff] | None = None,
          contracted_kva: float | None = None, replacements: list[dict[str, Any]] | None = None,
          building_tariffs: dict[str, str] | None = None) -> Site:
    b: dict[str, Any] = {
        "id": "b", "floor_area_m2": 1000, "tariffs": building_tariffs or {},
        "meters": [{"id": "m", "gateway": "g", "device": "d", "energy_type": "electricity",
                    "building_total": True, "poll_interval_s": 900,
                    "replacements": replacements or []}]}
    if contracted_kva:
        b["contracted_kva"] = contracted_kva
    return Site.model_validate({
        "site": "s", "buildings": [b], "tariffs": tariffs,
        "tariff_definitions": [d.model_dump(mode="json") for d in definitions or []]})


def test_the_hours_cost_adds_up_to_the_periods_cost_across_a_half_hour_boundary() -> None:
    """The roll-ups price each hour (figures.hourly_cost); a month of hours is the month."""
    half = [*PERIODS[:2], {"start": "08:00", "end": "10:30", "band": "peak"},
            {"start": "10:30", "end": "18:00", "band": "flat"}, *PERIODS[4:]]
    own = _tariff(id="half", seasons=[{"months": list(range(1, 13)), "periods": half}],
                  demand={"basis": "max_demand", "price": 38.0})
    site = _site(tariffs={"electricity": "half"}, definitions=[own])
    b = site.buildings[0]
    rnd = random.Random(3)
    start, end = _ms(2026, 11, 1), _ms(2026, 11, 4)
    ts, v, pts = start - 7 * 60_000, 0.0, []
    while ts < end + Q:
        pts.append((ts, v))
        ts += rnd.randint(5, 70) * 60_000
        v += rnd.random() * 5
    ivs = accounting.intervals(pts)
    hours = figures.hourly_cost(site, b, "electricity", ivs, start, end)
    assert len(hours) == 72 and min(hours) == start
    whole = figures.building_cost(site, b, "electricity", ivs, start, end, billing_months=1)
    assert whole is not None
    assert sum(c.energy_cost for c in hours.values()) == pytest.approx(whole.energy_cost)
    assert all(c.demand_cost == 0 for c in hours.values())  # billed per month only
    # the hour 10:00-11:00 on 2 Nov is half peak, half flat, at the new prices
    h = hours[_ms(2026, 11, 2, 10)]
    assert {ln.band for ln in h.lines} == {"peak", "flat"}
    assert {ln.price for ln in h.lines} == {1.2, 0.7}
    amounts = accounting.rollup(ivs, "hour", TZ)
    assert sum(ln.amount for ln in h.lines) == pytest.approx(amounts[_ms(2026, 11, 2, 10)])
    assert figures.cost_bands(site, b, "electricity") == ("peak", "flat", "valley")
    assert figures.hourly_cost(site, b, "gas", ivs, start, end) == {}


def test_a_subitems_cost_is_its_energy_charge_on_the_buildings_tariff() -> None:
    site = _site(tariffs={"electricity": "own"}, definitions=[
        _tariff(id="own", demand={"basis": "max_demand", "price": 38.0})])
    b = site.buildings[0]
    start, end = _ms(2026, 11, 1), _ms(2026, 12, 1)
    whole = _steady(start, end)
    hvac = _steady(start, end, kwh_per_step=0.25)  # a quarter of the load
    c = figures.subitem_cost(site, b, "electricity", hvac, start, end)
    w = figures.building_cost(site, b, "electricity", whole, start, end, billing_months=1)
    assert c is not None and w is not None
    assert c.demand_cost == 0 and w.demand_cost > 0  # demand is billed at the supply point
    assert c.energy_cost == pytest.approx(w.energy_cost / 4)
    assert figures.not_submetered(w.energy_cost, [c.energy_cost]) == pytest.approx(
        w.energy_cost * 3 / 4)


def test_the_hours_follow_the_zones_clock_on_a_daylight_saving_day() -> None:
    """A zone that changes its offset (a site abroad): the hours are the roll-up's hours."""
    berlin = ZoneInfo("Europe/Berlin")
    t = _tariff()
    start = int(dt.datetime(2026, 10, 24, tzinfo=berlin).timestamp() * 1000)
    end = int(dt.datetime(2026, 10, 27, tzinfo=berlin).timestamp() * 1000)  # 25 Oct has 25 h
    ivs = _steady(start - Q, end + Q)
    hours = tariff.split_hours(ivs, t, berlin, start, end)
    amounts = {h: v for h, v in accounting.rollup(ivs, "hour", berlin).items()
               if start <= h < end}
    assert len(hours) == 73 and sorted(hours) == sorted(amounts)
    for h, slices in hours.items():
        assert sum(x.amount for x in slices) == pytest.approx(amounts[h])
    whole = {(x.band, x.valid_from): x.amount for x in tariff.split(ivs, t, berlin, start, end)}
    summed: dict[tuple[str, Any], float] = {}
    for slices in hours.values():
        for x in slices:
            summed[(x.band, x.valid_from)] = summed.get((x.band, x.valid_from), 0.0) + x.amount
    assert summed == pytest.approx(whole)


def test_site_tariffs_is_tariff_of_for_every_building_and_energy_type() -> None:
    site = _site(tariffs={"electricity": "a"}, definitions=[_tariff(id="a"), _tariff(id="b")],
                 building_tariffs={"electricity": "b"})
    got = figures.site_tariffs(site)
    assert got == {("b", "electricity"): figures.tariff_of(site, site.buildings[0],
                                                           "electricity")}
    assert got[("b", "electricity")].id == "b"  # type: ignore[union-attr]
