"""Scheduled checks over InfluxDB: rollups, quotas, budgets, boilers, completeness.

One *pass* per site, every ``schedule.interval_s``:

1. rollups — every hour, site-day and month touched by readings stored since the last
   pass (late, replayed, re-sent: ``rules.rollups``), recomputed from the raw counters
   (resets, rollovers and swaps handled by ``energy.accounting``) into ``energy_hourly``,
   ``energy_daily`` and ``energy_monthly``. Written by enmon itself (no continuous
   queries, no Flux), so it works on 1.x, 2.x and 3.x alike; re-running overwrites.
2. quotas and budgets — year-to-date and month-to-date from ``energy_monthly``.
3. boilers — fuel and output counters at 15-minute resolution over the window.
4. completeness — readings received vs expected per meter over the last window.

Queries are InfluxQL over ``/query`` (``enmon.influx.InfluxQL``) and grouped per
site, not per meter, so a pass over 10 000 meters is a handful of requests.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from energy import quota
from energy.site import Meter, Site
from enmon.influx import InfluxQL, Writer, ident, quote
from rules import quality
from rules.balance import BalanceChecks
from rules.boilers import BoilerChecks
from rules.corrections import CorrectionChecks
from rules.engine import Engine
from rules.lifecycle import Outcome
from rules.passbase import PassStats
from rules.rollups import Rollups

log = logging.getLogger("enmon.rules.scheduled")
SITES_AT_ONCE = 2  # site passes in flight: one computing while another's statements run


class Scheduler(CorrectionChecks, Rollups, BoilerChecks, BalanceChecks):
    """Runs passes for the sites of an :class:`Engine` against one InfluxDB."""

    def __init__(self, engine: Engine, query: InfluxQL, writer: Writer, *,
                 settle_s: float = 30.0, clock: Callable[[], float] = time.time,
                 concurrency: int = SITES_AT_ONCE) -> None:
        self.engine, self.query, self.writer = engine, query, writer
        self.concurrency = max(1, concurrency)
        self.settle_ms = int(settle_s * 1000)
        self.clock = clock
        self.through: dict[str, int] = {}
        self.sources: dict[str, dict[str, set[tuple[str, str, str]]]] = {}
        self.seen: dict[str, dict[tuple[str, str], tuple[int, int, list[int]]]] = {}

    async def run_pass(self, now: int) -> tuple[Outcome, list[PassStats]]:
        """Every site's pass, ``concurrency`` sites at a time: while one site's statements run
        in InfluxDB, the rule engine computes another's roll-ups, so a pass over many sites
        takes about the longer of the two, not their sum. Sites share nothing but the alert
        book, which is only touched between awaits. Outcomes come back in site order; the
        first failure cancels the rest (the next pass redoes them: writes are idempotent)."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(site: Site) -> tuple[Outcome, PassStats]:
            async with sem:
                return await self.site_pass(site, now)

        tasks = [asyncio.ensure_future(one(s)) for s in self.engine.sites.values()]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        out = Outcome()
        for o, _ in results:
            out.extend(o)
        return out, [st for _, st in results]

    async def site_pass(self, site: Site, now: int) -> tuple[Outcome, PassStats]:
        st = PassStats(site.site)
        t0 = time.perf_counter()
        out = Outcome()
        steps = (("corrections", self.corrections(site, now, st)),
                 ("rollup", self.rollup(site, now, st)),
                 ("quota", self.quotas(site, now, st)),
                 ("boilers", self.boilers(site, now, st)),
                 ("balance", self.balance(site, now, st)),
                 ("completeness", self.completeness(site, now, st)))
        for name, coro in steps:
            t = time.perf_counter()
            res = await coro
            if res is not None:
                out.extend(res)
            st.per_step[name] = time.perf_counter() - t
        st.seconds = time.perf_counter() - t0
        log.info("event=scheduled_pass site=%s queries=%d read=%d written=%d seconds=%.3f",
                 site.site, st.queries, st.points_read, st.points_written, st.seconds)
        return out, st

    # ------------------------------------------------------------------ quotas and budgets

    async def quotas(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        if not any(b.quota or b.budgets for b in site.buildings):
            return out
        tz = ZoneInfo(site.timezone)
        d = datetime.fromtimestamp((now - 1) / 1000, tz)
        year0 = int(datetime(d.year, 1, 1, tzinfo=tz).timestamp() * 1000)
        month0 = int(datetime(d.year, d.month, 1, tzinfo=tz).timestamp() * 1000)
        # year- and month-to-date from the months' roll-ups (at most 12 points per building
        # total, where the days would be 365), one statement for both
        rows = await self._rows(
            "SELECT amount, kgce FROM energy_monthly "
            f"WHERE site = {quote(site.site)} AND total = '1' AND time >= {year0}ms "
            f"AND time <= {now}ms GROUP BY building, energy_type, meter", st)
        sums: dict[str, dict[str, dict[str, dict[str, float]]]] = {
            "year": defaultdict(dict), "month": defaultdict(dict)}
        for r in sorted(rows, key=lambda r: int(r["time"])):
            for label in ("year", "month") if int(r["time"]) >= month0 else ("year",):
                v = sums[label][r["building"]].setdefault(r["energy_type"],
                                                           {"amount": 0.0, "kgce": 0.0})
                v["amount"] += float(r.get("amount") or 0.0)
                v["kgce"] += float(r.get("kgce") or 0.0)
        fracs: dict[tuple[float, ...] | None, float] = {}
        for b in site.buildings:
            if b.quota is not None:
                q = b.quota
                used = _used(sums["year"], b.id, q.measure, None)
                allowance = quota.annual_allowance(quota.building_intensity(b), basis=q.basis,
                                                   floor_area_m2=b.floor_area_m2,
                                                   occupants=b.occupants)
                weights = tuple(q.seasonal_weights) if q.seasonal_weights is not None else None
                frac = fracs.get(weights)
                if frac is None:  # the same for every building with the same weights
                    frac = fracs[weights] = quota.year_fraction(now - 1, tz, weights)
                status = quota.evaluate_quota(ytd=used, allowance=allowance, fraction=frac,
                                              min_fraction=q.min_fraction,
                                              warn_ratio=q.warn_ratio)
                out.extend(self.engine.on_quota(site.site, b.id, status, q.measure, now))
            for bud in b.budgets:
                period = sums["month" if bud.period == "month" else "year"]
                measure = "kgce" if bud.unit == "kgce" else "amount"
                used = _used(period, b.id, measure, bud.energy_type)
                out.extend(self.engine.on_budget(site.site, b.id, bud.name,
                                                 quota.evaluate_budget(used, bud.amount,
                                                                       warn_ratio=bud.warn_ratio),
                                                 bud.unit, now))
        return out

    # ------------------------------------------------------------------ completeness

    async def completeness(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        q = self.engine.cfg.quality
        window = int(q.completeness_window_s * 1000)
        by_counter: dict[str, list[Meter]] = defaultdict(list)
        for _, m in site.meters():
            by_counter[m.counter].append(m)
        seen = self.seen.get(site.site, {})
        for counter, ms in by_counter.items():
            got = _counted(seen, [(m.gateway, m.device) for m in ms], now - window, now)
            if got is None:
                rows = await self._rows(
                    f"SELECT count({ident(counter)}) AS n FROM meter "
                    f"WHERE site = {quote(site.site)} AND time > {now - window}ms "
                    f"AND time <= {now}ms GROUP BY gateway, device", st)
                got = {(r.get("gateway", ""), r.get("device", "")): int(r.get("n") or 0)
                       for r in rows}
            fine: set[tuple[int, int]] = set()  # (count, poll interval) found complete
            for m in ms:
                n = got.get((m.gateway, m.device), 0)
                every = int(m.poll_interval_s * 1000)
                if (n, every) in fine:  # most meters of a site: the same count, the same poll
                    f = None
                else:
                    f = quality.completeness(n, window_ms=window, interval_ms=every,
                                             target=q.completeness_target)
                    if f is None:
                        fine.add((n, every))
                out.extend(self.engine.on_finding((site.site, m.gateway, m.device), "completeness",
                                                  f, now))
        return out


def _counted(seen: dict[tuple[str, str], tuple[int, int, list[int]]],
             keys: list[tuple[str, str]], t0: int, t1: int) -> dict[tuple[str, str], int] | None:
    """Readings per device in (t0, t1] from what this pass's roll-up read, when it read every
    one of them over the whole of (t0, t1] (it read all of [w0, w1)); ``None`` otherwise, and
    the count is asked of InfluxDB. The same readings either way: no second read of them."""
    out: dict[tuple[str, str], int] = {}
    for k in keys:
        hit = seen.get(k)
        if hit is None or hit[0] > t0 + 1 or hit[1] <= t1:
            return None
        times = hit[2]
        out[k] = bisect.bisect_right(times, t1) - bisect.bisect_right(times, t0)
    return out


def _used(sums: dict[str, dict[str, dict[str, float]]], building: str, measure: str,
          energy_type: str | None) -> float:
    """kWh of electricity, or kgce of everything (or one energy type's amount); ``sums`` is
    building → energy type → summed fields."""
    total = 0.0
    for et, v in sums.get(building, {}).items():
        if measure == "kWh":
            if et == "electricity":
                total += v["amount"]
        elif measure == "kgce":
            if energy_type is None or et == energy_type:
                total += v["kgce"]
        elif energy_type is None or et == energy_type:
            total += v["amount"]
    return total


def sites_summary(sites: Iterable[Site]) -> str:
    s = list(sites)
    return (f"{len(s)} sites, {sum(len(x.buildings) for x in s)} buildings, "
            f"{sum(len(x.meters()) for x in s)} meters")
