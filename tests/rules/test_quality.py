"""Data-quality detectors: each fires on the defect and stays quiet on clean data."""

from __future__ import annotations

from rules import quality

M = 60_000


def test_meter_offline() -> None:
    assert quality.meter_offline(0, 5 * M, 10 * M) is None
    f = quality.meter_offline(0, 11 * M, 10 * M)
    assert f is not None and f.check == "meter_offline" and f.value == 660
    assert quality.meter_offline(None, 0, 10 * M) is not None


def test_gateway_offline_after_grace() -> None:
    assert quality.gateway_offline("online", 0, 10 * M) is None
    assert quality.gateway_offline("offline", 0, 1 * M, grace_ms=2 * M) is None
    assert quality.gateway_offline("offline", 0, 3 * M, grace_ms=2 * M) is not None


def test_flatline_on_trailing_run_only() -> None:
    stuck = [(i * M, 42.0) for i in range(31)]
    f = quality.flatline(stuck, min_duration_ms=30 * M)
    assert f is not None and f.evidence["samples"] == 31
    moving = [*stuck, (31 * M, 42.5)]
    assert quality.flatline(moving, min_duration_ms=30 * M) is None
    noisy = [(i * M, 42.0 + (0.001 if i % 2 else 0)) for i in range(31)]
    assert quality.flatline(noisy, min_duration_ms=30 * M) is None
    assert quality.flatline(noisy, min_duration_ms=30 * M, epsilon=0.01) is not None


def test_counter_backwards() -> None:
    assert quality.counter_backwards([(0, 10.0), (M, 11.0)]) is None
    assert quality.counter_backwards([(0, 10.0), (M, 9.99)], jitter=0.05) is None
    f = quality.counter_backwards([(0, 10.0), (M, 11.0), (2 * M, 3.0)])
    assert f is not None and f.value == -8.0 and f.evidence["ts_ms"] == 2 * M


def test_implausible_jump() -> None:
    # a 100 kW feeder cannot use 50 kWh in 15 minutes (200 kWh/h)
    ok = [(0, 0.0), (15 * M, 24.0)]  # 96 kWh/h
    bad = [(0, 0.0), (15 * M, 50.0)]
    assert quality.implausible_jump(ok, max_rate_per_h=100) is None
    f = quality.implausible_jump(bad, max_rate_per_h=100)
    assert f is not None and f.value == 200.0


def test_completeness() -> None:
    # 1 h at one reading per minute = 60 expected; 57 received = 95 %
    assert quality.completeness(57, window_ms=60 * M, interval_ms=M, target=0.95) is None
    f = quality.completeness(50, window_ms=60 * M, interval_ms=M, target=0.95)
    assert f is not None and abs(f.value - 50 / 60) < 1e-12


def test_counter_backwards_knows_the_meter() -> None:
    """A decrease the meter explains is no alert; an unexplained one still is."""
    from energy.accounting import Replacement

    # a register that wraps at 100 000: 99 990 → 15 is 25 kWh of use, not a reset
    wrap = [(0, 99_990.0), (M, 15.0)]
    assert quality.counter_backwards(wrap, rollover_at=100_000) is None
    assert quality.counter_backwards(wrap) is not None  # without the site file: unexplained
    # the gateway flagged the wrap itself (it knows the register's capacity)
    assert quality.counter_backwards(wrap, flags={M: "counter_rollover"}) is None
    # a swap recorded in the site file between the two readings
    swap = [(0, 5_000.0), (2 * M, 12.0)]
    rec = Replacement(ts=M, old_final=5_003.0, new_initial=10.0)
    assert quality.counter_backwards(swap, replacements=[rec]) is None
    # ... but only the swap that falls between those readings
    late = Replacement(ts=3 * M, old_final=5_003.0, new_initial=10.0)
    assert quality.counter_backwards(swap, replacements=[late]) is not None
    # counter_reset is the gateway saying "it went down and it was no wrap": still an alert
    f = quality.counter_backwards(swap, flags={2 * M: "counter_reset"})
    assert f is not None and f.value == -4_988.0
    # a drop in the middle of the register is no wrap, whatever rollover_at says
    assert quality.counter_backwards([(0, 60_000.0), (M, 10_000.0)],
                                     rollover_at=100_000) is not None
