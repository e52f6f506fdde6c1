"""Roll-ups: raw counter readings → ``energy_hourly`` → ``energy_daily`` → ``energy_monthly``."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any
from zoneinfo import ZoneInfo

from energy import accounting
from energy.site import Building, Site
from enmon.influx import ident, quote
from enmon.lineproto import line
from rules.passbase import HOUR, PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")


class Rollups(PassBase):
    """The roll-up step of a scheduled pass."""

    lookback_ms: int
    watermark: dict[str, int]

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
