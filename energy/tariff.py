"""Time-of-use tariffs and the cost of consumption, as data and plain functions.

Chinese electricity is priced by band (尖峰 sharp, 高峰 peak, 平段 flat, 低谷 valley,
深谷 deep valley) over clock periods that differ by season, at prices that change by
validity date (代理购电 prices change every month), plus for larger customers a demand
or capacity charge (基本电费). Gas, water, heat and steam have flat prices. A tariff is a
YAML document (``energy/data/tariffs.yaml``, or a site's own) with its source; the
functions here turn consumption intervals into kWh and CNY per band **exactly**: an
interval that straddles a band boundary, midnight or a price change is pro-rated
linearly, as :func:`energy.accounting.consumption` pro-rates a period's edges, so a
counter read every 15 minutes and one read every hour cost the same.

Pure: no I/O beyond loading the YAML, no clock.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from energy import refdata
from energy.accounting import Interval
from enmon.config import StrictModel, load_model
from enmon.errors import ConfigError

Band = Literal["sharp", "peak", "flat", "valley", "deep_valley"]
BANDS: tuple[Band, ...] = ("sharp", "peak", "flat", "valley", "deep_valley")
BAND_NAMES_ZH: dict[str, str] = {"sharp": "尖峰", "peak": "高峰", "flat": "平段",
                                 "valley": "低谷", "deep_valley": "深谷", "all": "单一电价"}
DAY_MIN = 24 * 60
K = TypeVar("K", bound=Hashable)


def _minute(text: str) -> int:
    h, _, m = text.partition(":")
    if not (h.isdigit() and m.isdigit()) or not (0 <= int(h) <= 24 and 0 <= int(m) < 60):
        raise ValueError(f"time {text!r} must be HH:MM between 00:00 and 24:00")
    v = int(h) * 60 + int(m)
    if v > DAY_MIN:
        raise ValueError(f"time {text!r} is after 24:00")
    return v


class Period(StrictModel):
    """A clock period of one band: ``start``–``end`` in site time; may cross midnight."""

    start: str = Field(json_schema_extra={"fix": "HH:MM, e.g. 08:00"})
    end: str = Field(json_schema_extra={"fix": "HH:MM, e.g. 11:00 (24:00 for midnight)"})
    band: Band

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        _minute(v)
        return v


class Season(StrictModel):
    """The months a set of periods applies to; the periods must cover the whole day once."""

    months: list[int] = Field(min_length=1, json_schema_extra={"fix": "month numbers 1-12"})
    periods: list[Period] = Field(min_length=1)

    @model_validator(mode="after")
    def _covers_the_day(self) -> Season:
        if any(not 1 <= m <= 12 for m in self.months):
            raise ValueError("months must be 1-12")
        covered = [0] * DAY_MIN
        for p in self.periods:
            a, b = _minute(p.start), _minute(p.end)
            span = range(a, b) if a < b else [*range(a, DAY_MIN), *range(0, b)]
            for m in span:
                covered[m] += 1
        gaps = [m for m, n in enumerate(covered) if n == 0]
        twice = [m for m, n in enumerate(covered) if n > 1]
        if gaps or twice:
            m = (gaps or twice)[0]
            what = "not covered by any period" if gaps else "covered by two periods"
            raise ValueError(f"months {self.months}: {m // 60:02d}:{m % 60:02d} is {what}; "
                             "the periods must cover 00:00-24:00 exactly once")
        return self


class Prices(StrictModel):
    """Prices (CNY per unit) valid from a date (site time, 00:00) until the next entry."""

    valid_from: dt.date
    prices: dict[str, float] = Field(json_schema_extra={
        "fix": "band → CNY/kWh (sharp, peak, flat, valley, deep_valley), or all: for a flat price"})

    @field_validator("prices")
    @classmethod
    def _bands(cls, v: dict[str, float]) -> dict[str, float]:
        for k, p in v.items():
            if k not in (*BANDS, "all"):
                raise ValueError(f"unknown band {k!r}; use {', '.join(BANDS)} or all")
            if not p >= 0:
                raise ValueError(f"price of {k!r} must be ≥ 0")
        return v


class Demand(StrictModel):
    """基本电费: per kW of the month's maximum 15-minute demand, or per kVA contracted."""

    basis: Literal["max_demand", "capacity"]
    price: float = Field(ge=0, json_schema_extra={"fix": "CNY per kW·month or kVA·month"})
    window_min: int = Field(default=15, gt=0, json_schema_extra={
        "fix": "the demand window in minutes (15 in China's metering practice)"})


class Tariff(StrictModel):
    id: str
    name: str = ""
    energy_type: str = "electricity"
    unit: str = "kWh"
    seasons: list[Season] = Field(default=[], json_schema_extra={
        "fix": "empty for a flat price (prices with all:)"})
    prices: list[Prices] = Field(min_length=1)
    demand: Demand | None = None
    source: str
    mark: str

    @model_validator(mode="after")
    def _consistent(self) -> Tariff:
        self.prices.sort(key=lambda p: p.valid_from)
        months = [m for s in self.seasons for m in s.months]
        if self.seasons and sorted(months) != list(range(1, 13)):
            raise ValueError("the seasons must name every month 1-12 exactly once")
        used = {p.band for s in self.seasons for p in s.periods} if self.seasons else {"all"}
        for p in self.prices:
            missing = sorted(used - set(p.prices))
            if missing:
                raise ValueError(f"prices valid from {p.valid_from} lack band(s) "
                                 f"{', '.join(missing)} used by the periods")
        return self

    # ------------------------------------------------------------------ lookups

    def season(self, month: int) -> Season | None:
        return next((s for s in self.seasons if month in s.months), None)


def boundary_step_min(t: Tariff) -> int:
    """The coarsest clock step (minutes, dividing 60) on which every band boundary of
    ``t`` falls: 60 for bands that change on the hour, 30 for one at 11:30. A report that
    reads counters per step splits them into bands as the raw readings do."""
    step = 60
    for season in t.seasons:
        for p in season.periods:
            for hhmm in (p.start, p.end):
                step = math.gcd(step, _minute(hhmm) % 60 or 60)
    return step


class TariffFile(StrictModel):
    tariffs: list[Tariff]


def load_tariffs(path: Path | None = None) -> dict[str, Tariff]:
    """The shipped tariffs (``energy/data/tariffs.yaml``, ``ENMON_RULES_DATA`` overrides)."""
    f = load_model(TariffFile, path or refdata.data_dir() / "tariffs.yaml")
    return {t.id: t for t in f.tariffs}


def find(tariff_id: str, extra: Sequence[Tariff] = ()) -> Tariff:
    """A tariff by id: the site's own first, then the shipped ones."""
    for t in extra:
        if t.id == tariff_id:
            return t
    shipped = load_tariffs()
    if tariff_id in shipped:
        return shipped[tariff_id]
    known = ", ".join([*(t.id for t in extra), *shipped])
    raise ConfigError(str(refdata.data_dir() / "tariffs.yaml"), tariff_id,
                      f"no tariff {tariff_id!r}", f"use one of {known} or define it in the "
                      "site file's tariff_definitions:")


# --------------------------------------------------------------------------- splitting


def _share(ivs: Iterable[Interval], start: int, end: int,
           cut: Callable[[int], tuple[K, int]]) -> dict[K, float]:
    """Each interval's amount in [start, end), shared linearly by time into the pieces
    ``cut`` makes: ``cut(t)`` names the piece that holds instant ``t`` and when it ends."""
    acc: dict[K, float] = {}
    for iv in ivs:
        lo, hi = max(iv.start, start), min(iv.end, end)
        if hi <= lo or iv.end <= iv.start:
            continue
        rate = iv.amount / (iv.end - iv.start)
        cur = lo
        while cur < hi:
            key, until = cut(cur)
            nxt = max(cur + 1, min(hi, until))  # +1: a sub-millisecond rest at a boundary
            acc[key] = acc.get(key, 0.0) + rate * (nxt - cur)
            cur = nxt
    return acc


def _band_at(t: Tariff, local: dt.datetime) -> tuple[str, dt.datetime]:
    """The band at a local instant and the local instant it ends (next boundary)."""
    day0 = local.replace(hour=0, minute=0, second=0, microsecond=0)
    midnight = day0 + dt.timedelta(days=1)
    s = t.season(local.month)
    if s is None:
        return "all", midnight
    minute = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7
    for p in s.periods:
        a, b = _minute(p.start), _minute(p.end)
        inside = a <= minute < b if a < b else (minute >= a or minute < b)
        if inside:
            end_min = b if (a < b or minute < b) else DAY_MIN
            end = day0 + dt.timedelta(minutes=end_min)
            return p.band, min(end, midnight)
    raise AssertionError("seasons cover the whole day (validated)")


def _price_key(t: Tariff, day: dt.date) -> Prices | None:
    found = None
    for p in t.prices:
        if p.valid_from <= day:
            found = p
    return found


@dataclass(frozen=True, slots=True)
class Slice:
    """Consumption of one band at one price set."""

    band: str
    valid_from: dt.date | None   # None: no price valid yet (cost unknown, shown, never 0)
    amount: float


def split(ivs: Iterable[Interval], t: Tariff, tz: ZoneInfo, start: int, end: int
          ) -> list[Slice]:
    """Consumption in [start, end) by band and price validity, pro-rated exactly.

    Each interval is cut at every band boundary, midnight (a price changes at 00:00
    site time) and the period edges; its amount is shared linearly by time, the same rule
    as :func:`energy.accounting.consumption`, so Σ slices == consumption(start, end).
    """
    def cut(cur: int) -> tuple[tuple[str, dt.date | None], int]:
        local = dt.datetime.fromtimestamp(cur / 1000, tz)
        band, until = _band_at(t, local)
        p = _price_key(t, local.date())
        return (band, p.valid_from if p else None), int(until.timestamp() * 1000)

    acc = _share(ivs, start, end, cut)
    return [Slice(b, v, a) for (b, v), a in sorted(acc.items(), key=lambda kv: (
        str(kv[0][1]), BANDS.index(kv[0][0]) if kv[0][0] in BANDS else 9))]


def max_demand_kw(ivs: Iterable[Interval], start: int, end: int, window_min: int = 15
                  ) -> float:
    """The largest average demand over clock-aligned windows (最大需量), in kW.

    Each interval's kWh is shared into the windows it overlaps (pro-rated by time);
    a window's kWh / its hours is its demand.
    """
    w = window_min * 60_000
    kwh = _share(ivs, start, end, lambda cur: (cur - cur % w, cur - cur % w + w))
    return max(kwh.values(), default=0.0) / (window_min / 60)


# --------------------------------------------------------------------------- cost


@dataclass(frozen=True, slots=True)
class CostLine:
    band: str
    valid_from: dt.date | None
    amount: float          # kWh (or m³, GJ, t)
    price: float | None    # CNY per unit; None: no price valid then
    cost: float | None


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    tariff: str
    source: str
    mark: str
    lines: list[CostLine]
    energy_cost: float
    demand_kw: float | None       # the month's maximum demand (max_demand basis)
    demand_cost: float
    unpriced: float               # consumption no price covered (shown, not guessed)

    @property
    def total(self) -> float:
        return self.energy_cost + self.demand_cost

    def by_band(self) -> dict[str, tuple[float, float]]:
        """band → (amount, cost) over all price sets."""
        out: dict[str, tuple[float, float]] = {}
        for ln in self.lines:
            a, c = out.get(ln.band, (0.0, 0.0))
            out[ln.band] = (a + ln.amount, c + (ln.cost or 0.0))
        return out


def cost(slices: Sequence[Slice], t: Tariff, *, demand_kw: float | None = None,
         capacity_kva: float | None = None, months: float = 0.0) -> CostBreakdown:
    """The energy charge of the slices plus the demand/capacity charge for ``months``.

    ``demand_kw`` is the billing period's maximum demand (:func:`max_demand_kw`);
    ``capacity_kva`` the contracted capacity; ``months`` how many billing months the period
    holds (1 for a month, 0 to leave the demand charge out, e.g. for a day).
    """
    by_valid = {p.valid_from: p for p in t.prices}
    lines: list[CostLine] = []
    unpriced = 0.0
    for s in slices:
        pset = by_valid.get(s.valid_from) if s.valid_from else None
        price = pset.prices.get(s.band) if pset else None
        if price is None:
            unpriced += s.amount
        lines.append(CostLine(s.band, s.valid_from, s.amount, price,
                              s.amount * price if price is not None else None))
    demand_cost = 0.0
    if t.demand is not None and months > 0:
        base = demand_kw if t.demand.basis == "max_demand" else capacity_kva
        if base is None:
            raise ValueError(f"tariff {t.id}: a {t.demand.basis} charge needs "
                             + ("the maximum demand" if t.demand.basis == "max_demand"
                                else "the building's contracted_kva"))
        demand_cost = base * t.demand.price * months
    return CostBreakdown(t.id, t.source, t.mark, lines,
                         sum(ln.cost or 0.0 for ln in lines),
                         demand_kw if t.demand and t.demand.basis == "max_demand" else None,
                         demand_cost, unpriced)


def split_hours(ivs: Iterable[Interval], t: Tariff, tz: ZoneInfo, start: int, end: int
                ) -> dict[int, list[Slice]]:
    """:func:`split` per clock hour of site time: hour start (epoch ms) → its slices.

    The same walk as :func:`split` with one more cut, at every hour, so the roll-ups can
    price each hour they store and Σ hours == :func:`split` over the same span (the
    amount is shared linearly by time; an extra cut moves nothing between bands). The
    roll-ups call it for every meter of every pass, so a day's band boundaries are worked
    out once (:func:`_band_at` walked from midnight) and reused for the day's intervals.
    """
    hour_ms = 3_600_000
    day: list[Any] = [0, 0, [], None, None]  # start, end, [(until, band)], valid, offset

    def day_of(cur: int) -> list[Any]:
        if not day[0] <= cur < day[1]:
            d0 = dt.datetime.fromtimestamp(cur / 1000, tz).replace(
                hour=0, minute=0, second=0, microsecond=0)
            midnight = d0 + dt.timedelta(days=1)  # wall clock, as _band_at counts
            pieces, c = [], d0
            while c < midnight:
                band, until = _band_at(t, c)
                pieces.append((int(until.timestamp() * 1000), band))
                c = until
            p = _price_key(t, d0.date())
            a, b = int(d0.timestamp() * 1000), int(midnight.timestamp() * 1000)
            off0 = d0.utcoffset()
            fixed = off0 == dt.datetime.fromtimestamp((b - 1) / 1000, tz).utcoffset()
            day[:] = [a, b, pieces, p.valid_from if p else None,
                      int(off0.total_seconds() * 1000) if fixed and off0 is not None else None]
        return day

    def cut(cur: int) -> tuple[tuple[int, str, dt.date | None], int]:
        _a, _b, pieces, valid, off = day_of(cur)
        until, band = next(pc for pc in pieces if cur < pc[0])
        if off is None:  # a day the zone changes its offset: ask the zone at this instant
            u = dt.datetime.fromtimestamp(cur / 1000, tz).utcoffset()
            off = int(u.total_seconds() * 1000) if u is not None else 0
        h0 = cur - (cur + off) % hour_ms
        return (h0, band, valid), min(h0 + hour_ms, until)

    out: dict[int, list[Slice]] = {}
    for (h, band, valid), amount in sorted(_share(ivs, start, end, cut).items(), key=lambda kv: (
            kv[0][0], str(kv[0][2]), BANDS.index(kv[0][1]) if kv[0][1] in BANDS else 9)):
        out.setdefault(h, []).append(Slice(band, valid, amount))
    return out
