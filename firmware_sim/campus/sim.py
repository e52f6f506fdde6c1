"""The campus simulator: steps physics forward and integrates every counter.

One :class:`CampusSim` is the single source of truth for everything a campus
measures. It advances in steps (at most ``max_step`` seconds, and exactly onto
scenario change times); at each step it computes every building's and boiler's
instantaneous rates and integrates the counters with the trapezoid rule, so

- an energy counter is the integral of the power the same meter reports,
- a building's mains is exactly the sum of its sub-item meters (same rates,
  linear integration),
- a boiler's gas counter × NCV = useful heat + flue and other losses + heat
  stored in its mass (see :mod:`firmware_sim.campus.boiler`).

It holds no clock: the history generator drives it over a year in 15-minute
steps, the live endpoints drive it to "now" every second. Noise is a pure
function of (seed, channel, time), so both see the same campus.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from firmware_sim.campus import boiler as bl
from firmware_sim.campus import noise
from firmware_sim.campus.building import (
    CATEGORY,
    POWER_FACTOR,
    SUB_ITEMS,
    Building,
    Demand,
    params_for,
)
from firmware_sim.campus.climate import Climate, outdoor_temp_c
from firmware_sim.campus.config import CampusModel, Meter
from firmware_sim.campus.scenario import Effects, Scenario

ENERGY_TYPE = {
    "mains": "electricity", "lighting_sockets": "electricity", "hvac": "electricity",
    "power": "electricity", "special": "electricity", "water": "water", "gas": "gas",
    "steam": "steam", "heat": "heat", "flue": "other", "weather": "other",
}
# Counter quantities each kind of device keeps.
COUNTERS: dict[str, tuple[str, ...]] = {
    "electric": ("active_energy_import_kwh",),
    "water": ("water_volume_m3",),
    "gas": ("gas_volume_m3",),
    "steam": ("steam_mass_t", "heat_energy_gj"),
    "heat": ("heat_energy_gj", "water_volume_m3"),
    "flue": (),
    "weather": (),
}
_INITIAL_SPAN = {  # (low, high) of a seeded initial counter reading
    "active_energy_import_kwh": (1_000.0, 900_000.0),
    "water_volume_m3": (100.0, 90_000.0),
    "gas_volume_m3": (1_000.0, 900_000.0),
    "steam_mass_t": (100.0, 50_000.0),
    "heat_energy_gj": (100.0, 90_000.0),
}


def family(measures: str) -> str:
    if measures == "mains" or measures in SUB_ITEMS:
        return "electric"
    return measures


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One simulated device and the tags it is published with."""

    id: str
    gateway: str
    building: str
    owner: str  # the building or boiler it measures
    measures: str
    category: str
    energy_type: str
    profile: str
    unit_id: int
    bus: str | None = None  # meters sharing one RS-485 line behind one serial server
    address: str | None = None  # DL/T 645


def year_start(t: float, tz_hours: float) -> float:
    """Epoch seconds of 1 January 00:00 local time of the year containing ``t``."""
    tz = timezone(timedelta(hours=tz_hours))
    local = datetime.fromtimestamp(t, tz)
    return datetime(local.year, 1, 1, tzinfo=tz).timestamp()


class CampusSim:
    """Steps a campus forward in time (pure: no I/O, no clock).

    Args:
        model: the validated campus file.
        start: epoch seconds of the first instant (counters read their initial values).
        scenarios: what goes wrong, and when.
        run_start: anchor of ``run_start`` scenario events (default: ``start``).
        seed: overrides the campus file's seed.
    """

    def __init__(self, model: CampusModel, *, start: float, scenarios: Iterable[Scenario] = (),
                 run_start: float | None = None, seed: int | None = None) -> None:
        self.model = model
        self.seed = model.seed if seed is None else seed
        self.tz_s = model.timezone_hours * 3600.0
        self.climate = Climate(**model.climate.model_dump())
        self.year_start = year_start(start, model.timezone_hours)
        self.run_start = start if run_start is None else run_start
        self.scenarios = list(scenarios)
        self.effects = Effects(self.scenarios, year_start=self.year_start,
                               run_start=self.run_start)
        self.devices: dict[str, DeviceInfo] = {}
        self.templates: dict[str, str] = {}
        self.rollover: dict[str, float] = {}  # device → the value its registers wrap at
        self.buildings: dict[str, Building] = {}
        self.boilers: dict[str, bl.BoilerSpec] = {}
        self.boiler_fouling: dict[str, float] = {}
        self.boiler_state: dict[str, bl.BoilerState] = {}
        initial: dict[tuple[str, str], float | None] = {}
        for b in model.buildings:
            spread = 1.0 + 0.06 * noise.unit(self.seed, noise.key_of(f"size.{b.id}"), 0)
            self.buildings[b.id] = Building(b.id, b.type, b.floor_area_m2,
                                            params_for(b.type, b.params), self.seed, spread)
            for m in b.meters:
                self._add_meter(m, b.gateway, b.id, b.id, CATEGORY[m.measures], initial)
        if model.boiler_house:
            house = model.boiler_house
            for b2 in house.boilers:
                self.boilers[b2.id] = bl.BoilerSpec(
                    id=b2.id, kind=b2.kind, rated_kw=b2.rated_kw, ncv_mj_m3=model.gas_ncv_mj_m3,
                    schedule_h=b2.schedule_h, **b2.params)
                self.boiler_fouling[b2.id] = b2.fouling
                self.boiler_state[b2.id] = bl.BoilerState()
                for m in b2.meters:
                    self._add_meter(m, house.gateway, house.building, b2.id,
                                    CATEGORY.get(m.measures, ""), initial)
        if model.weather:
            w = model.weather
            self.devices[w.device] = DeviceInfo(w.device, w.gateway, w.building, w.building,
                                                "weather", "", "other", w.profile, w.unit_id)
            if w.template:
                self.templates[w.device] = w.template
        self._raw: dict[tuple[str, str], float] = {}
        self._offset: dict[tuple[str, str], float] = {}
        for key, value in initial.items():
            lo, hi = _INITIAL_SPAN[key[1]]
            k = noise.key_of(f"init.{key[0]}.{key[1]}")
            seeded = lo + (hi - lo) * noise.fraction(self.seed, k)
            self._raw[key] = 0.0
            self._offset[key] = round(seeded, 1) if value is None else value
        self._phase = {
            d: self._phase_split(d) for d, info in self.devices.items()
            if family(info.measures) == "electric"
        }
        # the phase split of each sub-item as the mains sees it (that of its sub-meter)
        third = (1 / 3, 1 / 3, 1 / 3)
        self._item_split: dict[tuple[str, str], tuple[float, float, float]] = {
            (bid, item): next((self._phase[d] for d, i in self.devices.items()
                               if i.owner == bid and i.measures == item), third)
            for bid in self.buildings for item in SUB_ITEMS
        }
        self._replacements = self.effects.replacements()
        self._change_times = self.effects.change_times() + [r[0] for r in self._replacements]
        # (t, device, quantity, old meter's final index, new meter's initial index)
        self.replaced: list[tuple[float, str, str, float, float]] = []
        self.t = start
        self._compute(start, 0.0)
        for bid, st in self.boiler_state.items():
            if st.on:  # a boiler already running when the simulation starts is warm
                spec = self.boilers[bid]
                st.since_on_s = spec.startup_s
                st.stored_mj = spec.stored_full_mj * self.boiler_rates[bid].load
                st.starts = 0
        self._compute(start, 0.0)
        self._rates = self._counter_rates()

    def _add_meter(self, m: Meter, gateway: str, building: str, owner: str, category: str,
                   initial: dict[tuple[str, str], float | None]) -> None:
        """Building and boiler meters register alike; only owner and category differ."""
        self.devices[m.device] = DeviceInfo(
            m.device, gateway, building, owner, m.measures, category, ENERGY_TYPE[m.measures],
            m.profile, m.unit_id, m.bus, m.address)
        if m.template:
            self.templates[m.device] = m.template
        for q in COUNTERS[family(m.measures)]:
            initial[(m.device, q)] = m.initial
        if m.rollover_at is not None:
            self.rollover[m.device] = m.rollover_at

    def reanchor(self, run_start: float) -> None:
        """Restart the ``run_start`` clock of the scenarios (e.g. when the live part begins).

        History generated before keeps what it saw; events still ahead move with the anchor.
        """
        self.run_start = run_start
        self.effects = Effects(self.scenarios, year_start=self.year_start, run_start=run_start)
        self._replacements = [r for r in self.effects.replacements() if r[0] > self.t]
        self._change_times = self.effects.change_times() + [r[0] for r in self._replacements]

    # ------------------------------------------------------------------ stepping

    def _phase_split(self, device: str) -> tuple[float, float, float]:
        a = 1 / 3 + 0.03 * noise.unit(self.seed, noise.key_of(f"phase.{device}"), 1)
        b = 1 / 3 + 0.03 * noise.unit(self.seed, noise.key_of(f"phase.{device}"), 2)
        return a, b, 1.0 - a - b

    def local_s(self, t: float) -> float:
        return t + self.tz_s

    def _compute(self, t: float, dt: float) -> None:
        """Instantaneous state at ``t`` (boiler burners decide over the last ``dt``)."""
        loc = self.local_s(t)
        self.outdoor_c = outdoor_temp_c(self.climate, self.seed, loc)
        self.demand: dict[str, Demand] = {
            bid: b.demand(self.outdoor_c, loc, self.effects.multipliers(bid, t))
            for bid, b in self.buildings.items()
        }
        self.boiler_rates: dict[str, bl.BoilerRates] = {}
        if not self.boilers:
            return
        heat = 1.03 * sum(d.heat_kw for d in self.demand.values())  # 3 % distribution loss
        steam_kg_h = sum(d.steam_kg_h for d in self.demand.values())
        n_hw = sum(1 for s in self.boilers.values() if s.kind == "hot_water") or 1
        n_st = sum(1 for s in self.boilers.values() if s.kind == "steam") or 1
        self.boiler_air_c = 25.0 + 0.3 * (self.outdoor_c - 15.0)
        hour = (loc % 86_400.0) / 3600.0
        for bid, spec in self.boilers.items():
            st = self.boiler_state[bid]
            if spec.kind == "hot_water":
                dem = heat / n_hw
            else:
                dem = steam_kg_h / n_st / 3600.0 * spec.steam_delta_h()
            bl.decide(spec, st, dem, hour, dt)
            foul = self.effects.fouling(bid, self.boiler_fouling[bid], t)
            self.boiler_rates[bid] = bl.rates(spec, st, dem, self.boiler_air_c, foul,
                                              self.outdoor_c)

    def _counter_rates(self) -> dict[tuple[str, str], float]:
        """Per-second rate of every counter, in the counter's own unit."""
        r: dict[tuple[str, str], float] = {}
        for d, info in self.devices.items():
            m = info.measures
            if m in SUB_ITEMS:
                r[(d, "active_energy_import_kwh")] = self.demand[info.owner].electric_kw[m] / 3600
            elif m == "mains":
                r[(d, "active_energy_import_kwh")] = math.fsum(
                    self.demand[info.owner].electric_kw.values()) / 3600
            elif m == "water":
                r[(d, "water_volume_m3")] = self.demand[info.owner].water_m3_h / 3600
            elif m == "gas" and info.owner in self.buildings:
                r[(d, "gas_volume_m3")] = self.demand[info.owner].gas_m3_h / 3600
            elif m == "gas":
                br = self.boiler_rates[info.owner]
                r[(d, "gas_volume_m3")] = bl.gas_m3_h(self.boilers[info.owner], br) / 3600
            elif m in ("steam", "heat"):
                br = self.boiler_rates[info.owner]
                r[(d, "heat_energy_gj")] = br.useful_kw / 1e6
                if m == "heat":  # the heat meter's flow totaliser
                    r[(d, "water_volume_m3")] = br.flow_m3_h / 3600
                if m == "steam":
                    r[(d, "steam_mass_t")] = br.steam_t_h / 3600
        return r

    def _step(self, t_new: float) -> None:
        dt = t_new - self.t
        prev_boiler = self.boiler_rates
        self._compute(t_new, dt)
        new = self._counter_rates()
        for key, rate in new.items():
            self._raw[key] += (self._rates[key] + rate) * 0.5 * dt
        for bid, br in self.boiler_rates.items():
            bl.integrate(self.boiler_state[bid], prev_boiler[bid], br, dt)
        self._rates = new
        self.t = t_new
        while self._replacements and self._replacements[0][0] <= t_new:
            _, dev, reading = self._replacements.pop(0)
            for key in list(self._raw):
                if key[0] == dev:
                    # what a site file records of a swap: when, the old meter's last index
                    # and the new one's first (the accounting bridges the two with them)
                    self.replaced.append((t_new, dev, key[1], self.counter(dev, key[1]),
                                          reading))
                    self._offset[key] = reading - self._raw[key]

    def advance_to(self, t: float, max_step: float = 60.0) -> None:
        """Step forward to ``t`` (never backwards), landing exactly on change times."""
        while self.t < t:
            nxt = min(t, self.t + max_step)
            for c in self._change_times:
                if self.t < c < nxt:
                    nxt = c
                    break
            self._step(nxt)

    # ------------------------------------------------------------------ reading

    def counter(self, device: str, quantity: str) -> float:
        v = self._raw[(device, quantity)] + self._offset[(device, quantity)]
        wrap = self.rollover.get(device)
        return v % wrap if wrap is not None else v

    def answering(self, device: str) -> bool:
        return not self.effects.device_dead(device, self.t)

    def uplink_up(self, gateway: str) -> bool:
        return not self.effects.uplink_down(gateway, self.t)

    def gateways(self) -> list[str]:
        return sorted({d.gateway for d in self.devices.values()})

    def reading(self, device: str, *, energy_only: bool = False) -> dict[str, float]:
        """Everything the device measures right now, in canonical units.

        The endpoint serves the subset its profile has; a dead device is the
        endpoint's business (it stops answering), the physics keeps running.
        ``energy_only`` skips an electricity meter's voltages, currents and phases
        (its counters and total power only): the history generator's fast path.
        """
        info = self.devices[device]
        fam = family(info.measures)
        out: dict[str, float] = {q: self.counter(device, q) for q in COUNTERS[fam]}
        if fam == "electric" and energy_only:
            kw = self.demand[info.owner].electric_kw
            out["active_power_kw"] = (math.fsum(kw.values()) if info.measures == "mains"
                                      else kw[info.measures])
        elif fam == "electric":
            out.update(self._electric(device, info))
        elif fam == "water":
            out["water_flow_m3_h"] = self.demand[info.owner].water_m3_h
        elif fam == "gas":
            if info.owner in self.buildings:
                out["gas_flow_m3_h"] = self.demand[info.owner].gas_m3_h
                out["gas_pressure_kpa"] = 2.0
            else:
                out["gas_flow_m3_h"] = bl.gas_m3_h(self.boilers[info.owner],
                                                   self.boiler_rates[info.owner])
                out["gas_pressure_kpa"] = 10.0
            out["gas_temp_c"] = 12.0 + 0.5 * self.outdoor_c
        elif fam == "steam":
            br = self.boiler_rates[info.owner]
            spec = self.boilers[info.owner]
            out.update(steam_flow_t_h=br.steam_t_h, steam_pressure_mpa=br.steam_pressure_mpa,
                       steam_temp_c=bl.steam.saturation_temp_c(br.steam_pressure_mpa),
                       feedwater_temp_c=spec.feedwater_c, heat_power_kw=br.useful_kw)
        elif fam == "heat":
            br = self.boiler_rates[info.owner]
            out.update(heat_power_kw=br.useful_kw, supply_temp_c=br.supply_c,
                       return_temp_c=br.return_c, water_flow_m3_h=br.flow_m3_h)
        elif fam == "flue":
            br = self.boiler_rates[info.owner]
            out.update(flue_o2_pct=br.flue_o2_pct, flue_temp_c=br.flue_c,
                       flue_co_ppm=br.flue_co_ppm, combustion_air_temp_c=br.air_c,
                       boiler_load_pct=100.0 * br.load)
        elif fam == "weather":
            loc = self.local_s(self.t)
            rh = 70.0 - 1.2 * (self.outdoor_c - self.climate.mean_c) + 8.0 * noise.smooth(
                self.seed, noise.key_of("weather.rh"), loc, 6 * 3600.0)
            out.update(outdoor_temp_c=self.outdoor_c,
                       relative_humidity_pct=min(100.0, max(5.0, rh)))
        return out

    def _electric(self, device: str, info: DeviceInfo) -> dict[str, float]:
        kw = self.demand[info.owner].electric_kw
        loc = self.local_s(self.t)
        bus = noise.smooth(self.seed, noise.key_of(f"bus.{info.owner}"), loc, 1800.0)
        load = math.fsum(kw.values())
        # one LV bus per building: every meter in it sees the same voltage
        v = 230.0 * (1.0 + 0.012 * bus) - 0.002 * load / max(1.0, len(kw))
        items = SUB_ITEMS if info.measures == "mains" else (info.measures,)
        p = [0.0, 0.0, 0.0]
        q_total = 0.0
        for item in items:
            split = (self._phase[device] if info.measures != "mains"
                     else self._item_split[(info.owner, item)])
            for i in range(3):
                p[i] += kw[item] * split[i]
            pf = POWER_FACTOR[item]
            q_total += kw[item] * math.tan(math.acos(pf))
        total = sum(p)
        pf = total / math.hypot(total, q_total) if total > 0 else 1.0
        volts = (v, v * 1.002, v * 0.998)
        freq = 50.0 + 0.03 * noise.smooth(self.seed, noise.key_of("grid.f"), loc, 120.0)
        return {
            "active_power_kw": total,
            "active_power_l1_kw": p[0], "active_power_l2_kw": p[1], "active_power_l3_kw": p[2],
            "reactive_power_kvar": q_total,
            "apparent_power_kva": math.hypot(total, q_total),
            "power_factor": pf,
            "voltage_l1_v": volts[0], "voltage_l2_v": volts[1], "voltage_l3_v": volts[2],
            "current_l1_a": p[0] * 1000 / (volts[0] * pf),
            "current_l2_a": p[1] * 1000 / (volts[1] * pf),
            "current_l3_a": p[2] * 1000 / (volts[2] * pf),
            "voltage_l1_l2_v": math.sqrt(3) * (volts[0] + volts[1]) / 2,
            "voltage_l2_l3_v": math.sqrt(3) * (volts[1] + volts[2]) / 2,
            "voltage_l3_l1_v": math.sqrt(3) * (volts[2] + volts[0]) / 2,
            "frequency_hz": freq,
            "active_energy_export_kwh": 0.0,
            # import + export; nothing is exported on this campus
            "active_energy_total_kwh": self.counter(device, "active_energy_import_kwh"),
        }
