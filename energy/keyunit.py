"""Key energy-using unit statistics (重点用能单位能耗统计): day and month, and the upload document.

A key energy-using unit reports, per day and per month, its comprehensive energy
consumption (综合能源消费量) in tce on both bases — equivalent (等价值: electricity at the
region's primary-energy value) and calorific (当量值: electricity at 0.1229 kgce/kWh) — the
consumption of each energy type, the output of products that have a quota and their
unit-product energy consumption, and whether the data meet the platform's quality rules.

Consumption comes from the meters' counters through :func:`energy.figures.meter_intervals`
and :func:`energy.accounting.consumption`, conversion through
:func:`energy.accounting.to_kgce` / :func:`energy.figures.to_kgce`: the statistics cannot
disagree with the report. Pure: readings and times are passed in; no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from energy import accounting, figures, refdata
from energy.refdata import Mark, Ref
from energy.site import KeyUnit, KeyUnitProduct, KeyUnitQuality, KeyUnitSource, Site
from enmon.config import StrictModel, load_model
from enmon.errors import ConfigError

SCHEMA = "enmon.keyunit/1"
Basis = Literal["equivalent", "calorific"]
Kind = Literal["day", "month"]
BASES: tuple[Basis, ...] = ("equivalent", "calorific")
BASIS_ZH = {"equivalent": "等价值", "calorific": "当量值"}

# GB/T 2589-2020 distinguishes primary energy (taken from nature) from secondary energy
# (converted from it); the platform asks for each type's consumption under its own name.
PRIMARY = frozenset({"coal", "gas"})
ENERGY_ZH = {"electricity": "电力", "gas": "天然气", "coal": "原煤", "steam": "蒸汽",
             "heat": "热力", "diesel": "柴油", "lpg": "液化石油气", "cooling": "冷量",
             "other": "其他能源"}

# The shipped factor for counters whose unit differs from the default factor's
# (a coal ledger in t; steam, which has no default because its value depends on enthalpy).
COUNTER_FACTOR = {"coal_mass_t": "raw_coal_t", "steam_mass_t": "steam_low_pressure"}
# Where the quality thresholds' defaults come from (they are configurable per unit).
QUALITY_SOURCE = ("defaults as published by provincial key-unit online monitoring platforms "
                  "(completeness ≥ 90 %, Σ days vs month within 5 %, stamps 00:00 ± 1 min and "
                  "the 1st ± 1 day); the NDRC upload protocol was not available: set "
                  "key_units[].quality to your platform's")


# --------------------------------------------------------------------------- product quotas


class ProductQuota(Ref):
    product: str
    level: Literal["limit", "entry", "advanced", "user"] = "limit"
    basis: Basis = "calorific"
    value: float = Field()  # may be negative (a converter recovers more than it uses)


class ProductQuotas(StrictModel):
    quotas: dict[str, ProductQuota]


@cache
def product_quotas(path: Path | None = None) -> ProductQuotas:
    """``product_quotas.yaml`` from the shipped data or ``ENMON_RULES_DATA``."""
    return load_model(ProductQuotas, path or refdata.data_dir() / "product_quotas.yaml")


def product_quota(key: str) -> ProductQuota:
    q = product_quotas().quotas
    if key not in q:
        import difflib

        near = ", ".join(difflib.get_close_matches(key, q, n=3)) or ", ".join(sorted(q))
        raise ConfigError("energy/data/product_quotas.yaml", key,
                          f"no product quota {key!r}", f"use one of {near}")
    return q[key]


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Period:
    kind: Kind
    label: str          # 2026-11-03 or 2026-11
    start: int          # epoch ms, site time
    end: int
    stat_time: str      # ISO 8601 with the site's offset


def period(kind: Kind, label: str, tz: str | ZoneInfo) -> Period:
    """A day (``2026-11-03``) or month (``2026-11``) in the site's time zone."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if kind == "day":
        d = dt.date.fromisoformat(label)
        first = dt.datetime(d.year, d.month, d.day, tzinfo=zone)
        nxt = first + dt.timedelta(days=1)
        nxt = dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    else:
        y, m = (int(x) for x in label.split("-"))
        first = dt.datetime(y, m, 1, tzinfo=zone)
        nxt = dt.datetime(y + m // 12, m % 12 + 1, 1, tzinfo=zone)
    return Period(kind, first.strftime("%Y-%m-%d" if kind == "day" else "%Y-%m"),
                  int(first.timestamp() * 1000), int(nxt.timestamp() * 1000),
                  first.isoformat())


def days_of(month: Period, tz: str | ZoneInfo) -> list[Period]:
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    first = dt.datetime.fromtimestamp(month.start / 1000, zone).date()
    out: list[Period] = []
    d = first
    while (p := period("day", d.isoformat(), zone)).start < month.end:
        out.append(p)
        d += dt.timedelta(days=1)
    return out


# --------------------------------------------------------------------------- consumption


@dataclass(frozen=True, slots=True)
class SourceUse:
    """One meter's consumption in the period and its kgce on each basis."""

    meter: str
    energy_type: str
    amount: float
    unit: str
    kgce: dict[str, accounting.Converted]


def _factor(site: Site, ku: KeyUnit, src: KeyUnitSource, basis: Basis, amount: float
            ) -> accounting.Converted:
    meter = site.meter(src.meter)
    et = meter.energy_type
    if et == "electricity":
        key = "electricity_equivalent" if basis == "calorific" else ku.equal_value_electricity
        return accounting.to_kgce(amount, et, factor=key)
    own = src.factor or COUNTER_FACTOR.get(meter.counter)
    if own is not None:
        return accounting.to_kgce(amount, et, factor=own)
    building = next(b for b, m in site.meters() if m.id == meter.id)
    conv, why = figures.to_kgce(site, building, et, amount)
    if conv is None:
        raise ConfigError("site", f"key_units.{ku.code}.sources.{src.meter}", why,
                          "set factor: to a coal_equivalent key with its source")
    return conv


def _consumption(site: Site, meter_id: str, readings: Sequence[accounting.Reading],
                 p: Period) -> float:
    return accounting.consumption(figures.meter_intervals(site.meter(meter_id), readings),
                                  p.start, p.end)


def source_uses(site: Site, ku: KeyUnit, readings: Mapping[str, Sequence[accounting.Reading]],
                p: Period) -> list[SourceUse]:
    out: list[SourceUse] = []
    for src in ku.sources:
        meter = site.meter(src.meter)
        amount = _consumption(site, src.meter, readings.get(src.meter, ()), p)
        from enmon import quantities

        out.append(SourceUse(src.meter, meter.energy_type, amount,
                             quantities.get(meter.counter).unit,
                             {b: _factor(site, ku, src, b, amount) for b in BASES}))
    return out


def comprehensive_tce(uses: Sequence[SourceUse], basis: Basis) -> float:
    """综合能源消费量 in tce: Σ kgce / 1000 (water is no energy and never a source)."""
    return sum(u.kgce[basis].value for u in uses) / 1000.0


@dataclass(frozen=True, slots=True)
class ProductStat:
    code: str
    name: str
    output_t: float
    unit_energy_kgce_t: float | None    # None when nothing was produced
    basis: Basis
    quota: ProductQuota | None
    within_quota: bool | None


def product_stat(site: Site, product: KeyUnitProduct, uses: Sequence[SourceUse],
                 output_readings: Sequence[accounting.Reading], p: Period) -> ProductStat:
    """Output and unit-product energy (kgce/t) on the quota's basis, against the quota."""
    q = product_quota(product.quota) if product.quota else None
    basis: Basis = q.basis if q else "calorific"
    output = _consumption(site, product.output_meter, output_readings, p)
    mine = [u for u in uses if not product.sources or u.meter in product.sources]
    kgce = sum(u.kgce[basis].value for u in mine)
    unit_energy = kgce / output if output > 0 else None
    within = None if q is None or unit_energy is None else unit_energy <= q.value
    return ProductStat(product.code, product.name or product.code, output, unit_energy,
                       basis, q, within)


# --------------------------------------------------------------------------- quality


def completeness(site: Site, ku: KeyUnit, counts: Mapping[str, int], p: Period,
                 rules: KeyUnitQuality, now_ms: int | None = None) -> dict[str, Any]:
    """Uploaded / expected readings of every meter feeding the unit, against the minimum.

    Expected readings follow each meter's ``poll_interval_s`` (a hand-kept ledger sets
    86400: one entry a day) over the part of the period that has happened.
    """
    end = p.end if now_ms is None else min(p.end, now_ms)
    mids = [s.meter for s in ku.sources] + [pr.output_meter for pr in ku.products]
    per: dict[str, float | None] = {}
    got = want = 0
    for mid in mids:
        c = figures.meter_completeness(counts.get(mid, 0), p.start, end,
                                       site.meter(mid).poll_interval_s)
        per[mid] = c.ratio
        got += min(c.received, c.expected)
        want += c.expected
    ratio = figures.batch_completeness(got, want).ratio
    return {"value": ratio, "min": rules.completeness_min, "meters": per,
            "ok": ratio is not None and ratio >= rules.completeness_min}


def day_month(daily: Sequence[float], monthly: float, rules: KeyUnitQuality) -> dict[str, Any]:
    """Σ daily totals against the monthly total: |Σ − M| / M within the tolerance."""
    total = sum(daily)
    dev = abs(total - monthly) / abs(monthly) if monthly else (0.0 if total == 0 else None)
    return {"daily_sum": total, "monthly": monthly, "deviation": dev,
            "max": rules.day_month_tolerance,
            "ok": dev is not None and dev <= rules.day_month_tolerance}


def stamp(p: Period, stamped_ms: int, rules: KeyUnitQuality) -> dict[str, Any]:
    """A statistic's stamp against its period start: 00:00 ± 1 min, the 1st ± 1 day."""
    off = (stamped_ms - p.start) / 1000.0
    limit = rules.day_stamp_tolerance_s if p.kind == "day" else rules.month_stamp_tolerance_s
    return {"offset_s": off, "max_s": limit, "ok": abs(off) <= limit}


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class Statistics:
    period: Period
    uses: list[SourceUse]
    tce: dict[Basis, float]
    products: list[ProductStat]
    quality: dict[str, Any] = field(default_factory=dict)


def statistics(site: Site, ku: KeyUnit, readings: Mapping[str, Sequence[accounting.Reading]],
               p: Period, *, daily_tce: Mapping[Basis, Sequence[float]] | None = None,
               stamped_ms: int | None = None, now_ms: int | None = None) -> Statistics:
    """A unit's statistics for one day or month, with the quality rules checked.

    Args:
        readings: every meter's readings around the period (one reading before and after
            each edge lets the edge intervals be pro-rated).
        daily_tce: for a month, the daily comprehensive totals per basis as reported (the
            Σ days vs month rule); left out, the check is skipped.
        stamped_ms: the time the statistic is stamped with (default: the period start).
        now_ms: for a period not yet over, completeness counts only what has happened.
    """
    uses = source_uses(site, ku, readings, p)
    tce = {b: comprehensive_tce(uses, b) for b in BASES}
    products = [product_stat(site, pr, uses, readings.get(pr.output_meter, ()), p)
                for pr in ku.products]
    inside = {mid: sum(1 for r in rs if p.start <= r.ts < p.end) for mid, rs in readings.items()}
    rules = ku.quality
    q: dict[str, Any] = {"completeness": completeness(site, ku, inside, p, rules, now_ms),
                         "stamp": stamp(p, p.start if stamped_ms is None else stamped_ms,
                                        rules)}
    if p.kind == "month" and daily_tce is not None:
        q["day_month"] = {b: day_month(daily_tce[b], tce[b], rules) for b in BASES}
        q["day_month"]["ok"] = all(q["day_month"][b]["ok"] for b in BASES)
    q["ok"] = all(v["ok"] for v in q.values())
    q["source"] = QUALITY_SOURCE
    return Statistics(p, uses, tce, products, q)


def _ind(code: str, name: str, value: float, unit: str, basis: Basis | None
         ) -> dict[str, Any]:
    return {"code": code, "name": name, "value": float(value), "unit": unit, "basis": basis}


def indicators(stats: Statistics) -> list[dict[str, Any]]:
    out = [_ind(f"comprehensive_energy.{b}", f"综合能源消费量({BASIS_ZH[b]})", stats.tce[b],
                "tce", b) for b in BASES]
    by_type: dict[str, tuple[float, str]] = {}
    for u in stats.uses:
        prev = by_type.get(u.energy_type, (0.0, u.unit))
        by_type[u.energy_type] = (prev[0] + u.amount, u.unit)
    for et, (amount, unit) in by_type.items():
        kind = "一次能源" if et in PRIMARY else "二次能源"
        out.append(_ind(f"energy.{et}", f"{ENERGY_ZH.get(et, et)}消费量({kind})", amount,
                        unit, None))
    for pr in stats.products:
        out.append(_ind(f"output.{pr.code}", f"{pr.name}产量", pr.output_t, "t", None))
        if pr.unit_energy_kgce_t is not None:
            out.append(_ind(f"unit_energy.{pr.code}", f"{pr.name}单位产品综合能耗",
                            pr.unit_energy_kgce_t, "kgce/t", pr.basis))
        if pr.quota is not None:
            out.append(_ind(f"unit_energy_quota.{pr.code}", f"{pr.name}单位产品能耗限额",
                            pr.quota.value, pr.quota.unit, pr.quota.basis))
    return out


def document(ku: KeyUnit, stats: Statistics, *, generated_at_ms: int) -> dict[str, Any]:
    """The upload document ``enmon.keyunit/1`` (format fixed: see docs/keyunit.md)."""
    p = stats.period
    return {"schema": SCHEMA, "unit": {"code": ku.code, "name": ku.name}, "kind": p.kind,
            "period": p.label, "stat_time": p.stat_time, "indicators": indicators(stats),
            "quality": stats.quality, "generated_at": int(generated_at_ms)}


def factor_marks(stats: Statistics) -> dict[str, Mark]:
    """Each factor used and its confidence mark (a report names what it converted with)."""
    return {u.kgce[b].factor.source: u.kgce[b].factor.mark for u in stats.uses for b in BASES}
