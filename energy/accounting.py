"""Energy accounting: consumption from cumulative counters, kgce, CO2 and rollups.

Pure and I/O-free so that the rule engine, the rollup writer and the inspectors'
reports compute the *same* numbers from the same readings. Public API::

    intervals(readings, rollover_at=, replacements=, jitter=)  -> list[Interval]
    consumption(intervals, start_ms, end_ms)                    -> float
    rollup(intervals, "hour"|"day"|"month", tz)                -> dict[bucket_start_ms, float]
    combine({meter: buckets}, plus=[...], minus=[...])          -> buckets of a virtual meter
    to_kgce(amount, energy_type, factor=None, ncv_mj_per_m3=None) -> Converted
    to_co2(amount, energy_type, year, region, basis)           -> Converted

Counters are the truth for consumption (a lost sample loses no energy; the next
difference contains it). What breaks a counter — a reset to zero, a register
rolling over, a replaced meter — is recognised and labelled on the interval, so
an inspector can see *why* a number is what it is.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from energy import refdata
from energy.refdata import Ref

IntervalKind = Literal["normal", "rollover", "reset", "replacement", "jitter"]
BucketSize = Literal["hour", "day", "month", "year"]


@dataclass(frozen=True, slots=True)
class Reading:
    ts: int  # epoch ms
    value: float


@dataclass(frozen=True, slots=True)
class Replacement:
    """A meter swapped between two readings: the old one's last and the new one's first index."""

    ts: int
    old_final: float
    new_initial: float


class Interval(NamedTuple):
    """Consumption between two readings (a tuple: a meter's year is 35,000 of them, made
    on every recomputation, and a tuple costs half a frozen dataclass to build)."""

    start: int
    end: int
    amount: float
    kind: IntervalKind = "normal"


_new = tuple.__new__  # an Interval from a tuple without the named tuple's Python-level __new__


def intervals(
    readings: Iterable[Reading | tuple[int, float]],
    *,
    rollover_at: float | None = None,
    replacements: Sequence[Replacement] = (),
    jitter: float = 0.0,
) -> list[Interval]:
    """Turn counter readings into consumption intervals.

    Args:
        readings: counter readings; sorted here, duplicates of a timestamp keep the last.
        rollover_at: the register's wrap value (e.g. 99999999.9 kWh for an 8+1 digit
            register, 2**32 * scale for a u32); ``None`` if it cannot wrap in practice.
        replacements: known meter swaps (from the site file), applied to the interval
            that contains their timestamp.
        jitter: a decrease of at most this much is measurement noise (0 consumption,
            the higher index stays the reference), not a reset.

    A decrease that is neither jitter, nor a short wrap at ``rollover_at``, nor a known
    replacement is a *reset*: the meter counted from zero since, so the interval gets
    the new index (a lower bound; what was used before the reset is unknowable).
    """
    rs = readings if isinstance(readings, list) else list(readings)
    try:  # (ts, value) pairs, the usual input: one C-level pass
        pts = {int(t): float(v) for t, v in rs}  # type: ignore[misc]
    except TypeError:  # Reading objects (or a mix)
        pts = {}
        for r in rs:
            if isinstance(r, Reading):
                pts[int(r.ts)] = float(r.value)
            else:
                pts[int(r[0])] = float(r[1])
    series = sorted(pts.items())
    out: list[Interval] = []
    if not series:
        return out
    if not replacements and len(series) > 1:
        # the usual counter: no swap, never decreasing. Every interval is then the plain
        # difference of consecutive readings (as the loop below makes it), built at C level
        times, values = zip(*series, strict=True)
        ds = list(map(operator.sub, values[1:], values))
        if all(map((0.0).__le__, ds)):  # NaN is not >= 0: the loop below judges it
            return list(map(_new, repeat(Interval),
                            zip(times, times[1:], ds, repeat("normal"))))
    append = out.append
    swaps = sorted(replacements, key=lambda s: s.ts)
    swap_ts = [s.ts for s in swaps]
    ref_ts, ref_v = series[0]
    for k in range(1, len(series)):
        ts, v = series[k]
        if swaps:
            i = bisect.bisect_right(swap_ts, ref_ts)
            if i < len(swaps) and swaps[i].ts <= ts:
                s = swaps[i]
                amount = max(0.0, s.old_final - ref_v) + max(0.0, v - s.new_initial)
                append(Interval(ref_ts, ts, amount, "replacement"))
                ref_ts, ref_v = ts, v
                continue
        d = v - ref_v
        if d >= 0:
            append(Interval(ref_ts, ts, d, "normal"))
        elif -d <= jitter:
            append(Interval(ref_ts, ts, 0.0, "jitter"))
            ref_ts = ts
            continue  # keep the higher index as the reference
        elif rollover_at is not None and (rollover_at - ref_v + v) < rollover_at / 2:
            append(Interval(ref_ts, ts, rollover_at - ref_v + v, "rollover"))
        else:
            append(Interval(ref_ts, ts, max(0.0, v), "reset"))
        ref_ts, ref_v = ts, v
    return out


def consumption(ivs: Iterable[Interval], start: int, end: int) -> float:
    """Consumption in [start, end), pro-rating intervals that straddle an edge linearly."""
    total = 0.0
    for iv in ivs:
        lo, hi = max(iv.start, start), min(iv.end, end)
        if hi <= lo:
            continue
        span = iv.end - iv.start
        total += iv.amount if span <= 0 else iv.amount * (hi - lo) / span
    return total


def bucket_start(ts: int, size: BucketSize, tz: ZoneInfo) -> int:
    """The local-calendar bucket (hour/day/month/year) containing ``ts``, as epoch ms."""
    d = datetime.fromtimestamp(ts / 1000, tz)
    if size == "hour":
        d = d.replace(minute=0, second=0, microsecond=0)
    elif size == "day":
        d = d.replace(hour=0, minute=0, second=0, microsecond=0)
    elif size == "month":
        d = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    else:
        d = d.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return int(d.timestamp() * 1000)


def next_bucket(start: int, size: BucketSize, tz: ZoneInfo) -> int:
    d = datetime.fromtimestamp(start / 1000, tz)
    if size == "hour":
        # add in UTC so DST gaps cannot create an empty or double hour
        return int((d.astimezone(UTC) + timedelta(hours=1)).timestamp() * 1000)
    if size == "day":
        n = (d + timedelta(days=1)).replace(hour=0)
    elif size == "month":
        n = d.replace(year=d.year + (d.month == 12), month=d.month % 12 + 1)
    else:
        n = d.replace(year=d.year + 1)
    return int(datetime(n.year, n.month, n.day, n.hour, tzinfo=tz).timestamp() * 1000)


_HOUR = 3_600_000
_first, _second = operator.itemgetter(0), operator.itemgetter(1)


def _fixed_offset_ms(start: int, end: int, tz: ZoneInfo) -> int | None:
    """The zone's UTC offset in ms if it is constant over [start, end] (checked every 12 h
    over the whole hours around it: constant there is constant within; many meters share
    those hours, so each is looked up once)."""
    return _offset_over(start // _HOUR * _HOUR, -(-end // _HOUR) * _HOUR, tz)


@functools.lru_cache(maxsize=4096)
def _offset_over(start: int, end: int, tz: ZoneInfo) -> int | None:
    offsets = {datetime.fromtimestamp(t / 1000, tz).utcoffset()
               for t in [*range(start, end, 12 * _HOUR), end]}
    if len(offsets) != 1:
        return None
    a = offsets.pop()
    if a is None or a.total_seconds() % 60:
        return None
    return int(a.total_seconds() * 1000)


def rollup(ivs: Iterable[Interval], size: BucketSize, tz: str | ZoneInfo = "Asia/Shanghai"
           ) -> dict[int, float]:
    """Sum interval consumption into local-calendar buckets, splitting straddlers by time."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    out: dict[int, float] = {}
    ivs = list(ivs)
    off = None
    if size == "hour" and ivs:
        off = _fixed_offset_ms(min(map(_first, ivs)), max(map(_second, ivs)), zone)
    if off is not None:
        # no offset change in the whole range: plain arithmetic (the hot path; intervals
        # are tuples, unpacked rather than looked up by name)
        get = out.get
        for start, end, amount, _kind in ivs:
            if end <= start:
                b = bucket_start(end, size, zone)
                out[b] = get(b, 0.0) + amount
                continue
            span = end - start
            b = start - (start + off) % _HOUR
            if end <= b + _HOUR:  # inside one hour (most readings): the same sum, no loop
                out[b] = get(b, 0.0) + amount * span / span
                continue
            while b < end:
                lo, hi = max(start, b), min(end, b + _HOUR)
                out[b] = get(b, 0.0) + amount * (hi - lo) / span
                b += _HOUR
        return dict(sorted(out.items()))
    for iv in ivs:
        if iv.end <= iv.start:
            b = bucket_start(iv.end, size, zone)
            out[b] = out.get(b, 0.0) + iv.amount
            continue
        b = bucket_start(iv.start, size, zone)
        span = iv.end - iv.start
        while b < iv.end:
            nb = next_bucket(b, size, zone)
            lo, hi = max(iv.start, b), min(iv.end, nb)
            if hi > lo:
                out[b] = out.get(b, 0.0) + iv.amount * (hi - lo) / span
            b = nb
    return dict(sorted(out.items()))


def combine(buckets: Mapping[str, Mapping[int, float]], plus: Sequence[str],
            minus: Sequence[str] = ()) -> dict[int, float]:
    """A virtual meter: Σ plus − Σ minus per bucket (e.g. building total minus HVAC)."""
    out: dict[int, float] = {}
    for name, sign in [(n, 1.0) for n in plus] + [(n, -1.0) for n in minus]:
        for b, v in buckets.get(name, {}).items():
            out[b] = out.get(b, 0.0) + sign * v
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- conversions


@dataclass(frozen=True, slots=True)
class Converted:
    """A converted amount and the reference number it was converted with."""

    value: float
    unit: str
    factor: Ref


def gas_factor_from_ncv(ncv_mj_per_m3: float) -> Ref:
    """kgce/m³ of a gas from its measured net calorific value (GB/T 2589-2020 method)."""
    mj = refdata.factors().kgce_mj
    return Ref(value=ncv_mj_per_m3 / mj.value, unit="kgce/m3",
               source=f"measured NCV {ncv_mj_per_m3:g} MJ/m3 / {mj.value:g} MJ/kgce ({mj.source})",
               mark="I")


def coal_factor(energy_type: str, key: str | None = None) -> Ref:
    f = refdata.factors()
    key = key or f.default_coal_equivalent.get(energy_type)
    if key is None or key not in f.coal_equivalent:
        from enmon.errors import ConfigError

        raise ConfigError("energy/data/factors.yaml", f"coal_equivalent.{key or energy_type}",
                          f"no kgce factor for energy type {energy_type!r}",
                          "add one to the site file's factors: block with its source")
    c = f.coal_equivalent[key]
    return Ref(value=c.value, unit=c.unit, source=c.source, mark=c.mark)


def to_kgce(amount: float, energy_type: str, *, factor: Ref | str | None = None,
            ncv_mj_per_m3: float | None = None) -> Converted:
    """Convert an amount in the canonical unit of its energy type to kgce.

    Gas uses the measured NCV when given (the standard says to prefer it); otherwise
    the named or default factor from ``energy/data/factors.yaml``.
    """
    if isinstance(factor, Ref):
        ref = factor
    elif energy_type == "gas" and ncv_mj_per_m3 is not None and factor is None:
        ref = gas_factor_from_ncv(ncv_mj_per_m3)
    else:
        ref = coal_factor(energy_type, factor)
    return Converted(amount * ref.value, "kgce", ref)


def to_co2(amount: float, energy_type: str, *, year: int, region: str = "national",
           basis: str = "mee_grid_average") -> Converted:
    """kg CO2 of an amount (kWh for electricity, m³ for natural gas), with its basis named."""
    if energy_type == "electricity":
        ref = refdata.grid_co2(year, region, basis)
    elif energy_type == "gas":
        ref = refdata.factors().co2.natural_gas_combustion
    else:
        from enmon.errors import ConfigError

        raise ConfigError("energy/data/factors.yaml", f"co2.{energy_type}",
                          f"no CO2 factor for energy type {energy_type!r}",
                          "add one to the site file's factors: block with its source")
    return Converted(amount * ref.value, "kgCO2", ref)
