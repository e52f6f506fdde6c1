"""Master-vs-submeter balance over the last completed site-days, from ``energy_daily``.

Per building with a ``building_total`` electricity meter and sub-item meters: the sum of
the sub-items against the main meter for each of the last ``quality.balance_days``
completed local days (the arithmetic is ``energy.balance``). Late data recomputes
``energy_daily``, and the next pass sees it: a deviation that was only a late sub-meter
resolves on its own. Each judged day is stored as an ``energy_balance`` point (tags
``site, building``; fields ``main_kwh``, ``parts_kwh``, ``deviation``; time = local
midnight), rewritten by every pass, so the report and Grafana show the same figure.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from energy import balance
from energy.site import Site
from enmon.errors import SinkError
from enmon.influx import quote
from enmon.lineproto import line
from rules.lifecycle import Outcome
from rules.passbase import PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")
MEASUREMENT = "energy_balance"


class BalanceChecks(PassBase):
    """The balance step of a scheduled pass: one query per site."""

    async def balance(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        q = self.engine.cfg.quality
        topos = _topologies(site)
        if q.balance_days == 0 or not topos:
            return out
        tz = ZoneInfo(site.timezone)
        today = datetime.fromtimestamp(now / 1000, tz).date()
        end = datetime(today.year, today.month, today.day, tzinfo=tz)
        first = today - timedelta(days=q.balance_days)
        start = datetime(first.year, first.month, first.day, tzinfo=tz)
        rows = await self._rows(
            # the tags as columns, ungrouped: InfluxDB need not build a group per meter
            "SELECT amount, building, meter FROM energy_daily WHERE "
            f"site = {quote(site.site)} AND energy_type = 'electricity' AND "
            f"time >= {int(start.timestamp() * 1000)}ms AND time < {int(end.timestamp() * 1000)}ms",
            st)
        daily: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for r in rows:
            if r.get("amount") is not None:
                by_meter = daily[r.get("building", "")][r.get("meter", "")]
                by_meter[int(r["time"])] = float(r["amount"])
        points = []
        for bid, topo in topos.items():
            days = balance.evaluate_days(daily.get(bid, {}), topo, max_share=q.balance_max_share,
                                         min_amount=q.balance_min_kwh)
            points += [line(MEASUREMENT, {"site": site.site, "building": bid},
                            {"main_kwh": d.main, "parts_kwh": d.parts, "deviation": d.deviation},
                            d.day) for d in days]
            out.extend(self.engine.on_balance(site.site, bid, topo, days, now))
        try:
            await self._write(points, st)
        except SinkError as exc:  # the alerts stand; the next pass writes the days again
            log.warning("event=balance_points_not_written site=%s points=%d error=%s",
                        site.site, len(points), exc)
        return out


_TOPOS: dict[int, tuple[Site, dict[str, balance.Topology]]] = {}


def _topologies(site: Site) -> dict[str, balance.Topology]:
    """Building → its mains and sub-items, for the buildings checked (both present); built
    once per site object (the site file does not change while the process runs)."""
    hit = _TOPOS.get(id(site))
    if hit is not None and hit[0] is site:
        return hit[1]
    if len(_TOPOS) > 1 << 12:
        _TOPOS.clear()
    topos = {b.id: balance.topology(b.meters) for b in site.buildings if b.submeter_balance}
    out = {bid: t for bid, t in topos.items() if t.mains and t.parts}
    _TOPOS[id(site)] = (site, out)
    return out
