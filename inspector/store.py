"""Reading what inspectors need out of InfluxDB — the one I/O module of the inspector.

Everything goes through :class:`enmon.influx.InfluxQL` (InfluxQL over ``/query``),
so the same code reads InfluxDB 1.x, 2.x with a DBRP mapping and 3.x. Queries
are bounded in time and, for long ranges, cut into chunks so a year of raw
readings never arrives as one response and a progress bar can move.

Identifiers are user input (a device name typed in a console): values are
quoted with :func:`quote` and field names with :func:`ident`; nothing else is
ever pasted into a statement.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from enmon import quantities
from enmon.influx import bulk, ident, quote, series_columns
from enmon.lineproto import parse_series_key
from inspector.manual import MEASUREMENT, row_entry

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class MeterInfo:
    """One device as stored: its tags and when it was last heard from."""

    site: str
    gateway: str
    device: str
    building: str
    category: str
    energy_type: str
    last_seen: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"site": self.site, "gateway": self.gateway, "device": self.device,
                "building": self.building, "category": self.category,
                "energy_type": self.energy_type, "last_seen": self.last_seen}


class Store:
    """Typed reads over one database. Cheap to create; close it when done."""

    def __init__(self, query: Any) -> None:
        self.q = query  # enmon.influx.InfluxQL (typed loosely: a test may pass any reader)

    async def close(self) -> None:
        await self.q.close()

    async def rows(self, statement: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.q.rows(statement)
        return result

    # ------------------------------------------------------------------ inventory

    async def sites(self) -> list[str]:
        series = await self.q.query('SHOW TAG VALUES FROM "meter" WITH KEY = "site"')
        return sorted({str(v[1]) for s in series for v in s.get("values", [])})

    async def meters(self, site: str | None = None) -> list[MeterInfo]:
        """Every stored device (optionally of one site) with its tags and last reading time.

        The tags come from the series index (``SHOW SERIES``: no data is read); the last
        reading time from bounded queries over widening windows (a day, a month, 400 days),
        each asked only for the devices the narrower one did not find, so a live site costs
        one small query and a console page never scans years of readings.
        """
        where = f" WHERE site = {quote(site)}" if site else ""
        series = await self.q.query(f'SHOW SERIES FROM "meter"{where}')
        found: dict[tuple[str, str, str], dict[str, str]] = {}
        for s in series:
            for (key,) in s.get("values", []):
                tags = parse_series_key(str(key))
                k = (tags.get("site", ""), tags.get("gateway", ""), tags.get("device", ""))
                found[k] = tags  # a device whose tags changed appears twice: either will do
        seen: dict[tuple[str, str, str], int] = {}
        for days in (1, 31, 400):
            if len(seen) >= len(found):
                break
            rows = await self.rows(
                f'SELECT last("seq") AS seq FROM "meter" WHERE time > now() - {days}d'
                f"{' AND site = ' + quote(site) if site else ''} GROUP BY site, gateway, device")
            for r in rows:
                k = (str(r.get("site", "")), str(r.get("gateway", "")), str(r.get("device", "")))
                if r.get("time") is not None:
                    seen.setdefault(k, int(r["time"]))
        out = [MeterInfo(k[0], k[1], k[2], t.get("building", ""), t.get("category", ""),
                         t.get("energy_type", ""), seen.get(k)) for k, t in found.items()]
        return sorted(out, key=lambda m: (m.site, m.building, m.device))

    async def meter(self, site: str, device: str) -> MeterInfo | None:
        """One device's tags from the series index (``last_seen`` is not looked up)."""
        series = await self.q.query(f'SHOW SERIES FROM "meter" WHERE site = {quote(site)} '
                                    f"AND device = {quote(device)}")
        for s in series:
            for (key,) in s.get("values", []):
                t = parse_series_key(str(key))
                return MeterInfo(site, t.get("gateway", ""), device, t.get("building", ""),
                                 t.get("category", ""), t.get("energy_type", ""))
        return None

    async def quantities_of(self, site: str, device: str, start: int, end: int) -> list[str]:
        """Quantities this device reported in [start, end), in vocabulary order."""
        rows = await self.rows(
            f'SELECT count(*) FROM "meter" WHERE site = {quote(site)} AND device = {quote(device)} '
            f"AND time >= {start}ms AND time < {end}ms")
        seen = {k[len("count_"):] for r in rows for k, v in r.items()
                if k.startswith("count_") and v}
        return [q for q in quantities.QUANTITIES if q in seen]

    # ------------------------------------------------------------------ readings

    async def readings(
        self,
        site: str,
        device: str,
        fields: Sequence[str],
        start: int,
        end: int,
        *,
        chunk_ms: int = 7 * DAY_MS,
        progress: Callable[[float], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Raw points of one device: the quantities, their ``flag_*`` and ``seq``, by time."""
        cols = await self.reading_columns(site, device, fields, start, end, chunk_ms=chunk_ms,
                                          progress=progress)
        names = list(cols)
        return [dict(zip(names, r, strict=True)) for r in zip(*cols.values(), strict=True)]

    async def reading_columns(
        self,
        site: str,
        device: str,
        fields: Sequence[str],
        start: int,
        end: int,
        *,
        chunk_ms: int = 7 * DAY_MS,
        progress: Callable[[float], None] | None = None,
    ) -> dict[str, list[Any]]:
        """:meth:`readings` as columns (``time``, the quantities, their ``flag_*``, ``seq``;
        ``None`` where a point has no value), by time: what a history of 35,040 points is
        built from without a dict per point."""
        cols = [*fields, *(f"flag_{f}" for f in fields), "seq"]
        sel = ", ".join(ident(c) for c in cols)
        spans = [(t, min(end, t + chunk_ms)) for t in range(start, end, chunk_ms)]
        gate = asyncio.Semaphore(4)  # a few chunks at once: the database has cores to spare
        done = [0]

        async def chunk(t: int, t2: int) -> list[dict[str, Any]]:
            async with gate:
                series: list[dict[str, Any]] = await self.q.query(
                    f'SELECT {sel} FROM "meter" WHERE site = {quote(site)} AND '
                    f"device = {quote(device)} AND time >= {t}ms AND time < {t2}ms")
            done[0] += t2 - t
            if progress is not None:
                progress(done[0] / max(1, end - start))
            return series

        parts = await asyncio.gather(*(chunk(t, t2) for t, t2 in spans))
        # chunks in time order, each sorted by the database: concatenated, they are sorted
        with bulk():
            out = series_columns([s for part in parts for s in part], ["time", *cols])
        times = out["time"]
        if any(b < a for a, b in itertools.pairwise(times)):  # a reader that does not sort
            order = sorted(range(len(times)), key=times.__getitem__)
            out = {k: [v[i] for i in order] for k, v in out.items()}
        return out

    async def buckets(self, site: str, device: str, fields: Sequence[str], start: int, end: int,
                      every: str, tz: str) -> list[dict[str, Any]]:
        """Server-side rollup of gauges: mean/min/max/count per local-calendar bucket."""
        parts = []
        for f in fields:
            i = ident(f)
            parts += [f"mean({i}) AS {ident(f + '_mean')}", f"min({i}) AS {ident(f + '_min')}",
                      f"max({i}) AS {ident(f + '_max')}", f"count({i}) AS {ident(f + '_count')}"]
        return await self.rows(
            f'SELECT {", ".join(parts)} FROM "meter" WHERE site = {quote(site)} AND '
            f"device = {quote(device)} AND time >= {start}ms AND time < {end}ms "
            f"GROUP BY time({every}) tz({quote(tz)})")

    async def counter_points(self, site: str, keys: Sequence[tuple[str, str, str]], start: int,
                             end: int, *, every: str = "1h", aggregate: str = "first"
                             ) -> dict[tuple[str, str], list[tuple[int, float]]]:
        """The first reading of counters per ``every`` for many meters, one query per counter.

        ``keys`` are (gateway, device, counter). Consumption is computed from these with
        ``energy.accounting`` (a lost sample loses no energy: the next difference holds it).
        InfluxQL stamps an aggregate with its bucket's start, so ``first()`` is used: the
        reading it picks is at most one poll interval after that stamp (``last()`` would be
        up to a whole bucket late and shift every period edge by nearly an hour).
        ``every=""`` with ``aggregate="last"`` gives each meter's last reading in the range,
        stamped with its own time (a selector without GROUP BY time keeps it).
        """
        assert aggregate in ("first", "last")
        by_counter: dict[str, set[tuple[str, str]]] = {}
        for gw, dev, counter in keys:
            by_counter.setdefault(counter, set()).add((gw, dev))
        out: dict[tuple[str, str], list[tuple[int, float]]] = {}
        if not by_counter:
            return out
        where = f"WHERE site = {quote(site)} AND time >= {start}ms AND time < {end}ms"
        if every:
            # one statement for every counter: each bucket's first value per field, stamped
            # with the bucket's start, as the one-counter statements were
            sel = ", ".join(f"{aggregate}({ident(c)}) AS {ident(c)}" for c in by_counter)
            answers = [await self.q.query(
                f'SELECT {sel} FROM "meter" {where} '
                f"GROUP BY time({every}), gateway, device fill(none)")]
        else:
            # two selectors in one statement stamp their rows 1970: one statement a counter
            answers = list(await asyncio.gather(*(self.q.query(
                f'SELECT {aggregate}({ident(c)}) AS {ident(c)} FROM "meter" {where} '
                "GROUP BY gateway, device") for c in by_counter)))
        with bulk():  # a month of 30 meters every 30 min: 45,000 points
            for counter, wanted in by_counter.items():
                for series in answers:
                    for sr in series:
                        tags = sr.get("tags") or {}
                        key = (str(tags.get("gateway", "")), str(tags.get("device", "")))
                        if (key not in wanted or counter not in sr["columns"]
                                or not sr.get("values")):
                            continue
                        cols = list(zip(*sr["values"], strict=True))
                        got = [(int(t), float(v)) for t, v in
                               zip(cols[0], cols[sr["columns"].index(counter)], strict=True)
                               if v is not None]
                        if got:
                            out.setdefault(key, []).extend(got)
        return out

    # ------------------------------------------------------------------ what went wrong

    async def rejected(self, site: str, start: int, end: int, *, gateway: str | None = None
                       ) -> list[dict[str, Any]]:
        where = f"site = {quote(site)} AND time >= {start}ms AND time < {end}ms"
        if gateway:
            where += f" AND gateway = {quote(gateway)}"
        return await self.rows(f'SELECT * FROM "rejected" WHERE {where} LIMIT 10000')

    async def alert_rows(self, site: str | None, start: int, end: int) -> list[dict[str, Any]]:
        where = f"time >= {start}ms AND time < {end}ms"
        if site:
            where += f" AND site = {quote(site)}"
        return await self.rows(f'SELECT * FROM "alert" WHERE {where} LIMIT 10000')

    async def completeness(self, site: str, start: int, end: int) -> list[dict[str, Any]]:
        """Ingest's per-gateway, per-day completeness points (seq-based)."""
        return await self.rows(
            f'SELECT * FROM "completeness" WHERE site = {quote(site)} AND time >= {start}ms '
            f"AND time < {end}ms")

    async def entries(self, site: str, start: int, end: int, *, kind: str | None = None,
                      device: str | None = None) -> list[dict[str, Any]]:
        """Manual readings and corrections of readings in [start, end) (the audit trail of
        :mod:`inspector.manual`), oldest entry first. Selected by the *reading's* time."""
        where = (f"site = {quote(site)} AND reading_ts >= {start} AND reading_ts < {end}")
        if kind:
            where += f" AND kind = {quote(kind)}"
        if device:
            where += f" AND device = {quote(device)}"
        rows = await self.rows(f'SELECT * FROM "{MEASUREMENT}" WHERE {where} LIMIT 100000')
        return sorted((row_entry(r) for r in rows), key=lambda r: r["entered_at"])

    async def manual_entries(self, site: str, start: int, end: int) -> list[dict[str, Any]]:
        return await self.entries(site, start, end, kind="reading")

    async def corrections(self, site: str, start: int, end: int) -> list[dict[str, Any]]:
        return await self.entries(site, start, end, kind="correction")

    async def reading_counts(self, site: str, counter_keys: Sequence[tuple[str, str, str]],
                             start: int, end: int) -> dict[tuple[str, str], int]:
        """How many readings each meter's counter has in [start, end) (meter completeness):
        one statement counting every counter per device."""
        out: dict[tuple[str, str], int] = {}
        counters = sorted({c for _, _, c in counter_keys})
        if not counters:
            return out
        sel = ", ".join(f"count({ident(c)}) AS {ident(c)}" for c in counters)
        rows = await self.rows(
            f'SELECT {sel} FROM "meter" WHERE site = {quote(site)} '
            f"AND time >= {start}ms AND time < {end}ms GROUP BY gateway, device")
        for r in rows:
            for c in counters:  # a device with two counters: the last one counted, as ever
                n = r.get(c)
                if n:
                    out[(str(r.get("gateway", "")), str(r.get("device", "")))] = int(n)
        return out


# --------------------------------------------------------------------------- history


async def _nothing() -> list[str]:
    return []


# What an inspector looks at first for each energy type: the counter and its rate.
DEFAULT_VIEW: dict[str, tuple[str, ...]] = {
    "electricity": ("active_energy_import_kwh", "active_power_kw"),
    "water": ("water_volume_m3", "water_flow_m3_h"),
    "gas": ("gas_volume_m3", "gas_flow_m3_h"),
    "steam": ("steam_mass_t", "steam_flow_t_h"),
    "heat": ("heat_energy_gj", "heat_power_kw"),
    "cooling": ("cooling_energy_gj", "heat_power_kw"),
}


async def fetch_history(store: Store, *, site: str, device: str, start: int, end: int,
                        tz: str = "Asia/Shanghai", mode: str = "raw",
                        fields: Sequence[str] | None = None, gap_factor: float | None = None,
                        progress: Callable[[float], None] | None = None,
                        site_model: Any = None, now_ms: int | None = None) -> Any:
    """One meter's :class:`~inspector.history.History` (raw, or rolled up by hour/day).

    ``fields=None`` shows the counter and rate of the meter's energy type; ``["all"]``
    every quantity it reported in the range. ``site_model`` (an :class:`energy.site.Site`)
    gives the meter's poll interval (what a gap is measured against) and its counter
    settings (rollover, replacements, jitter) for the roll-up. The range ends at
    ``now_ms`` (default: the clock) at the latest: the future is no gap.

    The CLI, the API and the console all come through here, so they show one history.
    """
    import time

    from energy import figures
    from inspector import history as hist

    now = now_ms if now_ms is not None else int(time.time() * 1000)
    end = min(end, now)
    if end <= start:
        raise ValueError("the range starts in the future: nothing was read yet")
    everything = fields is not None and list(fields) == ["all"]
    if fields is not None and not everything:
        unknown = [f for f in fields if f not in quantities.QUANTITIES]
        if unknown:
            raise ValueError(f"unknown quantity {unknown[0]!r}")

    async def read(chosen: list[str], gateway: str | None) -> Any:
        return await asyncio.gather(
            store.reading_columns(site, device, chosen, start, end, progress=progress),
            store.rejected(site, start, end, gateway=gateway),
            store.entries(site, start, end, device=device))

    # The site file names the meter's gateway and energy type, so the readings of its view
    # can be read together with its stored tags (one round of queries, not two); the tags
    # then confirm the guess, and which of the view's quantities it reported is seen in the
    # readings themselves (what ``quantities_of`` would count). Anything else: two rounds.
    guess = figures.find_meter(site_model, device) if site_model is not None else None
    spec = (list(DEFAULT_VIEW.get(guess.energy_type, ())) if fields is None
            else [] if everything else list(fields)) if guess is not None else []
    got: Any = None
    if spec and guess is not None:
        meter, got = await asyncio.gather(store.meter(site, device), read(spec, guess.gateway))
        chosen = spec
        if fields is None:
            chosen = [q for q in spec if any(v is not None for v in got[0][q])]
        if (meter is None or meter.gateway != guess.gateway or not chosen
                or (fields is None
                    and tuple(spec) != DEFAULT_VIEW.get(meter.energy_type, ()))):
            got = None  # the guess was wrong: read as if no site file had been given
    if got is None:
        meter, reported = await asyncio.gather(
            store.meter(site, device),
            store.quantities_of(site, device, start, end) if fields is None or everything
            else _nothing())
        if fields is None:
            view = DEFAULT_VIEW.get(meter.energy_type if meter else "", ())
            chosen = [q for q in view if q in reported] or reported
        else:
            chosen = reported if everything else list(fields)
        got = await read(chosen, meter.gateway if meter else None)
    configured = (figures.find_meter(site_model, device, meter.gateway if meter else None)
                  if site_model is not None else None)
    columns, rejected, entries = got
    with bulk():  # a year of a 15-minute meter: 35,040 rows
        raw = hist.raw_history(
            site=site, device=device, start=start, end=end, tz=tz, fields=chosen,
            columns=columns, rejected=rejected,
            gap_factor=hist.GAP_TOLERANCE if gap_factor is None else gap_factor,
            poll_interval_s=configured.poll_interval_s if configured else None,
            meta=meter.as_dict() if meter else {})
    raw.entries = [e for e in entries
                   if e["quantity"] in chosen and (meter is None or e["gateway"] == meter.gateway)]
    if mode == "raw":
        return raw
    if mode not in ("hour", "day"):
        raise ValueError(f"mode {mode!r}: use raw, hour or day")
    gauges = [q for q in chosen if not quantities.is_counter(q)]
    counters = [q for q in chosen if quantities.is_counter(q)]
    bucket_rows = (await store.buckets(site, device, gauges, start, end,
                                       "1h" if mode == "hour" else "1d", tz)) if gauges else []
    pts = {c: [(r["time"], r[c]) for r in raw.rows if r.get(c) is not None] for c in counters}
    return hist.rolled_history(raw=raw, gauges=gauges, bucket_rows=bucket_rows, counters=pts,
                               mode=mode, meter=configured)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- reports

HOUR_MS = 3_600_000


async def exact_at_swaps(store: Store, site: str, meters: Sequence[Any],
                         counters: dict[tuple[str, str], list[tuple[int, float]]],
                         every_ms: int) -> None:
    """Put the true readings in place of the bucketed one around each meter swap.

    :meth:`Store.counter_points` stamps a bucket's first reading with the bucket's start,
    up to one bucket before the reading was taken. That is harmless for a counter, except
    in the bucket that holds a meter swap: a reading of the *new* meter taken after the swap
    would be stamped before it and read as the old meter running backwards (a reset, and the
    old meter's whole index counted again at the swap). The readings of that one bucket are
    read as they are, so the report's intervals are the ones the rule engine's roll-ups
    compute from raw readings.
    """
    for m in meters:
        key = (m.gateway, m.device)
        pts = counters.get(key)
        if not pts or not m.replacements:
            continue
        for r in m.replacements:
            b = r.at - r.at % every_ms
            if not any(ts == b for ts, _ in pts):
                continue
            raw = await store.readings(site, m.device, [m.counter], b, b + every_ms)
            exact = [(int(x["time"]), float(x[m.counter])) for x in raw
                     if x.get(m.counter) is not None]
            pts = [p for p in pts if p[0] != b] + exact
        counters[key] = sorted(pts)


async def counters_of(store: Store, site: str, meters: Sequence[Any], start: int, end: int,
                      step_ms: int, *, last_from: int | None = None
                      ) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """The counter readings every consumption figure is computed from: each meter's first
    reading per ``step_ms`` bucket in [start, end) (:meth:`Store.counter_points`), the true
    readings in a meter swap's bucket (:func:`exact_at_swaps`) and, for a period still
    running (``last_from`` given), each meter's last reading since ``last_from``, so its
    figures reach now. The report, the energy view and the year's band costs all read here.
    """
    keys = [(m.gateway, m.device, m.counter) for m in meters]

    async def last() -> dict[tuple[str, str], list[tuple[int, float]]]:
        if last_from is None:
            return {}
        return await store.counter_points(site, keys, last_from, end, every="",
                                          aggregate="last")

    out, latest = await asyncio.gather(
        store.counter_points(site, keys, start, end, every=f"{step_ms // 60_000}m"), last())
    await exact_at_swaps(store, site, meters, out, step_ms)
    for k, pts in latest.items():
        out.setdefault(k, []).extend(pts)
    return out


async def fetch_report(store: Store, *, site: Any, period: str, building: str | None = None,
                       now_ms: int | None = None, inputs: dict[str, Any] | None = None,
                       compare: bool = True) -> Any:
    """Gather what :func:`inspector.report.build_report` needs and build the report.

    ``site`` is a :class:`energy.site.Site`. A period that has not ended is cut at
    ``now_ms`` (default: the clock) and labelled partial: nothing is read, counted or
    evaluated beyond now. Counters are read as hourly first values over the period (plus
    a day before, so the first hour's consumption is not lost) and as daily first values
    from 1 January for the quota's year-to-date; a partial period adds each counter's
    last reading before now, so its figures reach as far as the rule engine's.

    ``inputs``, when given, receives the counter readings the figures were computed from
    (``"counters"``: (gateway, device) → [(ts, value)]), so the energy ledger can print the
    readings at the period's edges that make up each meter's consumption without a second
    read that could differ.
    """
    import time

    from inspector import alerts as al
    from inspector import report as rp

    now = now_ms if now_ms is not None else int(time.time() * 1000)
    p = rp.as_of(rp.period_of(period, site.timezone), now)
    meters = [(b, m) for b, m in site.meters() if building is None or b.id == building]
    if building is not None and not any(b.id == building for b in site.buildings):
        raise KeyError(f"no building {building!r} in site {site.site!r}")
    keys = [(m.gateway, m.device, m.counter) for _, m in meters]
    ms = [m for _, m in meters]
    # a month per hour — finer where a tariff changes band within the hour (11:30) — and a
    # year per day (a year of hourly points per meter is 8 760 rows for a monthly chart, and
    # the period edges are days anyway)
    from energy import figures

    step = figures.counter_step_min(site) * 60_000 if p.kind == "month" else DAY_MS
    year0 = rp.period_of(str(p.year), site.timezone).start

    async def year_to_date() -> dict[tuple[str, str], list[tuple[int, float]]] | None:
        if p.kind == "month" and p.start > year0:
            return await counters_of(store, site.site, ms, year0 - DAY_MS, p.start, DAY_MS)
        return None

    async def fine_costs() -> dict[tuple[str, str], list[tuple[int, float]]] | None:
        return await _cost_counters(store, site, p, meters) if p.kind == "year" else None

    # every read is independent of the others: one round of queries
    counters, before, counts, comp, rows, fine = await asyncio.gather(
        counters_of(store, site.site, ms, p.start - DAY_MS,
                    p.end if p.partial else p.end + step, step,
                    last_from=p.start if p.partial else None),
        year_to_date(),
        store.reading_counts(site.site, keys, p.start, p.end),
        store.completeness(site.site, p.start, p.end),
        store.alert_rows(site.site, p.start - 31 * DAY_MS, p.end),
        fine_costs())
    ytd = None
    if before is not None:
        ytd = {k: [*before.get(k, []), *counters.get(k, [])]
               for k in set(before) | set(counters)}
    eps = [e for e in al.episodes(rows)
           if e["since"] < p.end and (e["resolved_at"] is None or e["resolved_at"] >= p.start)]
    if inputs is not None:
        inputs["counters"] = counters
    rep = rp.build_report(site=site, period=p, counters=counters, ytd_counters=ytd,
                          reading_counts=counts, completeness_rows=comp, alerts=eps,
                          building=building, generated_at=now, cost_counters=fine)
    if compare:
        await _compare(store, site, rep, building)
    return rep


async def _cost_counters(store: Store, site: Any, p: Any, meters: Sequence[Any]
                         ) -> dict[tuple[str, str], list[tuple[int, float]]] | None:
    """A year's readings of the meters whose building has a time-of-use tariff, at the
    step its bands change on (an hour, or 30 min…): their band split must be the roll-ups',
    which price every reading, not a day's energy shared out over the day's bands."""
    from energy import figures

    tariffs = figures.site_tariffs(site)
    tou = [m for b, m in meters
           if (t := tariffs.get((b.id, m.energy_type))) is not None and t.seasons]
    if not tou:
        return None
    step = figures.counter_step_min(site) * 60_000
    return await counters_of(store, site.site, tou, p.start - DAY_MS,
                             p.end if p.partial else p.end + step, step,
                             last_from=p.start if p.partial else None)


async def _compare(store: Store, site: Any, rep: Any, building: str | None) -> None:
    """Fill each building's ``previous`` (环比) and ``last_year`` (同比) with the reports of
    those periods — this very function, so the figures compared are computed alike. A report
    of a period that has not ended is compared over the same elapsed time of the other."""
    from energy import figures
    from inspector import report as rp

    p = rep.period
    prev, year_ago = figures.comparison_periods(p.kind, p.label)

    async def other_report(label: str) -> Any:
        other = rp.period_of(label, site.timezone)
        until = min(other.end, other.start + (p.end - p.start)) if p.partial else other.end
        try:
            return await fetch_report(store, site=site, period=label, building=building,
                                      now_ms=until, compare=False)
        except ValueError:  # before the epoch of the data, or a malformed label
            return None

    pairs = [(attr, label) for attr, label in (("previous", prev), ("last_year", year_ago))
             if label is not None]
    others = await asyncio.gather(*(other_report(label) for _, label in pairs))
    for (attr, label), o in zip(pairs, others, strict=True):
        if o is None:
            continue
        by_id = {b.id: b for b in o.buildings}
        for b in rep.buildings:
            ob = by_id.get(b.id)
            if ob is None or not any(m.readings for m in ob.meters):
                continue  # nothing was read then: no comparison, not a 0
            setattr(b, attr, rp.Comparison(label, o.period.start, o.period.end,
                                           {e.energy_type: e.amount for e in ob.energy},
                                           ob.kgce))
