"""Energy accounting worked examples (numbers computed by hand in the comments)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from energy.accounting import (
    Interval,
    Replacement,
    combine,
    consumption,
    intervals,
    rollup,
    to_co2,
    to_kgce,
)

SH = ZoneInfo("Asia/Shanghai")
H = 3_600_000


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=SH).timestamp() * 1000)  # type: ignore[misc]


def test_plain_counter_differences_are_consumption() -> None:
    ivs = intervals([(0, 100.0), (H, 112.5), (2 * H, 130.0)])
    assert [i.amount for i in ivs] == [12.5, 17.5]
    assert consumption(ivs, 0, 2 * H) == 30.0


def test_a_lost_sample_loses_no_energy() -> None:
    # readings at 0 h and 3 h only: the 3 h difference still holds all the energy
    assert consumption(intervals([(0, 10.0), (3 * H, 40.0)]), 0, 3 * H) == 30.0


def test_rollover_of_a_six_digit_register() -> None:
    # register shows 0 .. 99999.9 and wraps at 100000: 99990.0 -> 5.0 is 10.0 + 5.0 = 15.0
    ivs = intervals([(0, 99990.0), (H, 5.0)], rollover_at=100000.0)
    assert ivs[0].kind == "rollover"
    assert ivs[0].amount == pytest.approx(15.0)


def test_meter_replacement_counts_both_meters() -> None:
    # old meter 5000 at 0 h, removed at 1 h reading 5010; new meter fitted at 0 reads 3 at 2 h
    ivs = intervals([(0, 5000.0), (2 * H, 3.0)],
                    replacements=[Replacement(ts=H, old_final=5010.0, new_initial=0.0)])
    assert ivs[0].kind == "replacement"
    assert ivs[0].amount == pytest.approx(13.0)


def test_reset_to_zero_counts_from_zero() -> None:
    ivs = intervals([(0, 500.0), (H, 2.0), (2 * H, 6.0)])
    assert [(i.kind, i.amount) for i in ivs] == [("reset", 2.0), ("normal", 4.0)]


def test_jitter_is_not_a_reset_and_is_not_double_counted() -> None:
    # 100.0 -> 99.99 (noise) -> 100.5: real use is 0.5, not 0.51 and not 99.99 + 0.51
    ivs = intervals([(0, 100.0), (H, 99.99), (2 * H, 100.5)], jitter=0.05)
    assert [i.kind for i in ivs] == ["jitter", "normal"]
    assert sum(i.amount for i in ivs) == pytest.approx(0.5)


def test_hourly_rollup_splits_a_straddling_interval_by_time() -> None:
    # 10 kWh between 10:30 and 11:30 local: 5 in the 10:00 hour, 5 in the 11:00 hour
    ivs = [Interval(ms(2026, 3, 2, 10, 30), ms(2026, 3, 2, 11, 30), 10.0)]
    assert rollup(ivs, "hour", SH) == {ms(2026, 3, 2, 10): 5.0, ms(2026, 3, 2, 11): 5.0}


def test_daily_rollup_uses_local_midnight() -> None:
    # 23:00-23:30 local on 1 March belongs to 1 March (UTC would say 15:00, same day) and
    # 00:30-01:00 on 2 March to 2 March (UTC says 16:30 on 1 March)
    ivs = [Interval(ms(2026, 3, 1, 23), ms(2026, 3, 1, 23, 30), 1.0),
           Interval(ms(2026, 3, 2, 0, 30), ms(2026, 3, 2, 1), 2.0)]
    assert rollup(ivs, "day", SH) == {ms(2026, 3, 1): 1.0, ms(2026, 3, 2): 2.0}


def test_monthly_rollup_and_virtual_meter() -> None:
    a = rollup([Interval(ms(2026, 1, 31), ms(2026, 2, 2), 48.0)], "month", SH)
    assert a == {ms(2026, 1, 1): 24.0, ms(2026, 2, 1): 24.0}
    hvac = {ms(2026, 1, 1): 10.0, ms(2026, 2, 1): 4.0}
    other = combine({"total": a, "hvac": hvac}, plus=["total"], minus=["hvac"])
    assert other == {ms(2026, 1, 1): 14.0, ms(2026, 2, 1): 20.0}


def test_kgce_electricity_equivalent_value() -> None:
    # GB/T 2589-2020: 0.1229 kgce/kWh (当量值); 10 000 kWh -> 1229 kgce
    c = to_kgce(10_000, "electricity")
    assert c.value == pytest.approx(1229.0)
    assert "GB/T 2589-2020" in c.factor.source and c.factor.mark == "R"


def test_kgce_electricity_equal_value_is_a_named_local_choice() -> None:
    # DB31/T 783-2026: 0.28078 kgce/kWh; 10 000 kWh -> 2807.8 kgce
    c = to_kgce(10_000, "electricity", factor="electricity_equal_value_db31_783_2026")
    assert c.value == pytest.approx(2807.8)
    assert "DB31/T 783-2026" in c.factor.source


def test_kgce_gas_from_measured_ncv() -> None:
    # 1 kgce = 29.3076 MJ (GB/T 2589-2020). NCV 35.588 MJ/m3: 1000 m3 -> 35588 / 29.3076
    # = 1214.29 kgce, which is the 1.2143 kgce/m3 preset of the standard (cross-check).
    c = to_kgce(1000, "gas", ncv_mj_per_m3=35.588)
    assert c.value == pytest.approx(1214.29, abs=0.01)
    assert c.factor.mark == "I"
    assert to_kgce(1000, "gas").value == pytest.approx(1214.3)


def test_kgce_heat() -> None:
    # GB/T 2589-2020: 0.03412 kgce/MJ = 34.12 kgce/GJ; 100 GJ -> 3412 kgce
    assert to_kgce(100, "heat").value == pytest.approx(3412.0)


def test_co2_grid_factor_names_year_region_and_basis() -> None:
    # MEE/NBS 2022 华东 0.5617 kgCO2/kWh: 10 000 kWh -> 5617 kg
    c = to_co2(10_000, "electricity", year=2022, region="华东")
    assert c.value == pytest.approx(5617.0)
    assert "2022" in c.factor.source and "华东" in c.factor.source
    assert "mee_grid_average" in c.factor.source


def test_co2_unpublished_year_falls_back_and_says_so() -> None:
    c = to_co2(1000, "electricity", year=2025, region="上海")
    assert c.value == pytest.approx(573.7)  # 2023 上海 0.5737
    assert "2025 not published, used 2023" in c.factor.source


def test_co2_enterprise_basis_is_different() -> None:
    assert to_co2(1000, "electricity", year=2023, basis="enterprise_ghg_reporting").value == \
        pytest.approx(570.3)


def test_co2_natural_gas_derivation() -> None:
    # 389.31 GJ/10^4 Nm3 * 15.3 tC/TJ * 0.99 * 44/12, per m3, in kg
    derived = 389.31 / 1e4 * 15.3 / 1000 * 0.99 * 44 / 12 * 1000
    assert to_co2(1, "gas", year=2023).value == pytest.approx(derived, abs=0.001)


def test_hourly_rollup_across_a_dst_change_has_no_lost_or_double_hour() -> None:
    # Europe/Berlin 2026-03-29: 02:00 local does not exist. 3 kWh from 00:00 to 04:00 local
    # is 3 real hours (UTC 23:00..02:00): 1 kWh each in the 00, 01 and 03 o'clock buckets.
    be = ZoneInfo("Europe/Berlin")
    s = int(datetime(2026, 3, 29, 0, tzinfo=be).timestamp() * 1000)
    e = int(datetime(2026, 3, 29, 4, tzinfo=be).timestamp() * 1000)
    got = rollup([Interval(s, e, 3.0)], "hour", be)
    assert len(got) == 3 and all(v == pytest.approx(1.0) for v in got.values())
    assert sum(got.values()) == pytest.approx(3.0)


def test_the_plain_counter_path_makes_the_same_intervals_as_the_general_one() -> None:
    """A counter without swaps takes a shorter path; a swap outside the readings (which
    changes nothing) forces the general one: both must give the very same intervals."""
    import random

    rnd = random.Random(7)
    never = [Replacement(ts=10**15, old_final=0.0, new_initial=0.0)]
    for _ in range(300):
        n = rnd.randint(0, 30)
        ts = sorted(rnd.sample(range(0, 10**8, 1000), n))
        v, pts = rnd.uniform(0, 1e6), []
        for t in ts:  # mostly rising; now and then a dip (jitter, reset) or a repeat
            v = max(0.0, v + rnd.choice([rnd.uniform(0, 50), 0.0, -0.01, -v]))
            pts.append((t, v))
        rnd.shuffle(pts)
        for jitter in (0.0, 0.05):
            got = intervals(pts, jitter=jitter, rollover_at=1e6)
            assert got == intervals(pts, jitter=jitter, rollover_at=1e6,
                                        replacements=never)
            assert all(type(iv) is Interval for iv in got)
