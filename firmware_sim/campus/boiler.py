"""Gas-fired boilers with load-dependent efficiency, fouling, start-up and low load.

The model is built from the *losses*, the way an indirect-method test is::

    η = 100 − q2 (flue gas) − q3 (unburnt) − q5 (surface) − q_cyc (burner cycling)

with q2 from the flue readings the simulated analyser reports (Siegert's
formula, O2 form: q2 = (t_flue − t_air) · (A2 / (21 − O2) + B)), and fuel is
then whatever the useful heat needs at that efficiency. So the gas counter, the
heat (or steam) counter and the flue analyser always agree with each other and
with the efficiency the model has — a rule computing the direct method from the
counters and one computing the indirect method from the flue readings see the
same boiler (outside start-up, when heat goes into warming the boiler itself).

Coefficients and their standing:
- Siegert A2 = 0.66, B = 0.009 for natural gas: 1. BImSchV (Germany) Anlage,
  commonly cited [U]; the model's own constant, not a claim about GB/T 10180.
- q5 at rated load and its growth as 1/load, cycling loss below the burner's
  turndown, start-up length, fouling ΔT: model parameters [I], set per boiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from firmware_sim.campus import steam

BoilerKind = Literal["steam", "hot_water"]
SIEGERT_NATURAL_GAS = (0.66, 0.009)  # (A2, B): see module docstring [U]


def siegert_q2_pct(flue_c: float, air_c: float, o2_pct: float,
                   a2: float = SIEGERT_NATURAL_GAS[0], b: float = SIEGERT_NATURAL_GAS[1]) -> float:
    """Flue-gas (exhaust) loss in % of fuel input, Siegert's formula, O2 form."""
    return max(0.0, (flue_c - air_c) * (a2 / (21.0 - min(o2_pct, 20.0)) + b))


@dataclass(frozen=True, slots=True)
class BoilerSpec:
    """One boiler's design data (rated output in kW of useful heat).

    Args:
        kind: ``steam`` (reports steam flow/mass/pressure) or ``hot_water`` (supply/return).
        rated_kw: useful heat output at 100 % load.
        min_load: burner turndown as a fraction of rated; below it the burner cycles.
        o2_rated_pct, o2_min_load_pct: flue O2 at rated and at turndown (more excess air).
        flue_rated_c, flue_min_load_c: clean-boiler exhaust temperature at rated / turndown.
        fouling_dt_c: extra exhaust temperature of a fully fouled boiler (fouling = 1).
        surface_loss_pct: q5 at rated load; it grows as rated/actual load.
        unburnt_loss_pct: q3 (CO, H2 in the flue gas).
        cycling_loss_pct: extra loss at the bottom of the cycling range (pre-purge air).
        startup_s: cold start: output ramps from 0 while the boiler's mass heats up.
        cooldown_s: time constant at which a stopped boiler loses its stored heat.
        schedule_h: local hours the boiler is allowed to run (None: whenever needed).
        pressure_mpa_g, feedwater_c: steam boilers: header pressure and feedwater.
        supply_design_c, supply_min_c, delta_t_design_c: hot-water boilers' outdoor reset.
        ncv_mj_m3: net calorific value of the gas, MJ per standard m³.
    """

    id: str
    kind: BoilerKind
    rated_kw: float
    ncv_mj_m3: float = 35.5
    min_load: float = 0.3
    o2_rated_pct: float = 3.0
    o2_min_load_pct: float = 5.0
    flue_rated_c: float = 140.0
    flue_min_load_c: float = 112.0
    fouling_dt_c: float = 95.0
    surface_loss_pct: float = 0.8
    unburnt_loss_pct: float = 0.1
    cycling_loss_pct: float = 1.5
    startup_s: float = 900.0
    cooldown_s: float = 4 * 3600.0
    schedule_h: tuple[float, float] | None = None
    pressure_mpa_g: float = 0.8
    feedwater_c: float = 80.0
    supply_design_c: float = 80.0
    supply_min_c: float = 55.0
    delta_t_design_c: float = 20.0
    siegert_a2: float = SIEGERT_NATURAL_GAS[0]
    siegert_b: float = SIEGERT_NATURAL_GAS[1]

    @property
    def stored_full_mj(self) -> float:
        """Heat the boiler's mass takes up in a cold start at rated load."""
        return self.rated_kw * self.startup_s / 2.0 / 1000.0

    def steam_delta_h(self, p_gauge: float | None = None) -> float:
        p = self.pressure_mpa_g if p_gauge is None else p_gauge
        return steam.vapour_enthalpy_kj_kg(p) - steam.water_enthalpy_kj_kg(self.feedwater_c)


@dataclass(slots=True)
class BoilerState:
    """What a boiler remembers between steps, and its running energy totals (MJ)."""

    on: bool = False
    since_on_s: float = 0.0
    stored_mj: float = 0.0
    flue_c: float = 20.0
    fuel_mj: float = 0.0
    useful_mj: float = 0.0
    loss_mj: float = 0.0
    charged_mj: float = 0.0
    standby_mj: float = 0.0
    starts: int = 0


@dataclass(frozen=True, slots=True)
class BoilerRates:
    """A boiler at one instant. Powers in kW; ``efficiency_pct`` is the model's η."""

    on: bool
    load: float
    efficiency_pct: float
    fuel_kw: float
    useful_kw: float
    charge_kw: float
    loss_kw: float
    standby_kw: float
    flue_o2_pct: float
    flue_c: float
    flue_co_ppm: float
    air_c: float
    losses_pct: dict[str, float] = field(default_factory=dict)
    steam_pressure_mpa: float = 0.0
    steam_t_h: float = 0.0
    supply_c: float = 0.0
    return_c: float = 0.0
    flow_m3_h: float = 0.0


def scheduled(spec: BoilerSpec, local_hour: float) -> bool:
    if spec.schedule_h is None:
        return True
    a, b = spec.schedule_h
    return a <= local_hour < b if a <= b else (local_hour >= a or local_hour < b)


def decide(spec: BoilerSpec, state: BoilerState, demand_kw: float, local_hour: float,
           dt: float) -> None:
    """Burner management: start above 8 % of rated demand, stop below 3 % (hysteresis)."""
    allowed = scheduled(spec, local_hour)
    want = demand_kw > (0.03 if state.on else 0.08) * spec.rated_kw
    if allowed and want:
        if not state.on:
            state.on = True
            state.starts += 1
            # a warm boiler is part-way through its start-up already
            warm = min(1.0, state.stored_mj / spec.stored_full_mj) if spec.stored_full_mj else 1.0
            state.since_on_s = warm * spec.startup_s
        else:
            state.since_on_s += dt
    else:
        state.on = False
        state.since_on_s = 0.0


def rates(spec: BoilerSpec, state: BoilerState, demand_kw: float, air_c: float,
          fouling: float, outdoor_c: float) -> BoilerRates:
    """The boiler's instantaneous readings and flows for the state it is in."""
    if not state.on:
        standby = state.stored_mj * 1000.0 / spec.cooldown_s
        hot = spec.stored_full_mj and state.stored_mj / spec.stored_full_mj
        flue = air_c + (spec.flue_min_load_c - air_c) * 0.5 * min(1.0, hot)
        return BoilerRates(
            on=False, load=0.0, efficiency_pct=0.0, fuel_kw=0.0, useful_kw=0.0, charge_kw=0.0,
            loss_kw=0.0, standby_kw=standby, flue_o2_pct=20.9, flue_c=flue, flue_co_ppm=0.0,
            air_c=air_c, steam_pressure_mpa=spec.pressure_mpa_g * min(1.0, hot) * 0.5,
            supply_c=outdoor_c + (spec.supply_min_c - outdoor_c) * min(1.0, hot),
            return_c=outdoor_c + (spec.supply_min_c - outdoor_c) * min(1.0, hot),
        )
    target = min(demand_kw, spec.rated_kw)
    load = target / spec.rated_kw
    s = min(1.0, state.since_on_s / spec.startup_s) if spec.startup_s else 1.0
    fouling = min(max(fouling, 0.0), 1.0)
    if load >= spec.min_load:
        x = (load - spec.min_load) / (1.0 - spec.min_load)
        o2 = spec.o2_min_load_pct + (spec.o2_rated_pct - spec.o2_min_load_pct) * x
        flue_ss = spec.flue_min_load_c + (spec.flue_rated_c - spec.flue_min_load_c) * x
        cyc = 0.0
        co = 15.0 + 10.0 * (1.0 - x)
    else:  # the burner cycles: averages over on and off periods
        y = 1.0 - load / spec.min_load
        o2 = spec.o2_min_load_pct + 2.5 * y
        flue_ss = spec.flue_min_load_c - 15.0 * y
        cyc = spec.cycling_loss_pct * y
        co = 25.0 + 60.0 * y
    flue_ss += spec.fouling_dt_c * fouling * (0.6 + 0.4 * load)
    # a cold boiler's exhaust is cool until the mass has warmed up
    flue = air_c + (flue_ss - air_c) * (0.45 + 0.55 * s)
    q2 = siegert_q2_pct(flue, air_c, o2, spec.siegert_a2, spec.siegert_b)
    q5 = min(10.0, spec.surface_loss_pct / max(load, 0.08))
    q3 = spec.unburnt_loss_pct
    eta = 100.0 - q2 - q3 - q5 - cyc
    useful = target * s
    charge = target - useful
    fuel = (useful + charge) / (eta / 100.0)
    loss = fuel - useful - charge
    extra: dict[str, float] = {}
    if spec.kind == "steam":
        p = spec.pressure_mpa_g * (0.15 + 0.85 * s)
        extra["steam_pressure_mpa"] = p
        extra["steam_t_h"] = useful / spec.steam_delta_h(p) * 3.6  # kW / (kJ/kg) = kg/s
    else:
        span = 18.0 - (-5.0)
        frac = min(1.0, max(0.0, (18.0 - outdoor_c) / span))
        supply = spec.supply_min_c + (spec.supply_design_c - spec.supply_min_c) * frac
        supply = outdoor_c + (supply - outdoor_c) * (0.5 + 0.5 * s)
        m_kg_s = spec.rated_kw / (steam.CP_WATER * spec.delta_t_design_c)
        extra["supply_c"] = supply
        extra["return_c"] = supply - useful / (m_kg_s * steam.CP_WATER)
        extra["flow_m3_h"] = m_kg_s * 3.6 / 0.975  # density of water at ~70 °C, t/m³
    return BoilerRates(
        on=True, load=load, efficiency_pct=eta, fuel_kw=fuel, useful_kw=useful, charge_kw=charge,
        loss_kw=loss, standby_kw=0.0, flue_o2_pct=o2, flue_c=flue, flue_co_ppm=co, air_c=air_c,
        losses_pct={"q2": q2, "q3": q3, "q5": q5, "q_cyc": cyc}, **extra,
    )


def integrate(state: BoilerState, a: BoilerRates, b: BoilerRates, dt: float) -> None:
    """Advance the energy totals over ``dt`` with the trapezoid rule (kW·s → MJ)."""
    k = dt / 2000.0
    state.fuel_mj += (a.fuel_kw + b.fuel_kw) * k
    state.useful_mj += (a.useful_kw + b.useful_kw) * k
    state.loss_mj += (a.loss_kw + b.loss_kw) * k
    charged = (a.charge_kw + b.charge_kw) * k
    standby = min(state.stored_mj + charged, (a.standby_kw + b.standby_kw) * k)
    state.charged_mj += charged
    state.standby_mj += standby
    state.stored_mj += charged - standby
    state.flue_c = b.flue_c


def gas_m3_h(spec: BoilerSpec, r: BoilerRates) -> float:
    """Fuel input as standard m³/h of gas: kW · 3.6 MJ/kWh / NCV."""
    return r.fuel_kw * 3.6 / spec.ncv_mj_m3
