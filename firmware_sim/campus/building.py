"""A building's instantaneous demand: electricity by sub-item, water, kitchen gas,
heat from the campus hot-water loop, steam from the boiler house.

Everything here is a pure function of (parameters, outdoor temperature,
local time, scenario multipliers). Counters are *not* kept here: the campus
simulator integrates these rates, so a sub-item meter's counter is always the
integral of the power it reports, and the mains is the sum of its sub-items.

Per-m² figures are model parameters chosen so that annual intensities land in
the ranges public-building statistics report (office ≈ 80-110, hospital ≈
150-200, school ≈ 40-70, mall ≈ 180-250 kWh/(m²·a)); they are not standards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from firmware_sim.campus import noise
from firmware_sim.campus.schedule import Schedule, meal_shape, occupancy

BuildingType = Literal["office", "hospital", "school", "mall"]
SubItem = Literal["lighting_sockets", "hvac", "power", "special"]
SUB_ITEMS: tuple[SubItem, ...] = ("lighting_sockets", "hvac", "power", "special")
# 住建部 2008 sub-item codes (reference/standards.md, [R])
CATEGORY: dict[str, str] = {
    "mains": "01000",
    "lighting_sockets": "01A00",
    "hvac": "01B00",
    "power": "01C00",
    "special": "01D00",
    "water": "02000",
    "gas": "03000",
    "heat": "04000",
    "steam": "04000",
}
# Typical power factors of each kind of load (model parameters).
POWER_FACTOR: dict[str, float] = {
    "lighting_sockets": 0.95, "hvac": 0.86, "power": 0.82, "special": 0.92,
}


@dataclass(frozen=True, slots=True)
class BuildingParams:
    """Per-m² design figures of a building type (W/m², W/(m²·K), l/(h·m²)).

    Args:
        schedule: who is in the building when.
        light_w_m2: lighting & sockets at full occupancy; ``light_base`` of it is always on.
        power_w_m2: lifts, pumps, fans at full occupancy; ``power_base`` always on.
        special_base_w_m2, special_occ_w_m2: IT rooms, kitchens, imaging: fixed + occupancy part.
        cool_ua_w_m2k, cool_balance_c: thermal cooling load per kelvin above balance.
        heat_ua_w_m2k, heat_balance_c: thermal heating load per kelvin below balance.
        cop: chiller coefficient of performance (cooling kW per electric kW).
        fan_w_m2: air handling while the HVAC runs.
        hvac_night: share of the HVAC that keeps running when the building is empty.
        heating: where heat comes from: the campus hot-water loop or heat pumps.
        heat_pump_cop: used when ``heating`` is electric.
        water_l_h_m2: water draw at full occupancy; ``water_base`` of it always.
        kitchen_gas_m3_h_per_1000m2: kitchen gas at the lunch peak, per 1000 m².
        steam_kg_h_m2: process steam (sterilisation, laundry) at full occupancy.
    """

    schedule: Schedule
    light_w_m2: float
    light_base: float
    power_w_m2: float
    power_base: float
    special_base_w_m2: float
    special_occ_w_m2: float
    cool_ua_w_m2k: float
    cool_balance_c: float
    heat_ua_w_m2k: float
    heat_balance_c: float
    cop: float
    fan_w_m2: float
    hvac_night: float
    heating: Literal["boiler", "electric"] = "boiler"
    heat_pump_cop: float = 2.8
    water_l_h_m2: float = 0.15
    water_base: float = 0.1
    kitchen_gas_m3_h_per_1000m2: float = 0.0
    steam_kg_h_m2: float = 0.0


TYPE_DEFAULTS: dict[str, BuildingParams] = {
    "office": BuildingParams(
        schedule=Schedule(open_h=7.5, close_h=18.0, night=0.03, weekend=0.12, lunch_dip=0.2),
        light_w_m2=11.0, light_base=0.12, power_w_m2=3.5, power_base=0.2,
        special_base_w_m2=1.2, special_occ_w_m2=1.0,
        cool_ua_w_m2k=3.0, cool_balance_c=20.0, heat_ua_w_m2k=2.2, heat_balance_c=14.0,
        cop=4.2, fan_w_m2=3.0, hvac_night=0.05, water_l_h_m2=0.12,
    ),
    "hospital": BuildingParams(
        schedule=Schedule(open_h=7.0, close_h=20.0, night=0.45, weekend=0.8),
        light_w_m2=8.0, light_base=0.3, power_w_m2=4.0, power_base=0.35,
        special_base_w_m2=2.5, special_occ_w_m2=2.5,
        cool_ua_w_m2k=3.2, cool_balance_c=19.0, heat_ua_w_m2k=2.5, heat_balance_c=16.0,
        cop=4.0, fan_w_m2=4.0, hvac_night=0.55, water_l_h_m2=0.35, water_base=0.3,
        kitchen_gas_m3_h_per_1000m2=0.9, steam_kg_h_m2=0.12,
    ),
    "school": BuildingParams(
        schedule=Schedule(open_h=7.5, close_h=17.0, night=0.02, weekend=0.08,
                          vacations=((15.0, 55.0), (185.0, 243.0)), vacation=0.12),
        light_w_m2=9.0, light_base=0.08, power_w_m2=2.0, power_base=0.15,
        special_base_w_m2=0.4, special_occ_w_m2=1.5,
        cool_ua_w_m2k=2.0, cool_balance_c=22.0, heat_ua_w_m2k=2.0, heat_balance_c=14.0,
        cop=3.8, fan_w_m2=1.5, hvac_night=0.02, water_l_h_m2=0.2, water_base=0.05,
        kitchen_gas_m3_h_per_1000m2=0.6,
    ),
    "mall": BuildingParams(
        schedule=Schedule(open_h=9.5, close_h=21.5, night=0.04, weekend=1.25),
        light_w_m2=17.0, light_base=0.1, power_w_m2=5.0, power_base=0.15,
        special_base_w_m2=1.5, special_occ_w_m2=6.0,
        cool_ua_w_m2k=4.0, cool_balance_c=17.0, heat_ua_w_m2k=1.5, heat_balance_c=12.0,
        cop=4.3, fan_w_m2=6.0, hvac_night=0.03, heating="electric", water_l_h_m2=0.25,
        kitchen_gas_m3_h_per_1000m2=1.2,
    ),
}


def params_for(kind: str, overrides: dict[str, Any] | None = None) -> BuildingParams:
    base = TYPE_DEFAULTS[kind]
    if not overrides:
        return base
    extra = dict(overrides)
    if "schedule" in extra:
        extra["schedule"] = replace(base.schedule, **extra["schedule"])
    return replace(base, **extra)


@dataclass(frozen=True, slots=True)
class Demand:
    """A building's rates at one instant.

    ``electric_kw`` has one entry per sub-item; ``heat_kw`` is thermal power
    asked of the hot-water loop, ``steam_kg_h`` the process steam asked of the header.
    """

    occupancy: float
    electric_kw: dict[str, float]
    water_m3_h: float
    gas_m3_h: float
    heat_kw: float
    steam_kg_h: float


@dataclass(frozen=True, slots=True)
class Building:
    """One building of the campus (pure)."""

    id: str
    kind: str
    floor_area_m2: float
    params: BuildingParams
    seed: int
    size_factor: float = 1.0  # per-building spread so two offices differ

    def demand(self, outdoor_c: float, local_s: float,
               multipliers: dict[str, float] | None = None) -> Demand:
        p = self.params
        a = self.floor_area_m2 * self.size_factor / 1000.0  # W/m² * m² / 1000 = kW
        occ = occupancy(p.schedule, local_s)
        occ_c = min(occ, 1.0)
        hvac_on = p.hvac_night + (1.0 - p.hvac_night) * min(1.0, occ * 1.6)
        cooling_th = a * p.cool_ua_w_m2k * max(0.0, outdoor_c - p.cool_balance_c) * hvac_on
        heating_th = a * p.heat_ua_w_m2k * max(0.0, p.heat_balance_c - outdoor_c) * (
            0.35 + 0.65 * hvac_on)
        hvac = cooling_th / p.cop + a * p.fan_w_m2 * hvac_on
        if p.heating == "electric":
            hvac += heating_th / p.heat_pump_cop
            heat_kw = 0.0
        else:
            hvac += 0.02 * heating_th  # circulation pumps of the heating loop
            heat_kw = heating_th
        kw = {
            "lighting_sockets": a * p.light_w_m2 * (p.light_base + (1 - p.light_base) * occ),
            "hvac": hvac,
            "power": a * p.power_w_m2 * (p.power_base + (1 - p.power_base) * occ_c),
            "special": a * (p.special_base_w_m2 + p.special_occ_w_m2 * occ),
        }
        m = multipliers or {}
        for item in SUB_ITEMS:
            wobble = 1.0 + 0.04 * noise.smooth(self.seed, noise.key_of(f"{self.id}.{item}"),
                                               local_s, 900.0)
            kw[item] *= wobble * m.get(item, 1.0)
        meals = meal_shape(local_s) * (0.3 + 0.7 * occ_c)
        return Demand(
            occupancy=occ,
            electric_kw=kw,
            water_m3_h=a * p.water_l_h_m2 * (p.water_base + (1 - p.water_base) * occ)
            * m.get("water", 1.0),
            gas_m3_h=a * p.kitchen_gas_m3_h_per_1000m2 * meals * m.get("gas", 1.0),
            heat_kw=heat_kw * m.get("heat", 1.0),
            steam_kg_h=a * 1000.0 * p.steam_kg_h_m2 * (0.3 + 0.7 * occ_c) * m.get("steam", 1.0),
        )
