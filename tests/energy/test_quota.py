"""Quota math worked examples and the simulated year that drifts over its quota."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from energy.accounting import consumption, intervals
from energy.quota import (
    annual_allowance,
    evaluate_budget,
    evaluate_quota,
    office_correction,
    quota_intensity,
    year_fraction,
)
from rules.lifecycle import AlertBook

SH = ZoneInfo("Asia/Shanghai")


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def test_office_correction_worked_example() -> None:
    # GB/T 51161-2016 office correction (standards.md): T = 2000 h/a, S = 8 m2/person
    # γ1 = 0.3 + 0.7 * 2500/2000 = 1.175 ; γ2 = 0.7 + 0.3 * 8/10 = 0.94
    g1, g2 = office_correction(2000, 8)
    assert (g1, g2) == (pytest.approx(1.175), pytest.approx(0.94))
    # A 商业办公, 夏热冬冷, constraint 110 kWh/(m2·a) -> 110 * 1.175 * 0.94 = 121.495
    q = quota_intensity("gbt51161/office/A-commercial/hot_summer_cold_winter",
                        hours_per_year=2000, m2_per_person=8)
    assert q.value == pytest.approx(121.495)
    assert q.mark == "U" and "γ1=1.1750" in q.source


def test_reference_conditions_need_no_correction() -> None:
    # at T = T0 and S = S0 both factors are exactly 1
    assert office_correction(2500, 10) == (pytest.approx(1.0), pytest.approx(1.0))


def test_local_quota_and_per_capita_allowance() -> None:
    # DB37/T 2672-2019 per capita constraint 1197.8 kgce/(person·a), 150 people -> 179 670 kgce
    q = quota_intensity("db37t2672/government/per_capita_kgce")
    assert q.mark == "R"
    assert annual_allowance(q.value, basis="person", floor_area_m2=5000, occupants=150) == \
        pytest.approx(179_670.0)


def test_year_fraction_flat_and_seasonal() -> None:
    # default, proportional to time: 1 April 2025 = 90 of 365 days done (not 3/12 months)
    assert year_fraction(ms(datetime(2025, 4, 1, tzinfo=SH)), SH) == pytest.approx(90 / 365)
    # a leap year: 1 March 2024 = 60 of 366 days; the local (not UTC) year is the base
    assert year_fraction(ms(datetime(2024, 3, 1, tzinfo=SH)), SH) == pytest.approx(60 / 366)
    assert year_fraction(ms(datetime(2025, 1, 1, tzinfo=SH)), SH) == 0.0
    # equal monthly weights are a named profile of their own, not the default
    assert year_fraction(ms(datetime(2025, 4, 1, tzinfo=SH)), SH, [1.0] * 12) == \
        pytest.approx(0.25)
    w = [2, 2, 1, 1, 1, 2, 3, 3, 1, 1, 1, 2]  # sum 20
    assert year_fraction(ms(datetime(2025, 7, 1, tzinfo=SH)), SH, w) == pytest.approx(9 / 20)
    # 16 July 00:00: 15 of July's 31 days gone -> (9 + 3*15/31) / 20
    assert year_fraction(ms(datetime(2025, 7, 16, tzinfo=SH)), SH, w) == \
        pytest.approx((9 + 3 * 15 / 31) / 20)


def test_budget_levels() -> None:
    assert evaluate_budget(7_999, 10_000).state == "ok"
    assert evaluate_budget(8_000, 10_000).state == "warning"
    assert evaluate_budget(10_000, 10_000).state == "exhausted"


def test_no_projection_from_the_first_days() -> None:
    s = evaluate_quota(ytd=10_000, allowance=100_000, fraction=0.01)
    assert s.projected is None and s.state == "ok"


def test_simulated_year_drifting_over_quota() -> None:
    """An office drifting above its quota: 预警 on the first day the projection crosses,
    'exceeded' on the day the year-to-date crosses; both days computed independently."""
    year = 2025
    area = 10_000.0
    allowance = annual_allowance(85.0, basis="area", floor_area_m2=area, occupants=0)  # 850 000 kWh
    weights = [1.4, 1.2, 0.9, 0.8, 0.9, 1.1, 1.4, 1.5, 1.1, 0.8, 0.8, 1.1]
    start = datetime(year, 1, 1, tzinfo=SH)
    days = 365

    # Daily use: the seasonal share of the allowance times a drift from 0.85 to 1.35.
    def daily_kwh(d: int) -> float:
        day = start + timedelta(days=d)
        share = weights[day.month - 1] / sum(weights) / calendar.monthrange(year, day.month)[1]
        return allowance * share * (0.85 + 0.5 * d / days)

    # The meter: a cumulative counter read at every local midnight (rounded to 0.1 kWh).
    readings = [(ms(start), 1_000_000.0)]
    total = 1_000_000.0
    for d in range(days):
        total += daily_kwh(d)
        readings.append((ms(start + timedelta(days=d + 1)), round(total, 1)))

    # Independent expectation: plain running sums, day by day.
    expect_warn = expect_exceeded = None
    cum = expected_share = 0.0
    for d in range(days):
        day = start + timedelta(days=d)
        cum += daily_kwh(d)
        month_days = calendar.monthrange(year, day.month)[1]
        expected_share += weights[day.month - 1] / sum(weights) / month_days
        if expect_warn is None and expected_share >= 0.05 and cum / expected_share >= allowance:
            expect_warn = d
        if expect_exceeded is None and cum >= allowance:
            expect_exceeded = d
    assert expect_warn is not None and expect_exceeded is not None
    assert expect_warn + 60 < expect_exceeded  # the warning is early enough to act on

    # The product: counter -> intervals -> YTD -> quota state -> alert lifecycle.
    ivs = intervals(readings)
    book = AlertBook()
    fired: dict[str, int] = {}
    labels = {"site": "campus", "building": "office-1"}
    for d in range(days):
        now = ms(start + timedelta(days=d + 1))  # evaluated at the end of day d
        ytd = consumption(ivs, ms(start), now)
        # the last millisecond of day d (midnight already belongs to the next day / year)
        st = evaluate_quota(ytd=ytd, allowance=allowance,
                            fraction=year_fraction(now - 1, SH, weights))
        for rule, active in (("quota_early_warning", st.state in ("early_warning", "exceeded")),
                             ("quota_exceeded", st.state == "exceeded")):
            out = book.observe(rule=rule, labels=labels, active=active, now=now)
            for n in out.notifications:
                if n.kind == "firing":
                    fired.setdefault(rule, d)
    assert fired["quota_early_warning"] == expect_warn
    assert fired["quota_exceeded"] == expect_exceeded


def test_constant_use_projects_its_annual_rate_every_day() -> None:
    """Worked example (issue 11): a building using exactly 100 kWh every hour of 2025.

    Its true annual use is 100 × 8760 = 876 000 kWh. At defaults (no seasonal weights)
    the projection must equal that on every evaluation after the minimum fraction, at
    midnight and at noon, in every month; the old equal-month profile projected
    100 × 24 × 365 / (59/365 … ) up to ~3 % off (e.g. 28 February: 854 610 kWh).

    Two buildings: one 2 % under its quota (never warned) and one 2 % over it (warned
    on the first day the projection is allowed and never resolved before its year-to-date
    exceeds the quota in late December).
    """
    from energy.site import Site
    from rules.config import RulesConfig
    from rules.engine import Engine

    year, rate = 2025, 100.0  # kWh per hour
    start = datetime(year, 1, 1, tzinfo=SH)
    annual = rate * 24 * 365
    readings = [(ms(start + timedelta(days=d)), 5_000.0 + rate * 24 * d) for d in range(366)]
    ivs = intervals(readings)
    site = Site.model_validate({"site": "campus", "buildings": [
        {"id": b, "floor_area_m2": 1000,
         "quota": {"value": annual * k / 1000, "unit": "kWh/(m2·a)", "source": "test"}}
        for b, k in (("under", 1.02), ("over", 0.98))]})
    eng = Engine(RulesConfig(), [site], AlertBook(), started_ms=ms(start))
    events: dict[str, list[tuple[str, str, int]]] = {"under": [], "over": []}
    states: dict[str, set[str]] = {"under": set(), "over": set()}
    q = site.buildings[0].quota
    assert q is not None and q.seasonal_weights is None  # the default: time-proportional
    for d in range(365):
        for hour in (12, 24):
            now = ms(start + timedelta(days=d, hours=hour))
            ytd = consumption(ivs, ms(start), now)
            frac = year_fraction(now - 1, SH, q.seasonal_weights)
            assert frac == pytest.approx((d * 24 + hour) / 8760, abs=1e-9)
            for bld in site.buildings:
                assert bld.quota is not None
                allowance = annual_allowance(bld.quota.value or 0, basis="area",
                                             floor_area_m2=1000, occupants=0)
                st = evaluate_quota(ytd=ytd, allowance=allowance, fraction=frac,
                                    min_fraction=bld.quota.min_fraction)
                states[bld.id].add(st.state)
                if frac >= bld.quota.min_fraction:
                    assert st.projected == pytest.approx(annual, rel=1e-9), (d, hour)
                out = eng.on_quota("campus", bld.id, st, "kWh", now)
                events[bld.id] += [(n.rule, n.kind, d) for n in out.notifications]
    assert events["under"] == [] and states["under"] == {"ok"}
    # warned on the first evaluation with a projection: noon of 19 January (day 18),
    # 444 of 8760 hours = 5.07 % ≥ min_fraction 5 %; never resolved after
    assert events["over"][0] == ("quota_early_warning", "firing", 18)
    assert [e for e in events["over"] if e[1] == "resolved"] == []
    assert {e[1] for e in events["over"]} == {"firing", "repeat"}  # daily reminders only
    assert [e[0] for e in events["over"] if e[1] == "firing"] == ["quota_early_warning",
                                                                   "quota_exceeded"]
    assert states["over"] == {"ok", "early_warning", "exceeded"}
