"""Scheduled checks over InfluxDB: rollups, quotas, budgets, boilers, completeness.

One *pass* per site, every ``schedule.interval_s``:

1. rollups — raw counter readings of the last few hours → consumption intervals
   (resets, rollovers and swaps handled by ``energy.accounting``) → ``energy_hourly``
   points for every hour touched, then ``energy_daily`` re-summed from the hours of
   every day touched and ``energy_monthly`` from the days of every month touched.
   Written by enmon itself (no continuous queries, no Flux), so it works on 1.x,
   2.x and 3.x alike; re-running a pass overwrites, never adds.
2. quotas and budgets — year-to-date and month-to-date from ``energy_daily``.
3. boilers — fuel and output counters at 15-minute resolution over the window.
4. completeness — readings received vs expected per meter over the last window.

Queries are InfluxQL over ``/query`` (``enmon.influx.InfluxQL``) and grouped per
site, not per meter, so a pass over 10 000 meters is a handful of requests.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from energy import accounting, boiler, quota
from energy.site import Boiler, Building, Meter, Site
from enmon.influx import InfluxQL, Writer, ident, quote
from enmon.lineproto import line
from rules import quality
from rules.engine import Engine
from rules.lifecycle import Outcome

log = logging.getLogger("enmon.rules.scheduled")
HOUR = 3_600_000
BOILER_STEP = 15 * 60_000


@dataclass
class PassStats:
    site: str
    queries: int = 0
    points_read: int = 0
    points_written: int = 0
    seconds: float = 0.0
    per_step: dict[str, float] = field(default_factory=dict)


class Scheduler:
    """Runs passes for the sites of an :class:`Engine` against one InfluxDB."""

    def __init__(self, engine: Engine, query: InfluxQL, writer: Writer, *,
                 lookback_h: float = 3.0) -> None:
        self.engine, self.query, self.writer = engine, query, writer
        self.lookback_ms = int(lookback_h * HOUR)
        self.watermark: dict[str, int] = {}

    async def _rows(self, q: str, st: PassStats) -> list[dict[str, Any]]:
        st.queries += 1
        series = await self.query.query(q)
        out: list[dict[str, Any]] = []
        for s in series:
            tags = s.get("tags", {})
            for values in s["values"]:
                row = dict(zip(s["columns"], values, strict=True))
                row.update(tags)
                out.append(row)
        st.points_read += len(out)
        return out

    async def run_pass(self, now: int) -> tuple[Outcome, list[PassStats]]:
        out = Outcome()
        stats = []
        for site in self.engine.sites.values():
            o, st = await self.site_pass(site, now)
            out.extend(o)
            stats.append(st)
        return out, stats

    async def site_pass(self, site: Site, now: int) -> tuple[Outcome, PassStats]:
        st = PassStats(site.site)
        t0 = time.perf_counter()
        out = Outcome()
        steps = (("rollup", self.rollup(site, now, st)),
                 ("quota", self.quotas(site, now, st)),
                 ("boilers", self.boilers(site, now, st)),
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

    # ------------------------------------------------------------------ rollups

    async def rollup(self, site: Site, now: int, st: PassStats) -> None:
        tz = ZoneInfo(site.timezone)
        since = self.watermark.get(site.site, now - self.lookback_ms)
        first_hour = accounting.bucket_start(min(since, now - HOUR), "hour", tz)
        read_from = first_hour - self.lookback_ms  # a reading before the first hour is needed
        meters = site.meters()
        fields = sorted({m.counter for _, m in meters})
        if not fields:
            return
        sel = ",".join(ident(f) for f in fields)
        t = time.perf_counter()
        rows = await self._rows(
            f"SELECT {sel} FROM meter WHERE site = {quote(site.site)} AND time >= {read_from}ms "
            f"AND time <= {now}ms GROUP BY gateway, device", st)
        st.per_step["rollup.read"] = time.perf_counter() - t
        t = time.perf_counter()
        series: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            series[(r.get("gateway", ""), r.get("device", ""))].append(r)
        hourly: dict[str, dict[int, float]] = {}
        lines: list[str] = []
        for b, m in meters:
            got = series.get((m.gateway, m.device), [])
            pts = [(int(r["time"]), float(r[m.counter])) for r in got
                   if r.get(m.counter) is not None]
            reps = [accounting.Replacement(x.at, x.old_final, x.new_initial)
                    for x in m.replacements]
            ivs = accounting.intervals(pts, rollover_at=m.rollover_at, replacements=reps,
                                       jitter=m.jitter)
            buckets = {k: v for k, v in accounting.rollup(ivs, "hour", tz).items()
                       if k >= first_hour}
            hourly[m.id] = buckets
            lines += self._energy_lines("energy_hourly", site, b, m.id, m.energy_type, m.category,
                                        m.building_total, buckets)
        for b in site.buildings:
            for v in b.virtual_meters:
                buckets = accounting.combine(hourly, v.plus, v.minus)
                lines += self._energy_lines("energy_hourly", site, b, v.id, v.energy_type,
                                            v.category, v.building_total, buckets)
        st.per_step["rollup.compute"] = time.perf_counter() - t
        t = time.perf_counter()
        await self._write(lines, st)
        st.per_step["rollup.write_hourly"] = time.perf_counter() - t
        t = time.perf_counter()
        # days touched: re-sum their hours (complete days from the stored hourly points)
        first_day = accounting.bucket_start(first_hour, "day", tz)
        rows = await self._rows(
            "SELECT sum(amount) AS amount, sum(kgce) AS kgce FROM energy_hourly "
            f"WHERE site = {quote(site.site)} AND time >= {first_day}ms AND time <= {now}ms "
            f"GROUP BY time(1d), building, meter, energy_type, category, total "
            f"tz({quote(site.timezone)})", st)
        await self._write(_rollup_lines("energy_daily", site.site, rows), st)
        st.per_step["rollup.daily"] = time.perf_counter() - t
        t = time.perf_counter()
        month = accounting.bucket_start(first_day, "month", tz)
        while month <= now:
            nxt = accounting.next_bucket(month, "month", tz)
            await self._monthly(site, month, nxt, st)
            month = nxt
        st.per_step["rollup.monthly"] = time.perf_counter() - t
        self.watermark[site.site] = now

    async def _monthly(self, site: Site, month: int, nxt: int, st: PassStats) -> None:
        """``energy_monthly`` for one local calendar month, re-summed from its days."""
        rows = await self._rows(
            "SELECT sum(amount) AS amount, sum(kgce) AS kgce FROM energy_daily "
            f"WHERE site = {quote(site.site)} AND time >= {month}ms AND time < {nxt}ms "
            "GROUP BY building, meter, energy_type, category, total", st)
        await self._write(_rollup_lines("energy_monthly", site.site, rows, ts=month), st)

    def _energy_lines(self, meas: str, site: Site, b: Building, meter: str, energy_type: str,
                      category: str, total: bool, buckets: dict[int, float]) -> list[str]:
        out = []
        factor = None
        try:
            key = site.electricity_kgce if energy_type == "electricity" else None
            factor = accounting.coal_factor(energy_type, key)
        except Exception:  # no kgce factor for this energy type (water): amount only
            factor = None
        tags = {"site": site.site, "building": b.id, "meter": meter, "energy_type": energy_type,
                "category": category, "total": "1" if total else "0"}
        # the series key is the same for every bucket: escape it once (the hot path)
        key = line(meas, tags, {"amount": 0.0}, 0).rsplit(" ", 2)[0]
        for ts, amount in buckets.items():
            kgce = f",kgce={float(amount * factor.value)!r}" if factor is not None else ""
            out.append(f"{key} amount={float(amount)!r}{kgce} {ts}")
        return out

    async def _write(self, lines: list[str], st: PassStats) -> None:
        for i in range(0, len(lines), 5000):
            await self.writer.write(lines[i:i + 5000])
        st.points_written += len(lines)

    # ------------------------------------------------------------------ quotas and budgets

    async def quotas(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        if not any(b.quota or b.budgets for b in site.buildings):
            return out
        tz = ZoneInfo(site.timezone)
        d = datetime.fromtimestamp((now - 1) / 1000, tz)
        year0 = int(datetime(d.year, 1, 1, tzinfo=tz).timestamp() * 1000)
        month0 = int(datetime(d.year, d.month, 1, tzinfo=tz).timestamp() * 1000)
        sums: dict[str, dict[tuple[str, str], dict[str, float]]] = {}
        for label, start in (("year", year0), ("month", month0)):
            rows = await self._rows(
                "SELECT sum(amount) AS amount, sum(kgce) AS kgce FROM energy_daily "
                f"WHERE site = {quote(site.site)} AND total = '1' AND time >= {start}ms "
                f"AND time <= {now}ms GROUP BY building, energy_type", st)
            sums[label] = {(r["building"], r["energy_type"]): {
                "amount": float(r.get("amount") or 0.0), "kgce": float(r.get("kgce") or 0.0)}
                for r in rows}
        for b in site.buildings:
            if b.quota is not None:
                q = b.quota
                used = _used(sums["year"], b.id, q.measure, None)
                allowance = quota.annual_allowance(quota.building_intensity(b), basis=q.basis,
                                                   floor_area_m2=b.floor_area_m2,
                                                   occupants=b.occupants)
                frac = quota.year_fraction(now - 1, tz, q.seasonal_weights)
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

    # ------------------------------------------------------------------ boilers

    async def boilers(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        for b in site.buildings:
            meters = {m.id: m for m in b.meters}
            for bo in b.boilers:
                try:
                    eff, limit, detail = await self.boiler_window(site, bo, meters, now, st)
                except Exception as exc:  # one boiler's bad data must not stop the pass
                    log.warning("event=boiler_check_failed site=%s boiler=%s error=%r",
                                site.site, bo.id, exc)
                    continue
                out.extend(self.engine.on_boiler(site.site, b.id, bo.id, eff, limit, detail, now))
        return out

    async def _counter_steps(self, site: Site, m: Meter, start: int, now: int, st: PassStats
                             ) -> dict[int, float]:
        rows = await self._rows(
            f"SELECT last({ident(m.counter)}) AS v FROM meter WHERE site = {quote(site.site)} "
            f"AND gateway = {quote(m.gateway)} AND device = {quote(m.device)} "
            f"AND time >= {start}ms AND time < {now}ms GROUP BY time(15m)", st)
        return {int(r["time"]): float(r["v"]) for r in rows if r.get("v") is not None}

    async def boiler_window(self, site: Site, bo: Boiler, meters: dict[str, Meter], now: int,
                            st: PassStats) -> tuple[float | None, float, str]:
        window = int(bo.window_h * HOUR)
        start = now - window - BOILER_STEP
        fuel = await self._counter_steps(site, meters[bo.fuel_meter], start, now, st)
        outp = await self._counter_steps(site, meters[bo.output_meter], start, now, st)
        ivs = []
        keys = sorted(set(fuel) & set(outp))
        out_m = meters[bo.output_meter]
        for k0, k1 in itertools.pairwise(keys):
            if k1 - k0 != BOILER_STEP:
                continue
            dfuel, dout = fuel[k1] - fuel[k0], outp[k1] - outp[k0]
            if dfuel < 0 or dout < 0:
                continue  # a counter reset inside the window: skip that step
            if out_m.counter == "steam_mass_t":
                heat = boiler.steam_heat_kj(dout, gauge_mpa=bo.steam_gauge_mpa,
                                            feedwater_c=bo.feedwater_temp_c,
                                            steam_temp_c=bo.steam_temp_c)
            else:
                heat = dout * 1e6  # GJ → kJ
            load = 100.0 * (heat / (BOILER_STEP / 1000)) / bo.rated_kw
            ivs.append(boiler.BoilerInterval(k0, k1, heat, dfuel, load))
        gauges = await self._gauges(site, bo, start, now, st)
        if gauges and out_m.counter == "steam_mass_t":
            ivs = [self._measured_feedwater(bo, iv, gauges) for iv in ivs]
        res = boiler.window_efficiency(ivs, ncv_kj_per_unit=bo.ncv_mj_per_unit * 1000,
                                       min_load_pct=bo.min_load_pct,
                                       startup_ms=int(bo.startup_min * 60_000),
                                       min_coverage=bo.min_coverage, window=(now - window, now))
        if bo.limit_pct is not None:
            limit, src = bo.limit_pct, "site file"
        else:
            lim = boiler.gb24500_limit(bo.combustion, bo.fuel, steam_t_h=bo.rated_t_h,
                                       hot_water_mw=bo.rated_mw)
            limit, src = lim.limit, "GB 24500-2020 grade 3"
        detail = (f"direct method over {bo.window_h:g} h, {res.qualified_ms / HOUR:.1f} h above "
                  f"{bo.min_load_pct:g} % load; limit from {src}")
        indirect = self._indirect(bo, ivs, gauges)
        if indirect is not None:
            detail += f"; indirect (heat-loss) method {indirect:.1f} %"
        return res.efficiency, limit, detail

    async def _gauges(self, site: Site, bo: Boiler, start: int, now: int, st: PassStats
                      ) -> dict[int, dict[str, float]]:
        if bo.instruments is None:
            return {}
        rows = await self._rows(
            "SELECT mean(flue_o2_pct) AS o2, mean(flue_temp_c) AS flue, "
            "mean(combustion_air_temp_c) AS air, mean(feedwater_temp_c) AS fw FROM meter "
            f"WHERE site = {quote(site.site)} AND gateway = {quote(bo.instruments.gateway)} AND "
            f"device = {quote(bo.instruments.device)} AND time >= {start}ms AND time < {now}ms "
            "GROUP BY time(15m)", st)
        return {int(r["time"]): {k: float(r[k]) for k in ("o2", "flue", "air", "fw")
                                 if r.get(k) is not None} for r in rows}

    @staticmethod
    def _measured_feedwater(bo: Boiler, iv: boiler.BoilerInterval,
                            gauges: dict[int, dict[str, float]]) -> boiler.BoilerInterval:
        """Recompute an interval's heat with the feedwater temperature measured in it."""
        fw = gauges.get(iv.start, {}).get("fw")
        if fw is None or iv.heat_kj <= 0:
            return iv
        per_t = boiler.steam_heat_kj(1.0, gauge_mpa=bo.steam_gauge_mpa,
                                     feedwater_c=bo.feedwater_temp_c, steam_temp_c=bo.steam_temp_c)
        steam_t = iv.heat_kj / per_t
        heat = boiler.steam_heat_kj(steam_t, gauge_mpa=bo.steam_gauge_mpa, feedwater_c=fw,
                                    steam_temp_c=bo.steam_temp_c)
        return boiler.BoilerInterval(iv.start, iv.end, heat, iv.fuel,
                                     iv.load_pct * heat / iv.heat_kj)

    @staticmethod
    def _indirect(bo: Boiler, ivs: list[boiler.BoilerInterval],
                  gauges: dict[int, dict[str, float]]) -> float | None:
        """Mean indirect efficiency over intervals above minimum load that have flue gauges."""
        try:
            coef = boiler.coefficients(bo.fuel, bo.exhaust_loss)
        except Exception:  # no cited coefficients for this fuel: no indirect figure
            return None
        vals = []
        for iv in ivs:
            g = gauges.get(iv.start, {})
            if iv.load_pct < bo.min_load_pct or "o2" not in g or "flue" not in g:
                continue
            vals.append(boiler.indirect_efficiency(g["flue"], g.get("air", bo.air_temp_c), g["o2"],
                                                   coef, bo.other_losses_pct))
        return sum(vals) / len(vals) if vals else None

    # ------------------------------------------------------------------ completeness

    async def completeness(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        q = self.engine.cfg.quality
        window = int(q.completeness_window_s * 1000)
        by_counter: dict[str, list[Meter]] = defaultdict(list)
        for _, m in site.meters():
            by_counter[m.counter].append(m)
        for counter, ms in by_counter.items():
            rows = await self._rows(
                f"SELECT count({ident(counter)}) AS n FROM meter WHERE site = {quote(site.site)} "
                f"AND time > {now - window}ms AND time <= {now}ms GROUP BY gateway, device", st)
            got = {(r.get("gateway"), r.get("device")): int(r.get("n") or 0) for r in rows}
            for m in ms:
                n = got.get((m.gateway, m.device), 0)
                f = quality.completeness(n, window_ms=window,
                                         interval_ms=int(m.poll_interval_s * 1000),
                                         target=q.completeness_target)
                out.extend(self.engine.on_finding((site.site, m.gateway, m.device), "completeness",
                                                  f, now))
        return out


def _rollup_lines(measurement: str, site: str, rows: list[dict[str, Any]],
                  ts: int | None = None) -> list[str]:
    """Summed rows → one line per meter and period; the daily and monthly roll-ups differ
    only in where they write and whether the period start comes from the row."""
    out = []
    for r in rows:
        if r.get("amount") is None:  # a period without data writes nothing, not 0
            continue
        fields: dict[str, float | int | str | bool] = {"amount": float(r["amount"])}
        if r.get("kgce") is not None:
            fields["kgce"] = float(r["kgce"])
        tags = {k: r.get(k, "") for k in ("building", "meter", "energy_type", "category", "total")}
        out.append(line(measurement, {"site": site, **tags}, fields,
                        int(r["time"]) if ts is None else ts))
    return out


def _used(sums: dict[tuple[str, str], dict[str, float]], building: str, measure: str,
          energy_type: str | None) -> float:
    """kWh of electricity, or kgce of everything (or one energy type's amount)."""
    total = 0.0
    for (b, et), v in sums.items():
        if b != building:
            continue
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
