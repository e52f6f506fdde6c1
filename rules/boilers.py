"""Boiler efficiency over a window, from the fuel and output counters and the flue gauges.

Both methods are stored and judged alike: the direct method (heat out ÷ fuel × NCV) and
the indirect one (100 − heat losses, from the flue gauges) become one ``boiler_efficiency``
point per boiler and pass (tags ``site, building, boiler``; fields ``direct_pct``,
``indirect_pct``, ``limit_pct``, ``ceiling_pct``, ``qualified_h``), and each is compared
with the same GB 24500-2020 limit (alerts ``boiler_efficiency`` and
``boiler_efficiency_indirect``). A figure above the physical ceiling of the boiler's fuel
and type is no verdict but a data-quality alert (``boiler_implausible``) naming the meters.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass

from energy import boiler
from energy.refdata import Ref
from energy.site import Boiler, Meter, Site
from enmon.errors import SinkError
from enmon.influx import ident, quote
from enmon.lineproto import line
from rules.lifecycle import Outcome
from rules.passbase import HOUR, PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")
BOILER_STEP = 15 * 60_000
MEASUREMENT = "boiler_efficiency"


@dataclass(frozen=True, slots=True)
class BoilerWindow:
    """What one boiler's window gave: both methods' figures, the limit and the ceiling."""

    direct: float | None
    indirect: float | None
    limit: float
    ceiling: Ref
    qualified_h: float
    detail: str

    def point(self, site: str, building: str, boiler_id: str, now: int) -> str | None:
        """The stored ``boiler_efficiency`` point, or None when neither method gave a figure."""
        if self.direct is None and self.indirect is None:
            return None
        fields: dict[str, float | int | str | bool] = {
            "limit_pct": float(self.limit), "ceiling_pct": float(self.ceiling.value),
            "qualified_h": float(self.qualified_h)}
        if self.direct is not None:
            fields["direct_pct"] = float(self.direct)
        if self.indirect is not None:
            fields["indirect_pct"] = float(self.indirect)
        return line(MEASUREMENT, {"site": site, "building": building, "boiler": boiler_id},
                    fields, now)


class BoilerChecks(PassBase):
    """The boiler step of a scheduled pass."""

    async def boilers(self, site: Site, now: int, st: PassStats) -> Outcome:
        out = Outcome()
        points: list[str] = []
        for b in site.buildings:
            meters = {m.id: m for m in b.meters}
            for bo in b.boilers:
                try:
                    res = await self.boiler_window(site, bo, meters, now, st)
                except Exception as exc:  # one boiler's bad data must not stop the pass
                    log.warning("event=boiler_check_failed site=%s boiler=%s error=%r",
                                site.site, bo.id, exc)
                    continue
                pt = res.point(site.site, b.id, bo.id, now)
                if pt is not None:
                    points.append(pt)
                out.extend(self.engine.on_boiler(site.site, b.id, bo.id, res.direct, res.limit,
                                                 res.detail, now, indirect=res.indirect,
                                                 ceiling=res.ceiling,
                                                 qualified_h=res.qualified_h))
        try:
            await self._write(points, st)
        except SinkError as exc:  # the alerts above stand; the next pass writes again
            log.warning("event=boiler_points_not_written site=%s points=%d error=%s",
                        site.site, len(points), exc)
        return out

    async def _counter_steps(self, site: Site, m: Meter, start: int, now: int, st: PassStats
                             ) -> dict[int, float]:
        rows = await self._rows(
            f"SELECT last({ident(m.counter)}) AS v FROM meter WHERE site = {quote(site.site)} "
            f"AND gateway = {quote(m.gateway)} AND device = {quote(m.device)} "
            f"AND time >= {start}ms AND time < {now}ms GROUP BY time(15m)", st)
        return {int(r["time"]): float(r["v"]) for r in rows if r.get("v") is not None}

    async def boiler_window(self, site: Site, bo: Boiler, meters: dict[str, Meter], now: int,
                            st: PassStats) -> BoilerWindow:
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
        return BoilerWindow(res.efficiency, indirect, limit,
                            boiler.efficiency_ceiling(bo.fuel, bo.max_efficiency_pct),
                            res.qualified_ms / HOUR, detail)

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

