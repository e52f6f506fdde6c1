"""Roll-ups: raw counter readings → ``energy_hourly`` → ``energy_daily`` → ``energy_monthly``.

Driven by what was stored, not by the wall clock. Every writer of readings adds an
``energy_touched`` marker (:mod:`enmon.touched`) naming, per device, the first and last
reading time it wrote. Each pass reads the markers stored since the site's last pass and
recomputes exactly the buckets those readings affect — a gateway that replays ten hours
from its disk queue, a late batch from last month, a manual recompute — however old. The
work is proportional to what arrived: markers are read by time range, and only the touched
meters' readings around the touched span are read.

Which hours a new reading changes: consumption is the difference of consecutive counter
readings, spread linearly over the time between them (``energy.accounting``). Readings
first..last of a device change the intervals from the reading before ``first`` (p) to the
one after ``last`` (n), so every hour overlapping [p, n] is recomputed — from all readings
of those hours plus one on each side, the same arithmetic as a full recomputation.

The site's progress ("recomputed everything stored through T") is itself a point
(``rollup_state``), written after the pass's roll-ups are: a rule engine restarted at any
moment resumes where the last complete pass ended and recomputes at most that pass again
(writes are idempotent). Markers are read only up to ``settle_s`` before now, which covers
a write still in flight (a marker is stamped when its write request starts) and clock skew
between ingest hosts and the rule engine; with one rule engine per site partition each site
has one reader, and any number of ingest workers may write.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from energy import accounting, figures, tariff
from energy.site import Building, Meter, Site
from enmon import touched as tch
from enmon.influx import ident, quote
from enmon.lineproto import escape_tag, line
from rules.passbase import PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")
GROUP_MIN = 8  # meters sharing a span that are read with one site-wide statement
FILTER_MAX = 64  # up to this many rewritten meters, days and months are re-summed by name
TAGS = ("building", "meter", "energy_type", "category", "total")


class Rollups(PassBase):
    """The roll-up step of a scheduled pass."""

    settle_ms: int
    clock: Callable[[], float]  # seconds since the epoch, when markers are stored
    through: dict[str, int]  # site → markers processed through this time
    # site → (gateway, device) → [w0, w1) and the times of every reading this pass read in it
    # (with the nearest on each side): later steps of the same pass count from them
    seen: dict[str, dict[tch.Key, tuple[int, int, list[int]]]]

    async def rollup(self, site: Site, now: int, st: PassStats) -> None:
        """Recompute every bucket touched by readings stored since the last pass."""
        self.seen.pop(site.site, None)  # never a previous pass's readings
        upto = int(self.clock() * 1000) - self.settle_ms
        since = await self._through(site, st)
        if upto <= since:
            return
        t = time.perf_counter()
        rows = await self._rows(
            f"SELECT ranges FROM {tch.MEASUREMENT} WHERE site = {quote(site.site)} "
            f"AND time > {since}ms AND time <= {upto}ms", st)
        touched: dict[tch.Key, tch.Span] = {}
        for r in rows:
            if isinstance(r.get("ranges"), str):
                tch.merge(touched, tch.decode_ranges(r["ranges"]))
        st.per_step["rollup.markers"] = time.perf_counter() - t
        if touched:
            await self.recompute(site, touched, st)
        await self._write([line(tch.STATE, {"site": site.site}, {"through": upto}, upto)], st)
        self.through[site.site] = upto
        log.info("event=rollup site=%s markers=%d devices=%d through=%d", site.site, len(rows),
                 len(touched), upto)

    async def _through(self, site: Site, st: PassStats) -> int:
        if site.site not in self.through:
            rows = await self._rows(
                f"SELECT last(through) AS through FROM {tch.STATE} "
                f"WHERE site = {quote(site.site)}", st)
            self.through[site.site] = int(rows[0]["through"]) if rows else 0
        return self.through[site.site]

    async def recompute(self, site: Site, touched: dict[tch.Key, tch.Span],
                        st: PassStats) -> None:
        """Rewrite the hours, days and months that readings in ``touched`` affect."""
        tz = ZoneInfo(site.timezone)
        meters = [(b, m) for b, m in site.meters() if (m.gateway, m.device) in touched]
        if not meters:
            return
        tariffs = figures.site_tariffs(site)  # looked up once per pass
        t = time.perf_counter()

        # 1. every reading of the hours the touched spans affect, and one on each side of them
        spans = {m.id: touched[(m.gateway, m.device)] for _, m in meters}
        got, hours = await self._touched_readings(site, meters, spans, tz, st)
        st.per_step["rollup.read"] = time.perf_counter() - t
        t = time.perf_counter()
        lines: list[str] = []
        for b, m in meters:
            pts = got.get(m.id, [])
            reps = [accounting.Replacement(x.at, x.old_final, x.new_initial)
                    for x in m.replacements]
            ivs = accounting.intervals(pts, rollover_at=m.rollover_at, replacements=reps,
                                       jitter=m.jitter)
            h0, h1 = hours[m.id]
            buckets = {k: v for k, v in accounting.rollup(ivs, "hour", tz).items()
                       if h0 <= k < h1}
            # the hour's energy charge from the same intervals (energy.figures.hourly_cost)
            t_ = tariffs.get((b.id, m.energy_type))
            costs = cost_fields(t_, figures.hourly_cost_on(t_, site, ivs, h0, h1)
                                if t_ is not None else {})
            lines += energy_lines("energy_hourly", site, b, m.id, m.energy_type, m.category,
                                  m.building_total, buckets, costs)
        st.per_step["rollup.compute"] = time.perf_counter() - t
        t = time.perf_counter()
        await self._write(lines, st)
        virtual = await self._virtual(site, hours, tariffs, st)
        st.per_step["rollup.write_hourly"] = time.perf_counter() - t
        # 3. the site-days and months those hours fall in, re-summed from what is stored
        t = time.perf_counter()
        days: set[int] = set()
        for h0, h1 in hours.values():
            d = accounting.bucket_start(h0, "day", tz)
            while d < h1:
                days.add(d)
                d = accounting.next_bucket(d, "day", tz)
        sums = _sums(tariffs)
        # only the meters whose hours were rewritten: a late reading of one meter re-sums that
        # meter's day and month, not those of every meter of the site
        ids = [m.id for _, m in meters] + virtual
        only = (" AND (" + " OR ".join(f"meter = {quote(i)}" for i in ids) + ")"
                if len(ids) <= FILTER_MAX else "")
        where = f"WHERE site = {quote(site.site)}{only}"
        # grouped by meter alone (half the work of InfluxDB's grouping by all five tags): the
        # site file says each rewritten meter's building, energy type, category and total
        tags = {i: t for i, t in meter_tags(site).items() if i in set(ids)}
        runs = await self._series([
            f"SELECT {sums} FROM energy_hourly {where} AND time >= {d0}ms AND time < {d1}ms "
            f"GROUP BY time(1d), meter tz({quote(site.timezone)})"
            for d0, d1 in _runs(sorted(days), tz)], st)
        await self._write([ln for series in runs for ln in series_lines("energy_daily",
                                                                        site.site, series,
                                                                        tags, st)], st)
        st.per_step["rollup.daily"] = time.perf_counter() - t
        t = time.perf_counter()
        months = sorted({accounting.bucket_start(d, "month", tz) for d in days})
        per_month = await self._series([
            f"SELECT {sums} FROM energy_daily {where} AND time >= {m}ms "
            f"AND time < {accounting.next_bucket(m, 'month', tz)}ms GROUP BY meter"
            for m in months], st)
        await self._write([ln for m, series in zip(months, per_month, strict=True)
                           for ln in series_lines("energy_monthly", site.site, series, tags, st,
                                                  ts=m)], st)
        st.per_step["rollup.monthly"] = time.perf_counter() - t

    async def _grouped(self, site: Site, meters: list[tuple[Building, Meter]],
                       key: Callable[[Meter], tuple[int, int]],
                       make: Callable[[str, str, tuple[int, int]], list[str]],
                       st: PassStats) -> dict[str, list[list[tuple[int, float]]]]:
        """Run ``make(select_field, where, key)`` statements for meters grouped by their time
        key: one site-wide statement (``GROUP BY gateway, device``) for a group of many meters
        — after an outage of a whole site they all share one span — one per meter otherwise.
        Returns each meter's (time, value) points, one list per statement ``make`` gives."""
        groups: dict[tuple[str, int, int], list[Meter]] = defaultdict(list)
        for _, m in meters:
            groups[(m.counter, *key(m))].append(m)
        stmts: list[str] = []
        owners: list[tuple[list[Meter], int]] = []  # the statement's meters and its index
        base = f"FROM meter WHERE site = {quote(site.site)}"
        for (counter, *k), ms in groups.items():
            span = (k[0], k[1])
            if len(ms) >= GROUP_MIN:
                made = make(ident(counter), base, span)
                stmts += made
                owners += [(ms, i) for i in range(len(made))]
                continue
            for m in ms:
                where = f"{base} AND gateway = {quote(m.gateway)} AND device = {quote(m.device)}"
                made = make(ident(counter), where, span)
                stmts += made
                owners += [([m], i) for i in range(len(made))]
        width = max((i for _, i in owners), default=0) + 1
        out: dict[str, list[list[tuple[int, float]]]] = defaultdict(
            lambda: [[] for _ in range(width)])
        for (ms, i), series in zip(owners, await self._series(stmts, st), strict=True):
            by_dev = {(m.gateway, m.device): m.id for m in ms}
            for sr in series:  # one series per device: no dict per row on this hot path
                tags = sr.get("tags", {})
                mid = by_dev.get((tags.get("gateway", ""), tags.get("device", "")))
                if mid is None:
                    continue
                cols = sr["columns"]
                ti, vi = cols.index("time"), cols.index("v")
                rows = sr["values"]
                # [time, v] rows as they come (energy.accounting.intervals takes any pair and
                # converts): no tuple per reading on this hot path
                pts = ([r for r in rows if r[1] is not None] if (ti, vi) == (0, 1) else
                       [(row[ti], row[vi]) for row in rows if row[vi] is not None])
                st.points_read += len(sr["values"])
                out[mid][i].extend(pts)
        return out

    async def _touched_readings(self, site: Site, meters: list[tuple[Building, Meter]],
                                spans: dict[str, tuple[int, int]], tz: ZoneInfo,
                                st: PassStats
                                ) -> tuple[dict[str, list[tuple[int, float]]],
                                           dict[str, tuple[int, int]]]:
        """Each touched meter's hours [h0, h1) and the readings they are recomputed from.

        The hours run from that of the reading before the span's first (p) to that of the
        reading after its last (n); the readings are all of those hours plus one on each
        side. p and n are not known before reading, so one request reads a window around the
        span wide enough for a meter polled as configured (two poll intervals on each side,
        out to whole hours) plus the last reading before and the first after it — one read
        of the site's data, not one to find p and n and another for the readings. A meter
        whose p or n lies outside its window (it was silent for longer) is read again for
        exactly its hours, as before. Either way: the same readings as an exact read."""
        # many meters share a span (a gateway's batch, a site's outage): each hour edge once
        @functools.cache
        def hour(ts: int) -> int:
            return accounting.bucket_start(ts, "hour", tz)

        @functools.cache
        def after(ts: int) -> int:
            return accounting.next_bucket(hour(ts), "hour", tz)

        wins: dict[str, tuple[int, int]] = {}
        for _, m in meters:
            first, last = spans[m.id]
            margin = max(2 * int(m.poll_interval_s * 1000), 15 * 60_000)
            wins[m.id] = (hour(first - margin), after(last + margin))
        got = await self._read_hours(site, meters, wins, st)
        readings: dict[str, list[tuple[int, float]]] = {}
        hours: dict[str, tuple[int, int]] = {}
        again: list[tuple[Building, Meter]] = []
        seen = self.seen[site.site] = {}
        for b, m in meters:
            pts = got.get(m.id, [])
            pts.sort()  # in order already, unless a device's points are in two series
            times = [t for t, _ in pts]
            seen[(m.gateway, m.device)] = (*wins[m.id], times)
            first, last = spans[m.id]
            i = bisect.bisect_left(times, first)
            j = bisect.bisect_right(times, last)
            p = times[i - 1] if i else first
            n = times[j] if j < len(times) else last
            h0, h1 = hour(min(p, first)), after(max(n, last))
            hours[m.id] = (h0, h1)
            w0, w1 = wins[m.id]
            if h0 < w0 or h1 > w1:
                again.append((b, m))
                continue
            # the window holds every reading in [w0, w1) and the nearest on each side of it,
            # so the last before h0 and the first at or after h1 are among them
            lo = max(bisect.bisect_left(times, h0) - 1, 0)
            hi = bisect.bisect_left(times, h1) + 1
            readings[m.id] = pts[lo:hi]
        if again:
            exact = await self._read_hours(site, again, hours, st)
            for _, m in again:
                readings[m.id] = exact.get(m.id, [])
        return readings, hours

    async def _read_hours(self, site: Site, meters: list[tuple[Building, Meter]],
                          spans: dict[str, tuple[int, int]], st: PassStats
                          ) -> dict[str, list[tuple[int, float]]]:
        """Each meter's readings in its [t0, t1), the last before t0 and the first at or after
        t1, in time order."""
        def make(f: str, where: str, span: tuple[int, int]) -> list[str]:
            t0, t1 = span
            return [f"SELECT last({f}) AS v {where} AND time < {t0}ms GROUP BY gateway, device",
                    f"SELECT {f} AS v {where} AND time >= {t0}ms AND time < {t1}ms "
                    "GROUP BY gateway, device",
                    f"SELECT first({f}) AS v {where} AND time >= {t1}ms GROUP BY gateway, device"]

        got = await self._grouped(site, meters, lambda m: spans[m.id], make, st)
        return {mid: [pt for part in parts for pt in part] for mid, parts in got.items()}

    async def _virtual(self, site: Site, hours: dict[str, tuple[int, int]],
                       tariffs: Tariffs, st: PassStats) -> list[str]:
        """Virtual meters (plus/minus of others) over the hours any of their parts changed,
        from the parts' stored hours (a part untouched by this pass is read, not assumed 0).
        Returns the ids of the virtual meters rewritten."""
        lines: list[str] = []
        done: list[str] = []
        for b in site.buildings:
            for v in b.virtual_meters:
                parts = [*v.plus, *v.minus]
                spans = [hours[p] for p in parts if p in hours]
                if not spans:
                    continue
                h0, h1 = min(s[0] for s in spans), max(s[1] for s in spans)
                cond = " OR ".join(f"meter = {quote(p)}" for p in parts)
                names = ["amount", *cost_names(tariffs.get((b.id, v.energy_type)))]
                rows = await self._rows(
                    f"SELECT {', '.join(ident(f) for f in names)} FROM energy_hourly "
                    f"WHERE site = {quote(site.site)} AND "
                    f"building = {quote(b.id)} AND ({cond}) AND time >= {h0}ms "
                    f"AND time < {h1}ms GROUP BY meter", st)
                # field → part → hour → value; cost is linear in the amount like kgce, so a
                # virtual meter's cost is the same plus/minus of its parts' stored costs
                stored: dict[str, dict[str, dict[int, float]]] = {f: {} for f in names}
                for r in rows:
                    for f in names:
                        if r.get(f) is not None:
                            stored[f].setdefault(r["meter"], {})[int(r["time"])] = float(r[f])
                buckets = accounting.combine(stored["amount"], v.plus, v.minus)
                costs: dict[int, dict[str, float]] = {}
                for f in names[1:]:
                    for ts, val in accounting.combine(stored[f], v.plus, v.minus).items():
                        costs.setdefault(ts, {})[f] = val
                lines += energy_lines("energy_hourly", site, b, v.id, v.energy_type,
                                      v.category, v.building_total, buckets, costs)
                done.append(v.id)
        await self._write(lines, st)
        return done


def _runs(days: list[int], tz: ZoneInfo) -> list[tuple[int, int]]:
    """Sorted day starts → [start, end) of each run of consecutive days."""
    out: list[tuple[int, int]] = []
    for d in days:
        nxt = accounting.next_bucket(d, "day", tz)
        if out and out[-1][1] == d:
            out[-1] = (out[-1][0], nxt)
        else:
            out.append((d, nxt))
    return out


Tariffs = dict[tuple[str, str], tariff.Tariff | None]


def cost_names(t: tariff.Tariff | None) -> list[str]:
    """The cost fields an hour on tariff ``t`` carries: ``cost`` (the energy charge, CNY),
    ``unpriced`` (the amount no price covered) and per band of the tariff ``amount_<band>``
    and ``cost_<band>``; none without a tariff."""
    if t is None:
        return []
    bands = figures.tariff_bands(t)
    return ["cost", "unpriced", *(f"{k}_{band}" for band in bands for k in ("amount", "cost"))]


def cost_fields(t: tariff.Tariff | None, costs: Mapping[int, tariff.CostBreakdown]
                ) -> dict[int, dict[str, float]]:
    """Each hour's breakdown as roll-up fields (:func:`cost_names`), zeros included: a
    recomputed hour overwrites every field it once had, so no stale band survives."""
    names = cost_names(t)
    out: dict[int, dict[str, float]] = {}
    for ts, c in costs.items():
        f = dict.fromkeys(names, 0.0)
        f["cost"], f["unpriced"] = c.energy_cost, c.unpriced
        for band, (amount, cny) in c.by_band().items():
            if f"amount_{band}" in f:
                f[f"amount_{band}"] += amount
                f[f"cost_{band}"] += cny
        out[ts] = f
    return out


def _sums(tariffs: Tariffs) -> str:
    """``sum(f) AS f`` of every field an hour may carry (a field no hour has sums to null
    and is not written)."""
    names = ["amount", "kgce"]
    for t in tariffs.values():
        names += [n for n in cost_names(t) if n not in names]
    return ", ".join(f"sum({ident(n)}) AS {ident(n)}" for n in names)


def kgce_per_unit(site: Site, b: Building, energy_type: str) -> float | None:
    """kgce of one unit, converted as the report converts (the site's electricity factor,
    its measured gas NCV): kgce is linear in the amount, so one unit is converted once per
    building and energy type (the site file does not change while the process runs)."""
    key = (id(site), b.id, energy_type)
    if key not in _PER_UNIT:
        if len(_PER_UNIT) > 1 << 16:  # site files reloaded many times: start over
            _PER_UNIT.clear()
        one, _ = figures.to_kgce(site, b, energy_type, 1.0)
        _PER_UNIT[key] = (site, one.value if one is not None else None)
    return _PER_UNIT[key][1]


_PER_UNIT: dict[tuple[int, str, str], tuple[Site, float | None]] = {}  # holds the site: id stays


def energy_lines(meas: str, site: Site, b: Building, meter: str, energy_type: str,
                 category: str, total: bool, buckets: dict[int, float],
                 costs: Mapping[int, Mapping[str, float]] | None = None) -> list[str]:
    """Roll-up points of one meter; kgce beside the amount where the energy type has a factor,
    and the hour's cost fields (:func:`cost_fields`) where its building has a tariff."""
    out = []
    per_unit = kgce_per_unit(site, b, energy_type)
    tags = {"site": site.site, "building": b.id, "meter": meter, "energy_type": energy_type,
            "category": category, "total": "1" if total else "0"}
    # the series key is the same for every bucket: escape it once (the hot path)
    key = series_key(meas, tags)
    for ts, amount in buckets.items():
        kgce = f",kgce={float(amount * per_unit)!r}" if per_unit is not None else ""
        extra = "".join(f",{k}={float(v)!r}" for k, v in (costs or {}).get(ts, {}).items())
        out.append(f"{key} amount={float(amount)!r}{kgce}{extra} {ts}")
    return out


@functools.lru_cache(maxsize=1 << 18)
def _tag_part(pairs: tuple[tuple[str, str], ...]) -> str:
    return "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(pairs) if v)


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """A roll-up point's measurement and tags as :func:`enmon.lineproto.line` writes them,
    escaped once per meter for all the passes of a process (a meter's tags do not change)."""
    return measurement + _tag_part(tuple(tags.items()))


def meter_tags(site: Site) -> dict[str, dict[str, str]]:
    """Meter id (real and virtual) → the roll-up tags the site file gives it."""
    out: dict[str, dict[str, str]] = {}
    for b in site.buildings:
        rows = [(m.id, m.energy_type, m.category, m.building_total) for m in b.meters]
        rows += [(v.id, v.energy_type, v.category, v.building_total) for v in b.virtual_meters]
        for mid, et, cat, total in rows:
            out[mid] = {"building": b.id, "meter": mid, "energy_type": et, "category": cat,
                        "total": "1" if total else "0"}
    return out


def series_lines(measurement: str, site: str, series: list[dict[str, Any]],
                 tags_of: Mapping[str, Mapping[str, str]], st: PassStats,
                 ts: int | None = None) -> list[str]:
    """Summed series → one line per meter and period (the daily and monthly roll-ups differ
    only in where they write and whether the period start comes from the row). No dict per
    row: each series (one meter) escapes its tags once, its rows are formatted from their
    columns; kgce and the cost fields the hours carry follow the amount. Series are grouped
    by meter; ``tags_of`` gives the meters to write and their tags (others are skipped)."""
    out: list[str] = []
    for sr in series:
        tags = tags_of.get(sr.get("tags", {}).get("meter", ""))
        if tags is None:
            continue
        key = series_key(measurement, {"site": site, **tags})
        cols = sr["columns"]
        ti = cols.index("time")
        ai = cols.index("amount")
        rest = [(i, escape_tag(c)) for i, c in enumerate(cols)
                if c not in ("time", "amount", *TAGS)]
        st.points_read += len(sr["values"])
        for row in sr["values"]:
            amount = row[ai]
            if amount is None:  # a period without data writes nothing, not 0
                continue
            extra = "".join(f",{c}={float(row[i])!r}" for i, c in rest
                            if isinstance(row[i], int | float) and not isinstance(row[i], bool))
            out.append(f"{key} amount={float(amount)!r}{extra} "
                       f"{int(row[ti]) if ts is None else ts}")
    return out
