"""energy.figures: the decisions every surface used to make on its own, made once.

Worked examples with numbers derived by hand (in the comments) from the site's
settings, not from the functions under test.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from energy import figures, quota
from energy.site import Site

TZ = ZoneInfo("Asia/Shanghai")
H = 3_600_000


def _ms(*a: int) -> int:
    return int(dt.datetime(*a, tzinfo=TZ).timestamp() * 1000)


def _site(**building: object) -> Site:
    b = {"id": "b", "floor_area_m2": 1000, "quota": {
        "value": 100, "unit": "kWh/(m2·a)", "source": "test quota"},
        "meters": [{"id": "m", "gateway": "g", "device": "d", "energy_type": "electricity",
                    "building_total": True, "poll_interval_s": 900,
                    "replacements": [{"at": _ms(2026, 3, 1, 12), "old_final": 5000.0,
                                      "new_initial": 10.0}]}]}
    b.update(building)
    return Site.model_validate({"site": "s", "buildings": [b]})


def test_a_period_still_running_ends_now() -> None:
    start, end, now = _ms(2026, 12, 1), _ms(2027, 1, 1), _ms(2026, 12, 2, 15, 47)
    span = figures.clamp(start, end, now)
    assert (span.start, span.end, span.full_end, span.partial) == (start, now, end, True)
    done = figures.clamp(start, end, end + 1)
    assert done.end == end and not done.partial
    with pytest.raises(ValueError):
        figures.clamp(start, end, start)


def test_completeness_owes_no_future_readings() -> None:
    # 1 Dec 00:00 to 2 Dec 15:45 is 39.75 h: 159 readings at 15 minutes
    start, now = _ms(2026, 12, 1), _ms(2026, 12, 2, 15, 45)
    c = figures.meter_completeness(159, start, now, 900)
    assert c.expected == 159 and c.ratio == 1.0
    assert figures.meter_completeness(10, start, start, 900).ratio is None
    assert figures.meter_completeness(500, start, now, 900).ratio == 1.0  # capped
    assert figures.batch_completeness(45, 50).ratio == pytest.approx(0.9)


def test_replacement_is_applied_wherever_the_meter_is_read() -> None:
    m = _site().buildings[0].meters[0]
    swap = m.replacements[0].at
    pts = [(swap - H, 4990.0), (swap + H, 30.0)]
    ivs = figures.meter_intervals(m, pts)
    # 10 kWh on the old meter after the first reading, 20 on the new one: 30, not a reset
    assert [(iv.kind, iv.amount) for iv in ivs] == [("replacement", 30.0)]


def test_quota_at_now_agrees_with_the_rule_engine_formula() -> None:
    """100 kWh/(m²·a) on 1 000 m²: 100 000 kWh a year. 93 000 kWh by 2 Dec 15:47 is
    92.0 % of the year due, so it projects to 101 130 kWh: the early warning."""
    site = _site()
    b = site.buildings[0]
    now = _ms(2026, 12, 2, 15, 47)
    at = figures.quota_at(b, ytd=93_000.0, at_ms=now, tz=TZ)
    # the default profile is proportional to time: 335 days and 15 h 47 min of 365 days
    frac = (335 + (15 + 47 / 60) / 24) / 365
    assert at.status.fraction == pytest.approx(frac)
    assert at.status.projected == pytest.approx(93_000.0 / frac)
    assert at.status.allowance == pytest.approx(100_000.0)
    assert at.status.state == "early_warning"
    assert at.ytd_intensity == pytest.approx(93.0)
    assert at.limit.source == "test quota" and at.limit.mark == "user"
    # evaluated at the month's end instead (what the report did), the share due is 100 %
    # and the projection is the year-to-date itself: the early warning disappears
    late = figures.quota_at(b, ytd=93_000.0, at_ms=_ms(2027, 1, 1), tz=TZ)
    assert late.status.fraction == pytest.approx(1.0)
    assert late.status.state == "ok"
    assert figures.year_start(_ms(2027, 1, 1), TZ) == _ms(2026, 1, 1)
    assert quota.building_intensity(b) == at.limit.value


def test_kgce_uses_the_sites_gas_ncv_and_never_converts_water() -> None:
    site = Site.model_validate({"site": "s", "buildings": [
        {"id": "h", "floor_area_m2": 10, "meters": [
            {"id": "gm", "gateway": "g", "device": "gm", "energy_type": "gas"},
            {"id": "st", "gateway": "g", "device": "st", "energy_type": "steam"}],
         "boilers": [{"id": "oil", "kind": "steam", "fuel": "light_oil", "rated_t_h": 1,
                      "ncv_mj_per_unit": 42.7, "fuel_meter": "gm", "output_meter": "st"}]},
        {"id": "p", "floor_area_m2": 10, "meters": [
            {"id": "gm2", "gateway": "g", "device": "gm2", "energy_type": "gas"},
            {"id": "st2", "gateway": "g", "device": "st2", "energy_type": "steam"}],
         "boilers": [{"id": "gas", "kind": "steam", "fuel": "natural_gas", "rated_t_h": 1,
                      "ncv_mj_per_unit": 35.5, "fuel_meter": "gm2", "output_meter": "st2"}]}]})
    h = site.buildings[0]
    # the oil boiler's 42.7 MJ/kg says nothing about gas: the gas boiler's 35.5 MJ/m³ counts
    assert figures.gas_ncv(site, h) == 35.5
    conv, note = figures.to_kgce(site, h, "gas", 100.0)
    assert conv is not None and note == ""
    assert conv.value == pytest.approx(100.0 * 35.5 / 29.3076, rel=1e-4)
    none, why = figures.to_kgce(site, h, "water", 5.0)
    assert none is None and "not an energy" in why
    assert figures.to_co2(site, "water", 5.0, 2026) is None
    c = figures.to_co2(site, "electricity", 1000.0, 2026)
    assert c is not None and c.value > 0 and c.factor.source


def test_quota_ytd_counts_building_totals_in_the_quota_measure() -> None:
    site = _site(meters=[
        {"id": "main", "gateway": "g", "device": "main", "energy_type": "electricity",
         "building_total": True},
        {"id": "light", "gateway": "g", "device": "light", "energy_type": "electricity",
         "category": "01A00"},
        {"id": "gas", "gateway": "g", "device": "gas", "energy_type": "gas",
         "building_total": True}])
    b = site.buildings[0]
    ms = {m.id: m for m in b.meters}
    # a kWh quota compares electricity only; sub-meters are inside the total
    assert figures.quota_ytd(site, b, [(ms["main"], 500.0), (ms["light"], 200.0),
                                       (ms["gas"], 80.0)]) == 500.0
    assert figures.find_meter(site, "light") is ms["light"]
    assert figures.find_meter(site, "light", "other-gw") is None


def test_sub_items_leave_a_visible_remainder_and_intensity_needs_an_area() -> None:
    # 1 000 kWh in total, 400 + 350 sub-metered: 250 kWh nobody sub-meters
    assert figures.not_submetered(1000.0, [400.0, 350.0]) == pytest.approx(250.0)
    assert figures.not_submetered(1000.0, [600.0, 400.0000001]) == 0.0  # rounding, not use
    assert figures.intensity(12_000.0, 1000.0) == 12.0
    with pytest.raises(ValueError):
        figures.intensity(1.0, 0.0)
