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
(writes are idempotent). Beside it, one ``rollup_sources`` point per device and counter a
meter was ever rolled up from: a meter the site file re-points to a new device has no
reading of that device before its first, yet hours of its old one may be stored in the
same month, so such a meter's days and months are always summed with its stored hours
around the new ones. Markers are read only up to ``settle_s`` before now, which covers
a write still in flight (a marker is stamped when its write request starts) and clock skew
between ingest hosts and the rule engine; with one rule engine per site partition each site
has one reader, and any number of ingest workers may write.
"""

from __future__ import annotations

import bisect
import functools
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from zoneinfo import ZoneInfo

from energy import accounting, figures, tariff
from energy.site import Building, Meter, Site
from enmon import touched as tch
from enmon.influx import bulk, flat_rows, ident, quote
from enmon.lineproto import escape_tag, float_fields, fmt_field, line, parse_series_key
from rules.passbase import HOUR, PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")
GROUP_MIN = 8  # meters sharing a span that are read with one site-wide statement
FILTER_MAX = 64  # up to this many rewritten meters, days and months are re-summed by name
TAGS = ("building", "meter", "energy_type", "category", "total")
_WORD = re.compile(r"[a-z0-9_]+")  # a field name lineproto.float_fields can take


class Edges:
    """A zone's bucket starts and ends, each computed once per pass: many meters share a
    span (a gateway's batch, a site's outage), so they share its hour, day and month edges."""

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._start: dict[tuple[int, accounting.BucketSize], int] = {}
        self._end: dict[tuple[int, accounting.BucketSize], int] = {}

    def start(self, ts: int, size: accounting.BucketSize) -> int:
        """The start of the bucket holding ``ts``."""
        hit = self._start.get((ts, size))
        if hit is None:
            hit = self._start[(ts, size)] = accounting.bucket_start(ts, size, self.tz)
        return hit

    def end(self, ts: int, size: accounting.BucketSize) -> int:
        """The end of the bucket holding ``ts`` (the next one's start)."""
        hit = self._end.get((ts, size))
        if hit is None:
            hit = self._end[(ts, size)] = accounting.next_bucket(self.start(ts, size), size,
                                                                 self.tz)
        return hit


class Rollups(PassBase):
    """The roll-up step of a scheduled pass."""

    settle_ms: int
    clock: Callable[[], float]  # seconds since the epoch, when markers are stored
    through: dict[str, int]  # site → markers processed through this time
    # site → meter → every (gateway, device, counter) stored as read for its roll-ups
    sources: dict[str, dict[str, set[tuple[str, str, str]]]]
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
        # a source read for the first time is stored with the progress it was rolled up in
        # (in one request: neither without the other), so a restarted engine knows it too
        ever = self.sources[site.site]
        fresh = [(m.id, src) for _, m in site.meters()
                 if (src := (m.gateway, m.device, m.counter)) not in ever.get(m.id, ())]
        await self._write([
            *(line(tch.SOURCES, {"site": site.site, "meter": mid, "gateway": g, "device": d,
                                 "counter": c}, {"seen": 1}, upto)
              for mid, (g, d, c) in fresh),
            line(tch.STATE, {"site": site.site}, {"through": upto}, upto)], st)
        for mid, src in fresh:
            ever.setdefault(mid, set()).add(src)
        self.through[site.site] = upto
        log.info("event=rollup site=%s markers=%d devices=%d through=%d", site.site, len(rows),
                 len(touched), upto)

    async def _through(self, site: Site, st: PassStats) -> int:
        """The site's progress and the sources its meters were rolled up from, read once
        per process (then kept in hand: this process is the site's one writer of both)."""
        if site.site not in self.through:
            # the sources from the series index (a point's tags are all it says): for 10
            # sites of 1,000 meters about half of what reading the points costs InfluxDB
            # and a sixth of their last() grouped by the tags
            state, known = await self._series([
                f"SELECT last(through) AS through FROM {tch.STATE} "
                f"WHERE site = {quote(site.site)}",
                f"SHOW SERIES FROM {tch.SOURCES} WHERE site = {quote(site.site)}"], st)
            rows = flat_rows(state)
            self.through[site.site] = int(rows[0]["through"]) if rows else 0
            ever: dict[str, set[tuple[str, str, str]]] = {}
            for sr in known:
                for row in sr.get("values") or []:
                    tags = parse_series_key(str(row[0]))
                    ever.setdefault(tags.get("meter", ""), set()).add(
                        (tags.get("gateway", ""), tags.get("device", ""),
                         tags.get("counter", "")))
            self.sources[site.site] = ever
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
        edges = Edges(tz)
        got, hours = await self._touched_readings(site, meters, spans, edges, st)
        st.per_step["rollup.read"] = time.perf_counter() - t
        t = time.perf_counter()
        series: list[tuple[str, dict[int, dict[str, float]]]] = []
        keys = series_keys(site, "energy_hourly")
        # 2. the hours, kept in hand: the days and months are summed from them and from the
        # stored hours around them, not from a read of what was just written
        hand: dict[str, dict[int, dict[str, float]]] = {}
        # meters with a reading before / after their hours: only those can have stored hours
        # before h0 / after h1 in the same months (an hour is stored from two readings)
        earlier: set[str] = set()
        later: set[str] = set()
        # meters whose hours in hand are every hour stored for them: those with readings (the
        # intervals between consecutive readings leave no hour of their span without a value)
        exact: set[str] = set()
        # a meter the site file re-pointed (a new meter on a new address, another counter)
        # may have hours stored from its old source around those of its new one, which no
        # reading of the new one says: it is never taken to have none
        ever = self.sources.get(site.site, {})
        moved = {m.id for _, m in meters
                 if len(ever.get(m.id, set()) | {(m.gateway, m.device, m.counter)}) > 1}
        with bulk():  # no awaits: thousands of fresh objects, no collector passes
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
                hand[m.id] = hour_fields(site, b, m.energy_type, buckets, costs)
                series.append((keys[m.id], hand[m.id]))
                if pts:
                    exact.add(m.id)
                    if int(pts[0][0]) < h0 or m.id in moved:
                        earlier.add(m.id)
                    if int(pts[-1][0]) >= h1 or m.id in moved:
                        later.add(m.id)
            lines = points(series)
        st.per_step["rollup.compute"] = time.perf_counter() - t
        t = time.perf_counter()
        if any(b.virtual_meters for b in site.buildings):
            # virtual meters are summed from their parts' stored hours: those first
            await self._write(lines, st)
            lines = []
        virtual = await self._virtual(site, hours, tariffs, st)
        for vid, (span, fields, parts) in virtual.items():
            hours[vid], hand[vid] = span, fields
            # its hours in hand are its parts' stored hours over [h0, h1), combined; a part
            # this pass did not rewrite may have stored hours before and after them
            exact.add(vid)
            unsure = [p for p in parts if p not in hand or p not in exact]
            if unsure or any(p in earlier for p in parts):
                earlier.add(vid)
            if unsure or any(p in later for p in parts):
                later.add(vid)
        st.per_step["rollup.virtual"] = time.perf_counter() - t
        # 3. the site-days and months those hours fall in
        t = time.perf_counter()
        days, months = await self._periods(site, hand, hours, exact, earlier, later, edges,
                                           st)
        daily, monthly = series_keys(site, "energy_daily"), series_keys(site, "energy_monthly")
        with bulk():
            out = points([*((daily[mid], by_day) for mid, by_day in days.items()),
                          *((monthly[mid], by_month) for mid, by_month in months.items())])
        # the hours go with their days and months where nothing read them back in between
        # (one request less); the progress point is written after all of them either way
        await self._write(lines + out, st)
        st.per_step["rollup.periods"] = time.perf_counter() - t

    async def _periods(self, site: Site, hand: dict[str, dict[int, dict[str, float]]],
                       hours: dict[str, tuple[int, int]], exact: set[str],
                       earlier: set[str], later: set[str], edges: Edges, st: PassStats
                       ) -> tuple[dict[str, dict[int, dict[str, float]]],
                               dict[str, dict[int, dict[str, float]]]]:
        """Each rewritten meter's site-days and months over its hours [h0, h1): the hours in
        hand plus the stored hours of the same months outside them, read per day with one
        statement (``GROUP BY time(1d)``) for the month before h0 where the meter has a
        reading before h0, and one for the rest of the month after h1 where it has one after
        h1 (without such a reading no hour there can be stored: an hour's energy is the
        difference of two readings around it). A meter not in ``exact`` (its readings are
        gone, so its hours in hand may miss a stored one) is summed from what is stored over
        its whole months, as InfluxDB holds it. Returns (days, months), each meter →
        period start → summed fields (``amount`` first); a period without data is absent."""
        def day(ts: int) -> int:
            return edges.start(ts, "day")

        def month(ts: int) -> int:
            return edges.start(ts, "month")

        ranges: dict[tuple[int, int], list[str]] = defaultdict(list)
        whole: set[str] = set()
        for mid, (h0, h1) in hours.items():
            m0, m1 = month(h0), edges.end(h1 - 1, "month")
            if mid not in exact:
                whole.add(mid)
                ranges[(m0, m1)].append(mid)
                continue
            if mid in earlier and m0 < h0:
                ranges[(m0, h0)].append(mid)
            if mid in later and h1 < m1:
                ranges[(h1, m1)].append(mid)
        sums = _sums(figures.site_tariffs(site))
        keys = list(ranges)
        stmts = []
        for a, b in keys:
            ids = ranges[(a, b)]
            only = (" AND (" + " OR ".join(f"meter = {quote(i)}" for i in ids) + ")"
                    if len(ids) <= FILTER_MAX else "")
            stmts.append(f"SELECT {sums} FROM energy_hourly WHERE site = {quote(site.site)}"
                         f"{only} AND time >= {a}ms AND time < {b}ms "
                         f"GROUP BY time(1d), meter fill(none) tz({quote(site.timezone)})")
        stored: dict[str, list[tuple[int, list[tuple[int, dict[str, float]]]]]] = defaultdict(
            list)  # meter → (range start, its days' summed fields)
        for (a, _b), series in zip(keys, await self._series(stmts, st), strict=True):
            want = set(ranges[(a, _b)])
            for sr in series:
                mid = sr.get("tags", {}).get("meter", "")
                if mid not in want:
                    continue
                st.points_read += len(sr["values"])
                stored[mid].append((a, _rows_fields(sr)))
        with bulk():
            days: dict[str, dict[int, dict[str, float]]] = {}
            months: dict[str, dict[int, dict[str, float]]] = {}
            for mid, (h0, h1) in hours.items():
                parts = sorted(stored.get(mid, []), key=lambda p: p[0])
                if mid not in whole:  # the hours in hand between the stored ones, in time order
                    mine = hand.get(mid, {})
                    parts.insert(sum(1 for a, _ in parts if a < h0),
                                 (h0, [(day(ts), f) for ts, f in mine.items()]))
                by_day: dict[int, dict[str, float]] = {}
                for _a, rows in parts:
                    for d, fields in rows:
                        _add(by_day, d, fields)
                d0, d1 = day(h0), h1
                days[mid] = {d: f for d, f in by_day.items() if d0 <= d < d1 and "amount" in f}
                by_month: dict[int, dict[str, float]] = {}
                for d in sorted(by_day):
                    if "amount" in by_day[d]:
                        _add(by_month, month(d), by_day[d])
                months[mid] = {mo: f for mo, f in by_month.items() if month(h0) <= mo < h1}
        return days, months

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
                                spans: dict[str, tuple[int, int]], edges: Edges,
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
        def hour(ts: int) -> int:
            return edges.start(ts, "hour")

        def after(ts: int) -> int:
            return edges.end(ts, "hour")

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
        with bulk():
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
        t1 (for a window at the live edge: all of its readings from t0 on), in time order."""
        clock = int(self.clock() * 1000)
        live = clock - HOUR  # a window ending after this is at the edge
        # the end of "everything from t0 on": a year ahead of the clock (ingest refuses a
        # reading more than ``future_reject_s``, a day by default, ahead of its own); a
        # bound costs InfluxDB less than none
        ahead = clock + 366 * 24 * HOUR

        def make(f: str, where: str, span: tuple[int, int]) -> list[str]:
            t0, t1 = span
            last = f"SELECT last({f}) AS v {where} AND time < {t0}ms GROUP BY gateway, device"
            if t1 >= live:
                # at the live edge, everything from t0 on: the readings after the window are
                # few (none, or a clock ahead) and the first of them comes with them, so no
                # statement of its own is needed for it
                return [last, f"SELECT {f} AS v {where} AND time >= {t0}ms "
                              f"AND time < {max(ahead, t1)}ms GROUP BY gateway, device"]
            return [last, f"SELECT {f} AS v {where} AND time >= {t0}ms AND time < {t1}ms "
                          "GROUP BY gateway, device",
                    f"SELECT first({f}) AS v {where} AND time >= {t1}ms GROUP BY gateway, device"]

        got = await self._grouped(site, meters, lambda m: spans[m.id], make, st)
        return {mid: [pt for part in parts for pt in part] for mid, parts in got.items()}

    async def _virtual(self, site: Site, hours: dict[str, tuple[int, int]],
                       tariffs: Tariffs, st: PassStats
                       ) -> dict[str, tuple[tuple[int, int], dict[int, dict[str, float]],
                                            list[str]]]:
        """Virtual meters (plus/minus of others) over the hours any of their parts changed,
        from the parts' stored hours (a part untouched by this pass is read, not assumed 0).
        Returns each virtual meter rewritten: its hours [h0, h1), their fields, its parts."""
        series: list[tuple[str, dict[int, dict[str, float]]]] = []
        done: dict[str, tuple[tuple[int, int], dict[int, dict[str, float]], list[str]]] = {}
        keys = series_keys(site, "energy_hourly")
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
                fields = hour_fields(site, b, v.energy_type, buckets, costs)
                series.append((keys[v.id], fields))
                done[v.id] = ((h0, h1), fields, parts)
        await self._write(points(series), st)
        return done


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
_TAGS: dict[int, tuple[Site, dict[str, dict[str, str]]]] = {}
_KEYS: dict[tuple[int, str], tuple[Site, dict[str, str]]] = {}


def hour_fields(site: Site, b: Building, energy_type: str, buckets: Mapping[int, float],
                costs: Mapping[int, Mapping[str, float]] | None = None
                ) -> dict[int, dict[str, float]]:
    """Each hour's roll-up fields: the amount, kgce beside it where the energy type has a
    factor, and the hour's cost fields (:func:`cost_fields`) where its building has a
    tariff — what is written, and what the day and month are summed from."""
    per_unit = kgce_per_unit(site, b, energy_type)
    out: dict[int, dict[str, float]] = {}
    for ts, amount in buckets.items():
        f = {"amount": float(amount)}
        if per_unit is not None:
            f["kgce"] = float(amount * per_unit)
        for k, v in (costs or {}).get(ts, {}).items():
            f[k] = float(v)
        out[ts] = f
    return out


def points(series: Iterable[tuple[str, Mapping[int, Mapping[str, float]]]]) -> list[str]:
    """The points of many series, each ``(key, {time: fields})`` (``key``: measurement and
    escaped tags, :func:`series_key`), in order; a point without fields is left out.

    A pass writes tens of thousands of points: their values are formatted together by
    :func:`enmon.lineproto.float_fields` where every field name is a plain word (always,
    unless a tariff names a band otherwise), else one at a time."""
    keys: list[str] = []
    stamps: list[int] = []
    rows: list[Mapping[str, float]] = []
    plain = True
    for key, by_ts in series:
        for ts, f in by_ts.items():
            if f:
                keys.append(key)
                stamps.append(ts)
                rows.append(f)
                plain = plain and _plain(tuple(f))
    texts = (float_fields(rows) if plain else
             [",".join(f"{escape_tag(k)}={fmt_field(v)}" for k, v in f.items()) for f in rows])
    return [f"{k} {text} {ts}" for k, text, ts in zip(keys, texts, stamps, strict=True)]


@functools.lru_cache(maxsize=1024)
def _plain(names: tuple[str, ...]) -> bool:
    return all(_WORD.fullmatch(n) for n in names)


def _add(into: dict[int, dict[str, float]], key: int, fields: Mapping[str, float]) -> None:
    """Add ``fields`` to the period ``key`` of ``into`` (the first contribution is a copy:
    0.0 + v is v)."""
    acc = into.get(key)
    if acc is None:
        into[key] = dict(fields)
        return
    for k, v in fields.items():
        acc[k] = acc.get(k, 0.0) + v


def _rows_fields(sr: Mapping[str, Any]) -> list[tuple[int, dict[str, float]]]:
    """A summed series' rows as (time, fields): nulls (a field no hour had) left out and
    ``amount`` first, as the points are written."""
    cols = sr["columns"]
    ti = cols.index("time")
    names = [(i, c) for i, c in enumerate(cols) if c == "amount"]
    names += [(i, c) for i, c in enumerate(cols) if c not in ("time", "amount", *TAGS)]
    return [(int(row[ti]), {c: float(row[i]) for i, c in names
                            if isinstance(row[i], int | float) and not isinstance(row[i], bool)})
            for row in sr["values"]]


@functools.lru_cache(maxsize=1 << 18)
def _tag_part(pairs: tuple[tuple[str, str], ...]) -> str:
    return "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(pairs) if v)


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """A roll-up point's measurement and tags as :func:`enmon.lineproto.line` writes them,
    escaped once per meter for all the passes of a process (a meter's tags do not change)."""
    return measurement + _tag_part(tuple(tags.items()))


def series_keys(site: Site, measurement: str) -> dict[str, str]:
    """Meter id (real and virtual) → its series key in ``measurement`` (:func:`series_key`
    of the site and the meter's roll-up tags), built once per site object."""
    hit = _KEYS.get((id(site), measurement))
    if hit is not None and hit[0] is site:
        return hit[1]
    if len(_KEYS) > 1 << 12:
        _KEYS.clear()
    out = {mid: series_key(measurement, {"site": site.site, **t})
           for mid, t in meter_tags(site).items()}
    _KEYS[(id(site), measurement)] = (site, out)
    return out


def meter_tags(site: Site) -> dict[str, dict[str, str]]:
    """Meter id (real and virtual) → the roll-up tags the site file gives it (the
    site file does not change while the process runs: built once per site object)."""
    hit = _TAGS.get(id(site))
    if hit is not None and hit[0] is site:
        return hit[1]
    if len(_TAGS) > 1 << 12:
        _TAGS.clear()
    out: dict[str, dict[str, str]] = {}
    _TAGS[id(site)] = (site, out)
    for b in site.buildings:
        rows = [(m.id, m.energy_type, m.category, m.building_total) for m in b.meters]
        rows += [(v.id, v.energy_type, v.category, v.building_total) for v in b.virtual_meters]
        for mid, et, cat, total in rows:
            out[mid] = {"building": b.id, "meter": mid, "energy_type": et, "category": cat,
                        "total": "1" if total else "0"}
    return out
