"""Collect a key energy-using unit's statistics from stored readings: the upload's documents.

Reads the counters of every meter that feeds the unit from InfluxDB ``meter`` (InfluxQL,
so 1.x/2.x/3.x alike) — the readings inside the period plus the last one before and the
first one after it, so the edge intervals are pro-rated as every other figure pro-rates
them — and hands them to :mod:`energy.keyunit`, which computes everything.
"""

from __future__ import annotations

import logging
from typing import Any

from energy import keyunit
from energy.accounting import Reading
from energy.site import KeyUnit, Site
from enmon.influx import InfluxQL, flat_rows, ident, quote

log = logging.getLogger("enmon.upload.collect")


def key_unit(site: Site, code: str) -> KeyUnit:
    for ku in site.key_units:
        if ku.code == code:
            return ku
    known = ", ".join(k.code for k in site.key_units) or "none"
    raise KeyError(f"no key unit {code!r} in site {site.site!r} (known: {known})")


def _statements(site: Site, mid: str, start: int, end: int) -> list[str]:
    m = site.meter(mid)
    field = ident(m.counter)
    where = (f"site = {quote(site.site)} AND gateway = {quote(m.gateway)} "
             f"AND device = {quote(m.device)} AND {field} >= 0")
    base = f"SELECT {field} AS v FROM meter WHERE {where}"
    return [f"{base} AND time >= {start}ms AND time < {end}ms",
            f"{base} AND time < {start}ms ORDER BY time DESC LIMIT 1",
            f"{base} AND time >= {end}ms ORDER BY time ASC LIMIT 1"]


async def readings(ql: InfluxQL, site: Site, ku: KeyUnit, start: int, end: int
                   ) -> dict[str, list[Reading]]:
    """Every feeding meter's readings in [start, end) and the nearest one on each side."""
    mids = list(dict.fromkeys([s.meter for s in ku.sources] +
                              [p.output_meter for p in ku.products]))
    stmts = [q for mid in mids for q in _statements(site, mid, start, end)]
    results = await ql.query_many(stmts)
    out: dict[str, list[Reading]] = {}
    for i, mid in enumerate(mids):
        rows = [r for series in results[3 * i:3 * i + 3] for r in flat_rows(series)]
        out[mid] = sorted((Reading(int(r["time"]), float(r["v"])) for r in rows
                           if r.get("v") is not None), key=lambda r: r.ts)
    return out


async def documents(ql: InfluxQL, site: Site, code: str, kind: keyunit.Kind, label: str, *,
                    now_ms: int) -> list[dict[str, Any]]:
    """The upload documents of one period: a day's, or a month's days followed by the month.

    A month's Σ-days rule compares the month with the days computed here from the same
    readings, as they are uploaded.
    """
    ku = key_unit(site, code)
    p = keyunit.period(kind, label, site.timezone)
    rs = await readings(ql, site, ku, p.start, p.end)
    if kind == "day":
        stats = keyunit.statistics(site, ku, rs, p, now_ms=now_ms)
        return [keyunit.document(ku, stats, generated_at_ms=now_ms)]
    days = [keyunit.statistics(site, ku, rs, d, now_ms=now_ms)
            for d in keyunit.days_of(p, site.timezone) if d.start < now_ms]
    daily = {b: [d.tce[b] for d in days] for b in keyunit.BASES}
    month = keyunit.statistics(site, ku, rs, p, daily_tce=daily, now_ms=now_ms)
    log.info("event=keyunit_collected unit=%s period=%s days=%d ok=%s", code, label,
             len(days), month.quality["ok"])
    return [keyunit.document(ku, s, generated_at_ms=now_ms) for s in [*days, month]]
