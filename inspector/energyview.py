"""The console's per-building energy view (能耗分析): bars by day, ISO week or month in site time,
stacked by sub-item, beside the previous period (环比) and the same period a year before (同比).

A bucket is a local calendar day, an ISO week (Monday 00:00 site time to the next Monday) or
a calendar month of the site's time zone. The figures are the report's: counters read as
the first reading of each hour (:meth:`inspector.store.Store.counter_points`, with the true
readings around a meter swap, :func:`inspector.store.exact_at_swaps`), turned into intervals
with the meter's site-file settings (:func:`energy.figures.meter_intervals`) and summed per
bucket with :func:`energy.accounting.consumption` — a building's total from its meters
marked ``building_total``, the electricity sub-items (分项) from its sub-meters, what they do
not cover as "not sub-metered" (:func:`energy.figures.not_submetered`). The month bucket of
a building is therefore the monthly report's figure of that building, to the last digit
(``tests/inspector/test_energy_view.py``).

Comparisons: the previous period is the range shifted back by its own length in buckets
(30 days before 30 days, the 12 months before 12 months); the same period a year before is
the same calendar days (a 29 February is compared with 28 February), the ISO weeks 52 weeks
earlier (so Monday is compared with Monday), the same months. A bucket still running (it
holds now) is compared with as long a part of the other bucket. A bucket no reading covers
has no figure (``None``), never a 0, and no change is given against it.

:func:`build_view` is pure; :func:`fetch_view` reads what it needs and calls it.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from energy import accounting, figures
from energy.site import Building, Meter, Site
from inspector.i18n import N_, Lang, babel_locale, fmt_days, fmt_month, gettext_for
from inspector.labels import ENERGY_TYPES, SUBITEMS
from inspector.report import SUBITEM_NAMES, UNITS, is_subitem_meter, subitem_lines

Every = Literal["day", "week", "month"]
EVERY: tuple[Every, ...] = ("day", "week", "month")
MAX_DAYS = 400  # a request's range: a year of months, a year of days (and their comparisons)
DEFAULT_BUCKETS: dict[str, int] = {"day": 30, "week": 12, "month": 12}
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# readable epochs only: a year before 2000 is a typing error, and its year-ago is too
EARLIEST_MS = 946_598_400_000  # 2000-01-01 in any zone (1999-12-31 00:00 UTC)
LATEST_MS = 4_133_980_800_000  # 2101-01-01 UTC


class ViewError(ValueError):
    """A request the view cannot answer (the API's 422): the message says what to change.

    ``message`` is a catalog msgid with named placeholders (``params``), translated for the
    reader by :meth:`text`; ``str()`` is the English sentence (logs, tests)."""

    def __init__(self, message: str, **params: Any) -> None:
        self.message, self.params = message, params
        super().__init__(self.text("en"))

    def text(self, lang: Lang) -> str:
        """The sentence in ``lang``; energy types (``energy``, ``types``) by their names."""
        _ = gettext_for(lang)

        def name(code: str) -> str:
            return str(_(ENERGY_TYPES[code])) if code in ENERGY_TYPES else code

        sep = "、" if lang == "zh-CN" else ", "
        p = {k: sep.join(map(name, v)) or "-" if k == "types" else name(v) if k == "energy"
             else v for k, v in self.params.items()}
        return str(_(self.message, **p))


# --------------------------------------------------------------------------- buckets


def _local(ts: int, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts / 1000, tz)


def _at(d: dt.date, tz: ZoneInfo) -> int:
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000)


def bucket_floor(ts: int, every: Every, tz: ZoneInfo) -> int:
    """The start of the bucket holding ``ts``: the day's 00:00, the ISO week's Monday 00:00
    or the month's 1st 00:00, in site time (:func:`energy.accounting.bucket_start`)."""
    if every == "week":
        d = _local(ts, tz).date()
        return _at(d - dt.timedelta(days=d.weekday()), tz)
    return accounting.bucket_start(ts, every, tz)


def bucket_next(start: int, every: Every, tz: ZoneInfo) -> int:
    """The start of the bucket after the one starting at ``start`` (DST-safe: local dates)."""
    if every == "week":
        return _at(_local(start, tz).date() + dt.timedelta(days=7), tz)
    return accounting.next_bucket(start, every, tz)


def _shift(start: int, every: Every, n: int, tz: ZoneInfo) -> int:
    """The bucket ``n`` buckets before the one starting at ``start``."""
    d = _local(start, tz).date()
    if every == "day":
        return _at(d - dt.timedelta(days=n), tz)
    if every == "week":
        return _at(d - dt.timedelta(days=7 * n), tz)
    months = d.year * 12 + d.month - 1 - n
    return _at(dt.date(months // 12, months % 12 + 1, 1), tz)


def _year_before(start: int, every: Every, tz: ZoneInfo) -> int:
    """The bucket a year before: same date (29 Feb → 28 Feb), 52 weeks, same month."""
    if every == "week":
        return _shift(start, "week", 52, tz)
    if every == "month":
        return _shift(start, "month", 12, tz)
    d = _local(start, tz).date()
    try:
        return _at(d.replace(year=d.year - 1), tz)
    except ValueError:  # 29 February
        return _at(d.replace(year=d.year - 1, day=28), tz)


def _run(first: int, n: int, every: Every, tz: ZoneInfo) -> list[tuple[int, int]]:
    out = []
    b = first
    for _ in range(n):
        nb = bucket_next(b, every, tz)
        out.append((b, nb))
        b = nb
    return out


@dataclass(frozen=True, slots=True)
class Buckets:
    """The buckets of the view and of its two comparisons (each as many, in order)."""

    every: Every
    current: list[tuple[int, int]]
    previous: list[tuple[int, int]]
    last_year: list[tuple[int, int]]
    now: int

    @property
    def start(self) -> int:
        return self.current[0][0]

    @property
    def end(self) -> int:
        """Where the figures stop: the last bucket's end, or now if it is still running."""
        return min(self.current[-1][1], self.now)

    @property
    def partial(self) -> bool:
        return self.current[-1][1] > self.now

    def cut(self, i: int, other: tuple[int, int]) -> int:
        """The end of a comparison bucket: as much of it as of the current one has passed."""
        s, e = self.current[i]
        return min(other[1], other[0] + (min(e, self.now) - s)) if e > self.now else other[1]


def buckets(every: str, start: int | None, end: int | None, now: int, tz: str) -> Buckets:
    """The whole buckets covering [start, end), none beginning after now.

    ``start`` defaults to 30 days, 12 weeks or 12 months before the bucket holding ``end``
    (which defaults to now). Raises :class:`ViewError` for an unknown ``every``, an empty or
    reversed range, a range beginning after now or one longer than :data:`MAX_DAYS` days.
    """
    if every not in EVERY:
        raise ViewError(N_("every %(every)s: use day, week or month"), every=every[:20])
    ev: Every = every
    zone = ZoneInfo(tz)
    e = min(end if end is not None else now, now)
    if start is None:
        start = _shift(bucket_floor(max(e - 1, EARLIEST_MS), ev, zone), ev,
                       DEFAULT_BUCKETS[ev] - 1, zone)
    for t in (start, e):
        if not EARLIEST_MS <= t < LATEST_MS:
            raise ViewError(N_("the range must lie between 2000 and 2100"))
    if start >= now:
        raise ViewError(N_("start is in the future: nothing was read yet"))
    if e <= start:
        raise ViewError(N_("end must be after start"))
    if e - start > MAX_DAYS * DAY_MS:
        raise ViewError(N_("at most %(days)s days per request: choose a later start or an "
                           "earlier end"), days=MAX_DAYS)
    first = bucket_floor(start, ev, zone)
    current = []
    b = first
    while b < e:
        nb = bucket_next(b, ev, zone)
        current.append((b, nb))
        b = nb
    n = len(current)
    return Buckets(ev, current, _run(_shift(first, ev, n, zone), n, ev, zone),
                   _run(_year_before(first, ev, zone), n, ev, zone), now)


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True, slots=True)
class Figure:
    """A building's consumption of one energy type in one bucket, with its sub-items."""

    start: int
    end: int  # where the figure stops (a running bucket: now)
    total: float | None  # None: no reading of a building-total meter covers the bucket
    parts: dict[str, float] = field(default_factory=dict)  # sub-item code → amount ("" rest)


def meters_of(b: Building, energy_type: str) -> list[Meter]:
    """The meters the view sums: the building's totals of that energy type and, for
    electricity, its sub-item meters (the report's choice, :func:`split`)."""
    return [m for m in b.meters if m.energy_type == energy_type and (
        m.building_total or is_subitem_meter(m))]


def split(b: Building, energy_type: str,
          ivs: Mapping[tuple[str, str], Sequence[accounting.Interval]], start: int, end: int
          ) -> Figure:
    """The building's total of ``energy_type`` in [start, end) and its electricity sub-items
    with the rest, as :func:`inspector.report.build_report` sums them: the totals of the
    meters marked ``building_total``, the sub-meters the report lists
    (:func:`inspector.report.is_subitem_meter`) by category, then the report's
    :func:`inspector.report.subitem_lines` (the rest by :func:`energy.figures.not_submetered`)."""
    total = 0.0
    covered = False
    sub: dict[str, float] = {}
    for m in b.meters:
        if m.energy_type != energy_type:
            continue
        mivs = _within(ivs.get((m.gateway, m.device), ()), start, end)
        amount = accounting.consumption(mivs, start, end)
        if m.building_total:
            total += amount
            covered = covered or any(iv.start < end and start < iv.end for iv in mivs)
        elif is_subitem_meter(m):
            sub[m.category] = sub.get(m.category, 0.0) + amount
    if not covered:
        return Figure(start, end, None)
    return Figure(start, end, total, {code: kwh for code, _name, kwh in subitem_lines(
        sub, total if energy_type == "electricity" else None)})


def _within(ivs: Sequence[accounting.Interval], start: int, end: int
            ) -> Sequence[accounting.Interval]:
    """The intervals (in time order, as :func:`energy.accounting.intervals` makes them) that
    reach into [start, end): the others add nothing to its consumption, and a year of day
    buckets over every hour of two years would otherwise cost buckets × intervals."""
    lo = bisect.bisect_right(ivs, start, key=lambda iv: iv.end)
    hi = bisect.bisect_left(ivs, end, lo=lo, key=lambda iv: iv.start)
    return ivs[lo:hi]


def change(current: float | None, before: float | None) -> float | None:
    """:func:`energy.figures.change` (the report's 环比/同比), ``None`` without a current
    figure."""
    return None if current is None else figures.change(current, before)


@dataclass(slots=True)
class View:
    site: str
    building: str
    building_name: str
    energy_type: str
    unit: str
    tz: str
    span: Buckets
    current: list[Figure]
    previous: list[Figure]
    last_year: list[Figure]
    codes: list[str]  # the sub-items shown, in order ("" = not sub-metered, last)


def build_view(*, site: Site, building: str, energy_type: str, span: Buckets,
               counters: Mapping[tuple[str, str], Sequence[tuple[int, float]]]) -> View:
    """The view from hourly counter readings covering the three runs of buckets (with a
    reading before the earliest and after the latest, as the report reads them)."""
    b = site.building(building)
    ivs = {(m.gateway, m.device): figures.meter_intervals(m, counters.get((m.gateway, m.device),
                                                                          []))
           for m in meters_of(b, energy_type)}
    cur = [split(b, energy_type, ivs, s, min(e, span.now)) for s, e in span.current]
    prev = [split(b, energy_type, ivs, o[0], span.cut(i, o))
            for i, o in enumerate(span.previous)]
    ly = [split(b, energy_type, ivs, o[0], span.cut(i, o)) for i, o in enumerate(span.last_year)]
    codes = sorted({c for f in (*cur, *prev, *ly) for c in f.parts if c})
    if codes:
        codes.append("")
    return View(site.site, b.id, b.name or b.id, energy_type, UNITS.get(energy_type, ""),
                site.timezone, span, cur, prev, ly, codes)


# --------------------------------------------------------------------------- reading


def viewable_types(b: Building) -> list[str]:
    """The energy types the view can show for building ``b``: those it has a total meter of
    (electricity first), what the console offers and the view accepts."""
    return sorted({m.energy_type for m in b.meters if m.building_total},
                  key=lambda t: (t != "electricity", t))


async def fetch_view(store: Any, *, site: Site, building: str, energy_type: str, every: str,
                     start: int | None = None, end: int | None = None,
                     now_ms: int | None = None) -> View:
    """Read the counters of the building's meters over the view and its comparisons, as
    :func:`inspector.store.fetch_report` reads a month's (the first reading of each hour, or
    of each half hour on a site with a tariff changing band at :30; from a day before; the
    true readings at a meter swap; for a bucket still running each counter's last reading
    before now), and build the view.

    Raises ``KeyError`` for an unknown building, :class:`ViewError` for a range it refuses
    or an energy type the building does not meter as a total.
    """
    import time

    from inspector.store import counters_of

    b = next((x for x in site.buildings if x.id == building), None)
    if b is None:
        raise KeyError(f"no building {building!r} in site {site.site!r}")
    have = viewable_types(b)
    if energy_type not in have:
        raise ViewError(N_("building %(building)s has no total meter of %(energy)s; it meters "
                           "%(types)s"), building=building, energy=energy_type[:20],
                        types=tuple(sorted(have)))
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    span = buckets(every, start, end, now, site.timezone)
    meters = meters_of(b, energy_type)
    # the month report's step: an hour, finer where a tariff of the site changes band within
    # the hour (energy.figures.counter_step_min), so a bucket's edges fall on the same readings
    step = figures.counter_step_min(site) * 60_000
    lo = min(span.previous[0][0], span.last_year[0][0]) - DAY_MS
    hi = span.end if span.partial else span.end + step
    counters = await counters_of(store, site.site, meters, lo, hi, step,
                                 last_from=span.current[-1][0] if span.partial else None)
    return build_view(site=site, building=building, energy_type=energy_type, span=span,
                      counters=counters)


# --------------------------------------------------------------------------- the answer


def bucket_label(start: int, end: int, every: Every, tz: str, lang: Lang) -> tuple[str, str]:
    """(label, short label) of a bucket in the reader's language and site time: 10月1日 /
    1 Oct; 第40周（9月28日至10月4日） / week 40 (28 Sept – 4 Oct); 2026年10月 / October 2026.
    The short one is for the chart's axis."""
    from babel.dates import format_skeleton

    zone = ZoneInfo(tz)
    d = _local(start, zone).date()
    loc = babel_locale(lang)
    if every == "day":
        text = format_skeleton("MMMd", d, locale=loc)
        return text, format_skeleton("Md", d, locale=loc)
    if every == "week":
        _ = gettext_for(lang)
        days = fmt_days(start, end - 1, tz, lang)
        return (_(N_("week %(week)s (%(days)s)"), week=d.isocalendar()[1], days=days),
                format_skeleton("Md", d, locale=loc))
    return fmt_month(start, tz, lang), format_skeleton("yM", d, locale=loc)


def view_dict(v: View, lang: Lang) -> dict[str, Any]:
    """The view as the API answers it: codes stay codes, names and labels in ``lang``."""
    _ = gettext_for(lang)
    every = v.span.every

    def fig(f: Figure, bucket: tuple[int, int]) -> dict[str, Any]:
        label, short = bucket_label(bucket[0], bucket[1], every, v.tz, lang)
        return {"start": bucket[0], "end": bucket[1], "until": f.end, "label": label,
                "short": short, "total": f.total,
                "parts": dict(f.parts) if f.total is not None else {}}

    rows = []
    for i, (f, p, y) in enumerate(zip(v.current, v.previous, v.last_year, strict=True)):
        row = fig(f, v.span.current[i])
        row["partial"] = f.end < v.span.current[i][1]
        row["mom"] = change(f.total, p.total)
        row["yoy"] = change(f.total, y.total)
        rows.append(row)

    def total(fs: list[Figure]) -> float | None:
        got = [f.total for f in fs if f.total is not None]
        return sum(got) if got else None

    def whole(fs: list[Figure]) -> float | None:
        """The range's total only when every bucket has a figure: a sum over fewer
        buckets compared with a full one would be a change of coverage, not of use."""
        return total(fs) if all(f.total is not None for f in fs) else None

    t_cur, t_prev, t_ly = total(v.current), total(v.previous), total(v.last_year)
    return {
        "site": v.site, "building": v.building, "building_name": v.building_name,
        "energy_type": v.energy_type, "energy_text": _(ENERGY_TYPES.get(v.energy_type,
                                                                        v.energy_type)),
        "unit": v.unit, "every": every, "tz": v.tz, "lang": lang,
        "start": v.span.start, "end": v.span.end, "partial": v.span.partial,
        "series": [{"code": c, "name": _(SUBITEMS.get(c) or SUBITEM_NAMES.get(c, c))}
                   for c in v.codes],
        "buckets": rows,
        "previous": [fig(f, v.span.previous[i]) for i, f in enumerate(v.previous)],
        "last_year": [fig(f, v.span.last_year[i]) for i, f in enumerate(v.last_year)],
        "totals": {"current": t_cur, "previous": t_prev, "last_year": t_ly,
                   "complete": {"current": whole(v.current) is not None,
                                "previous": whole(v.previous) is not None,
                                "last_year": whole(v.last_year) is not None},
                   "mom": change(whole(v.current), whole(v.previous)),
                   "yoy": change(whole(v.current), whole(v.last_year))},
    }
