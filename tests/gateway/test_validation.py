"""Edge validation: counters never turn a reset into negative or huge consumption."""

from __future__ import annotations

import math

from gateway.validation import (
    JUMP,
    NOT_FINITE,
    OUT_OF_RANGE,
    RESET,
    ROLLOVER,
    CounterLimits,
    EdgeValidator,
)

H = 3_600_000  # one hour in ms


def test_normal_counter_and_gauges_pass_unflagged() -> None:
    v = EdgeValidator()
    assert v.check(0, {"active_energy_import_kwh": 100.0, "active_power_kw": 5.0}) == (
        {"active_energy_import_kwh": 100.0, "active_power_kw": 5.0}, {})
    got = v.check(H, {"active_energy_import_kwh": 105.0})
    assert got == ({"active_energy_import_kwh": 105.0}, {})


def test_failed_read_has_no_value_never_zero() -> None:
    v = EdgeValidator()
    values, flags = v.check(0, {"active_power_kw": math.nan, "voltage_l1_v": math.inf})
    assert values == {}
    assert flags == {"active_power_kw": NOT_FINITE, "voltage_l1_v": NOT_FINITE}


def test_gauge_out_of_range_is_kept_and_flagged() -> None:
    values, flags = EdgeValidator().check(0, {"flue_o2_pct": 35.0, "frequency_hz": 50.0})
    assert values == {"flue_o2_pct": 35.0, "frequency_hz": 50.0}
    assert flags == {"flue_o2_pct": OUT_OF_RANGE}


def test_negative_counter_is_dropped() -> None:
    values, flags = EdgeValidator().check(0, {"gas_volume_m3": -3.0})
    assert values == {} and flags == {"gas_volume_m3": OUT_OF_RANGE}


def test_rollover_at_register_capacity() -> None:
    cap = 1_000_000.0  # DL/T 645 XXXXXX.XX kWh: 999999.99 then 0
    v = EdgeValidator(limits={"active_energy_import_kwh": CounterLimits(capacity=cap)})
    v.check(0, {"active_energy_import_kwh": cap - 5})
    values, flags = v.check(H, {"active_energy_import_kwh": 3.0})
    assert values == {"active_energy_import_kwh": 3.0}
    assert flags == {"active_energy_import_kwh": ROLLOVER}
    # the new value is the baseline: the next step is ordinary consumption
    assert v.check(2 * H, {"active_energy_import_kwh": 8.0})[1] == {}


def test_meter_replacement_or_reset_is_flagged_not_negative() -> None:
    v = EdgeValidator(limits={"active_energy_import_kwh": CounterLimits(capacity=1_000_000.0)})
    v.check(0, {"active_energy_import_kwh": 52_000.0})
    values, flags = v.check(H, {"active_energy_import_kwh": 0.4})
    assert flags == {"active_energy_import_kwh": RESET}
    assert values == {"active_energy_import_kwh": 0.4}
    assert v.counts == {RESET: 1}


def test_float32_rounding_is_not_a_reset() -> None:
    v = EdgeValidator()
    v.check(0, {"active_energy_import_kwh": 123456.78})
    assert v.check(1000, {"active_energy_import_kwh": 123456.77})[1] == {}


def test_implausible_jump_is_flagged() -> None:
    v = EdgeValidator(limits={"heat_energy_gj": CounterLimits(max_rate_per_h=10.0)})
    v.check(0, {"heat_energy_gj": 100.0})
    assert v.check(H, {"heat_energy_gj": 109.0})[1] == {}
    assert v.check(2 * H, {"heat_energy_gj": 5000.0})[1] == {"heat_energy_gj": JUMP}


def test_baselines_survive_as_plain_data() -> None:
    v = EdgeValidator()
    v.check(0, {"water_volume_m3": 10.0})
    restored = EdgeValidator(baselines=dict(v.baselines))
    assert restored.check(H, {"water_volume_m3": 1.0})[1] == {"water_volume_m3": RESET}
