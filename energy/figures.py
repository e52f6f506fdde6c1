"""The figures a surface shows, each computed once: a site's choices applied to the domain math.

:mod:`energy.accounting` and :mod:`energy.quota` hold the arithmetic; what they leave
to the caller — which factor a site converts gas with, which of a meter's settings
(rollover, replacements, jitter) shape its intervals, where a period that has not
ended stops, how many readings were expected — was decided separately by each
surface, and the report and the alert drifted apart. These functions make each of
those decisions in one place so the rule engine, the report, the history, the API
and the console can only show the same number. Pure: no I/O, no clock (``now`` is
always passed in).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from energy import accounting, quota, tariff
from energy.refdata import Ref
from energy.site import Building, Meter, Site

NOT_AN_ENERGY = "water is not an energy in 综合能耗 (GB/T 2589-2020)"


# --------------------------------------------------------------------------- consumption


def meter_intervals(meter: Meter, readings: Iterable[accounting.Reading | tuple[int, float]]
                    ) -> list[accounting.Interval]:
    """A meter's counter readings as consumption intervals, with *all* its site-file settings.

    Every surface must apply the rollover value, the recorded replacements and the jitter
    of the same meter, or a swapped meter reads as a reset in one place and as a swap in
    another (the report's quota year-to-date once ignored the replacements).
    """
    reps = [accounting.Replacement(r.at, r.old_final, r.new_initial) for r in meter.replacements]
    return accounting.intervals(readings, rollover_at=meter.rollover_at, replacements=reps,
                                jitter=meter.jitter)


@dataclass(frozen=True, slots=True)
class EdgeReading:
    """A meter's counter at one edge of a period, as its consumption there was counted."""

    ts: int               # the reading's time, or the edge itself when interpolated
    value: float
    interpolated: bool    # pro-rated between the two readings around the edge


def edge_readings(meter: Meter, readings: Iterable[accounting.Reading | tuple[int, float]],
                  start: int, end: int) -> tuple[EdgeReading | None, EdgeReading | None]:
    """The counter at the start and at the end of [start, end) (an energy ledger's 起止读数).

    The edge's own reading when there is one; else, inside an ordinary interval around the
    edge, the value pro-rated in time exactly as :func:`energy.accounting.consumption`
    pro-rates that interval, so end − start is the period's consumption; else (no reading
    before the start, or a reset, rollover or swap across the edge) the nearest reading
    inside the period. ``(None, None)`` when the period holds no reading and no interval.
    """
    pts = dict(sorted((r.ts, r.value) if isinstance(r, accounting.Reading) else
                      (int(r[0]), float(r[1])) for r in readings))
    ivs = meter_intervals(meter, pts.items())

    def at(t: int, inside: list[int]) -> EdgeReading | None:
        if t in pts:
            return EdgeReading(t, pts[t], False)
        for iv in ivs:
            if iv.start < t < iv.end and iv.kind == "normal":
                a, b = pts[iv.start], pts[iv.end]
                return EdgeReading(t, a + (b - a) * (t - iv.start) / (iv.end - iv.start), True)
        return EdgeReading(inside[0], pts[inside[0]], False) if inside else None

    within = [t for t in pts if start <= t <= end]
    return at(start, within), at(end, within[::-1])


def find_meter(site: Site, device: str, gateway: str | None = None) -> Meter | None:
    """The site file's meter for a stored device (by gateway and device when both are known)."""
    for _, m in site.meters():
        if m.device == device and (gateway is None or not gateway or m.gateway == gateway):
            return m
    return None


def not_submetered(total: float, subitems: Iterable[float]) -> float:
    """What no sub-meter covers: total − Σ sub-items (分项), shown, never silently dropped.

    A remainder within a millionth of the total is rounding of the same readings, shown as 0.
    """
    rest = total - sum(subitems)
    return 0.0 if abs(rest) < 1e-6 * max(1.0, total) else rest


def intensity(amount: float, per: float) -> float:
    """An amount per m² (or per person): the unit every quota and benchmark compares."""
    if per <= 0:
        raise ValueError("floor area or occupants must be positive")
    return amount / per


def change(current: float, before: float | None) -> float | None:
    """The relative change of a figure against an earlier period's (环比 against the
    previous period, 同比 against the same period a year before): (current − before) /
    before. None when there is nothing to compare with (no earlier figure, or it was 0)."""
    if before is None or before == 0:
        return None
    return (current - before) / before


def comparison_periods(kind: str, label: str) -> tuple[str | None, str]:
    """The labels an energy report compares with: (previous period, same period a year
    before). A year's previous period is the year before, so it has only the second."""
    if kind == "year":
        return None, str(int(label) - 1)
    y, m = (int(x) for x in label.split("-"))
    prev = f"{y - (m == 1)}-{12 if m == 1 else m - 1:02d}"
    return prev, f"{y - 1}-{m:02d}"


# --------------------------------------------------------------------------- conversions


def gas_ncv(site: Site, building: Building) -> float | None:
    """The measured NCV (MJ/m³) of the site's natural gas, from its gas boilers' settings.

    GB/T 2589-2020 prefers a measured calorific value to the preset factor. A boiler of the
    same building is preferred; only natural-gas boilers count (an oil boiler's NCV is per
    kg and says nothing about the gas).
    """
    gas = [(b.id == building.id, bo.ncv_mj_per_unit) for b in site.buildings for bo in b.boilers
           if bo.fuel == "natural_gas"]
    own = [v for same, v in gas if same]
    return own[0] if own else (gas[0][1] if gas else None)


def to_kgce(site: Site, building: Building, energy_type: str, amount: float
            ) -> tuple[accounting.Converted | None, str]:
    """kgce of an amount as this site converts it, or ``None`` and the reason there is none.

    Electricity uses the site's chosen factor (equivalent or equal value), gas the site's
    measured NCV when it has one, everything else the shipped default. Water is no energy.
    """
    if energy_type == "water":
        return None, NOT_AN_ENERGY
    ncv = gas_ncv(site, building) if energy_type == "gas" else None
    try:
        if ncv is not None:
            return accounting.to_kgce(amount, "gas", ncv_mj_per_m3=ncv), ""
        key = site.electricity_kgce if energy_type == "electricity" else None
        return accounting.to_kgce(amount, energy_type, factor=key), ""
    except Exception as exc:  # no factor shipped for this energy type: say so, never guess
        return None, f"no kgce factor: {exc}"


def to_co2(site: Site, energy_type: str, amount: float, year: int) -> accounting.Converted | None:
    """kg CO2 with the site's grid region and basis; ``None`` where enmon has no factor."""
    if energy_type not in ("electricity", "gas"):
        return None
    return accounting.to_co2(amount, energy_type, year=year, region=site.grid_region,
                             basis=site.co2_basis)


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True, slots=True)
class Span:
    """A period as far as it has happened: [start, end) with ``end`` = min(period end, now)."""

    start: int
    end: int
    full_end: int

    @property
    def partial(self) -> bool:
        return self.end < self.full_end


def clamp(start: int, end: int, now_ms: int) -> Span:
    """The part of [start, end) before ``now_ms``: a figure of the future is a guess.

    Raises ``ValueError`` for a period that has not begun (nothing to report on).
    """
    if start >= now_ms:
        raise ValueError("the period has not begun yet")
    return Span(start, min(end, now_ms), end)


# --------------------------------------------------------------------------- completeness


@dataclass(frozen=True, slots=True)
class Completeness:
    received: int
    expected: int

    @property
    def ratio(self) -> float | None:
        """Share of expected readings that arrived, capped at 1; ``None`` if none expected."""
        return min(1.0, self.received / self.expected) if self.expected else None


def expected_readings(start_ms: int, end_ms: int, poll_interval_s: float) -> int:
    """Readings a meter polled every ``poll_interval_s`` owes in [start, end).

    The caller passes an end no later than now (:func:`clamp`): hours in the future
    owe nothing, and counting them made a current month look 94 % incomplete.
    """
    if end_ms <= start_ms:
        return 0
    return int((end_ms - start_ms) / 1000 // poll_interval_s)


def meter_completeness(received: int, start_ms: int, end_ms: int, poll_interval_s: float
                       ) -> Completeness:
    """A meter's readings received vs expected from its configured poll interval."""
    return Completeness(received, expected_readings(start_ms, end_ms, poll_interval_s))


def batch_completeness(received: int, expected: int) -> Completeness:
    """A gateway's distinct batches stored vs the batches its sequence numbers say it sent."""
    return Completeness(received, expected)


# --------------------------------------------------------------------------- quota


@dataclass(frozen=True, slots=True)
class QuotaAt:
    """A building's quota evaluated at one moment, with everything a surface prints."""

    limit: Ref                  # intensity with its source
    per: float                  # m² or persons the allowance is spread over
    status: quota.QuotaStatus   # state, allowance, ytd, pro-rated, projection, fraction

    @property
    def ytd_intensity(self) -> float:
        return intensity(self.status.ytd, self.per)

    @property
    def projected_intensity(self) -> float | None:
        p = self.status.projected
        return intensity(p, self.per) if p is not None else None


def quota_limit(b: Building) -> Ref:
    """The building's quota intensity as a :class:`Ref` (own value or shipped, corrected)."""
    q = b.quota
    assert q is not None
    value = quota.building_intensity(b)
    if q.ref is None:
        return Ref(value=value, unit=q.quota_unit, source=q.source or "site file", mark="user")
    m2pp = b.floor_area_m2 / b.occupants if b.occupants else None
    correct = q.office_correction is not False
    return quota.quota_intensity(q.ref, q.level,
                                 hours_per_year=b.operating_hours_per_year if correct else None,
                                 m2_per_person=m2pp if correct else None)


def year_start(ts_ms: int, tz: ZoneInfo) -> int:
    """1 January 00:00 (site time) of the year containing the instant just before ``ts_ms``."""
    d = dt.datetime.fromtimestamp((ts_ms - 1) / 1000, tz)
    return int(dt.datetime(d.year, 1, 1, tzinfo=tz).timestamp() * 1000)


def quota_at(b: Building, *, ytd: float, at_ms: int, tz: ZoneInfo) -> QuotaAt:
    """The quota state of a building whose year-to-date at ``at_ms`` is ``ytd``.

    The rule engine evaluates at its pass time (now), so a report must pass
    ``min(period end, now)``: evaluated at the end of a month still running, the share of
    the year due is that of the month's end and the projection is too low.
    """
    q = b.quota
    assert q is not None
    allowance = quota.annual_allowance(quota.building_intensity(b), basis=q.basis,
                                       floor_area_m2=b.floor_area_m2, occupants=b.occupants)
    frac = quota.year_fraction(at_ms - 1, tz, q.seasonal_weights)
    st = quota.evaluate_quota(ytd=ytd, allowance=allowance, fraction=frac,
                              min_fraction=q.min_fraction, warn_ratio=q.warn_ratio)
    per = b.floor_area_m2 if q.basis == "area" else float(max(1, b.occupants))
    return QuotaAt(quota_limit(b), per, st)


def quota_ytd(site: Site, b: Building, amounts: Sequence[tuple[Meter, float]]) -> float:
    """What a building's quota compares: electricity kWh, or every energy type in kgce.

    ``amounts`` are (meter, consumption since 1 January) of the building's meters; only
    building totals count (sub-meters are inside them).
    """
    q = b.quota
    assert q is not None
    total = 0.0
    for m, amount in amounts:
        if not m.building_total:
            continue
        if q.measure == "kWh":
            total += amount if m.energy_type == "electricity" else 0.0
        else:
            conv, _ = to_kgce(site, b, m.energy_type, amount)
            total += conv.value if conv is not None else 0.0
    return total


# --------------------------------------------------------------------------- cost


def tariff_of(site: Site, building: Building, energy_type: str) -> tariff.Tariff | None:
    """The tariff a building's energy type is billed on (building override, then site)."""
    tid = _tariff_id(site, building, energy_type)
    return tariff.find(tid, site.tariff_definitions) if tid else None


def _tariff_id(site: Site, building: Building, energy_type: str) -> str | None:
    return building.tariffs.get(energy_type) or site.tariffs.get(energy_type) or None


def counter_step_min(site: Site) -> int:
    """The step (minutes) a month's report reads counters at: an hour, or finer when a
    tariff of the site changes band within the hour (so band costs split as in the
    roll-ups, which read every reading)."""
    return min((tariff.boundary_step_min(t) for t in site_tariffs(site).values()
                if t is not None), default=60)


def site_tariffs(site: Site) -> dict[tuple[str, str], tariff.Tariff | None]:
    """(building, energy type) → :func:`tariff_of` for every energy type a building meters,
    each distinct tariff found once (a lookup reads the shipped tariffs' file, and a
    roll-up pass prices every meter of a site)."""
    found: dict[str, tariff.Tariff] = {}
    out: dict[tuple[str, str], tariff.Tariff | None] = {}
    for b in site.buildings:
        for et in sorted({m.energy_type for m in b.meters}
                         | {v.energy_type for v in b.virtual_meters}):
            tid = _tariff_id(site, b, et)
            if tid and tid not in found:
                found[tid] = tariff.find(tid, site.tariff_definitions)
            out[(b.id, et)] = found[tid] if tid else None
    return out


def building_cost(site: Site, building: Building, energy_type: str,
                  ivs: Sequence[accounting.Interval], start: int, end: int, *,
                  billing_months: float = 0.0) -> tariff.CostBreakdown | None:
    """The cost of a building's consumption of one energy type in [start, end).

    ``ivs`` are the intervals of the meters whose sum is the building's total (building
    totals, as the report sums them); the maximum demand is taken from their sum, as the
    utility meters it at the supply point. ``billing_months`` adds the demand/capacity
    charge (1 for a month; 0 for a day or a part of a month). ``None``: no tariff set.
    """
    t = tariff_of(site, building, energy_type)
    if t is None:
        return None
    tz = ZoneInfo(site.timezone)
    slices = tariff.split(ivs, t, tz, start, end)
    demand = None
    if t.demand is not None and t.demand.basis == "max_demand" and billing_months > 0:
        demand = tariff.max_demand_kw(ivs, start, end, t.demand.window_min)
    return tariff.cost(slices, t, demand_kw=demand, capacity_kva=building.contracted_kva,
                       months=billing_months)


def subitem_cost(site: Site, building: Building, energy_type: str,
                 ivs: Sequence[accounting.Interval], start: int, end: int
                 ) -> tariff.CostBreakdown | None:
    """The energy charge of a sub-item's (分项) meters in [start, end) on the building's tariff.

    A sub-meter is priced with its building's tariff, band by band, as the building's own
    consumption is (:func:`building_cost`), so the sub-items' charges and the rest add up to
    the building's energy charge. No demand charge: the utility meters the maximum demand
    at the supply point, and a share of it per sub-item would be an allocation, not a bill.
    ``None``: no tariff set for that energy type.
    """
    return building_cost(site, building, energy_type, ivs, start, end, billing_months=0.0)


def hourly_cost(site: Site, building: Building, energy_type: str,
                ivs: Sequence[accounting.Interval], start: int, end: int
                ) -> dict[int, tariff.CostBreakdown]:
    """The energy charge of each clock hour (site time) in [start, end) of a meter's intervals.

    The roll-ups store it beside each hour's amount. The same split and prices as
    :func:`building_cost` (cut at every hour as well), so the hours of a month add up to
    the report's energy charge of that month. The demand charge is not here: it is billed
    per month from the building's maximum demand, not per hour. ``{}``: no tariff set.
    """
    t = tariff_of(site, building, energy_type)
    return hourly_cost_on(t, site, ivs, start, end) if t is not None else {}


def hourly_cost_on(t: tariff.Tariff, site: Site, ivs: Sequence[accounting.Interval],
                   start: int, end: int) -> dict[int, tariff.CostBreakdown]:
    """:func:`hourly_cost` on a tariff already looked up (:func:`tariff_of`): a roll-up pass
    prices many meters of one building and looks its tariff up once."""
    hours = tariff.split_hours(ivs, t, ZoneInfo(site.timezone), start, end)
    return {h: tariff.cost(slices, t) for h, slices in hours.items()}


def cost_bands(site: Site, building: Building, energy_type: str) -> tuple[str, ...]:
    """The bands the building's tariff of an energy type prices (``("all",)`` for a flat
    price; ``()`` without a tariff): the per-band fields a roll-up writes, zeros included."""
    t = tariff_of(site, building, energy_type)
    return tariff_bands(t) if t is not None else ()


def tariff_bands(t: tariff.Tariff) -> tuple[str, ...]:
    """The bands a tariff's periods use, in :data:`energy.tariff.BANDS` order (``("all",)``
    for a flat price)."""
    if not t.seasons:
        return ("all",)
    used = {p.band for s in t.seasons for p in s.periods}
    return tuple(b for b in tariff.BANDS if b in used)
