"""Boiler efficiency over a window, from the fuel and output counters and the flue gauges."""

from __future__ import annotations

import itertools
import logging

from energy import boiler
from energy.site import Boiler, Meter, Site
from enmon.influx import ident, quote
from rules.lifecycle import Outcome
from rules.passbase import HOUR, PassBase, PassStats

log = logging.getLogger("enmon.rules.scheduled")
BOILER_STEP = 15 * 60_000


class BoilerChecks(PassBase):
    """The boiler step of a scheduled pass."""

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

