"""The quantity vocabulary: one name, one canonical unit, one kind.

Gateways convert every reading into these names and units before it leaves the
box, so ingest, rules and reports never guess units. ``counter`` quantities are
cumulative registers (energy, volume, mass) whose differences are consumption;
``gauge`` quantities are instantaneous. ``low``/``high`` are *physical
plausibility* bounds used by edge validation, not alarm limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge"]

ENERGY_TYPES: tuple[str, ...] = (
    "electricity",
    "water",
    "gas",
    "heat",
    "cooling",
    "steam",
    "coal",
    "diesel",
    "lpg",
    "other",
)


@dataclass(frozen=True, slots=True)
class Quantity:
    """One entry of the vocabulary."""

    name: str
    unit: str
    kind: Kind
    low: float
    high: float
    description: str


def _q(name: str, unit: str, kind: Kind, low: float, high: float, description: str) -> Quantity:
    return Quantity(name, unit, kind, low, high, description)


_BIG = 1e12  # counters are bounded by their register width, not by physics

_ALL: tuple[Quantity, ...] = (
    # electricity: counters
    _q("active_energy_import_kwh", "kWh", "counter", 0, _BIG, "total active energy imported"),
    _q("active_energy_export_kwh", "kWh", "counter", 0, _BIG, "total active energy exported"),
    _q("active_energy_total_kwh", "kWh", "counter", 0, _BIG, "import + export active energy"),
    _q("reactive_energy_import_kvarh", "kvarh", "counter", 0, _BIG, "reactive energy imported"),
    _q("reactive_energy_export_kvarh", "kvarh", "counter", 0, _BIG, "reactive energy exported"),
    # electricity: gauges
    _q("active_power_kw", "kW", "gauge", -1e6, 1e6, "total active power (import positive)"),
    _q("active_power_l1_kw", "kW", "gauge", -1e6, 1e6, "active power, phase L1"),
    _q("active_power_l2_kw", "kW", "gauge", -1e6, 1e6, "active power, phase L2"),
    _q("active_power_l3_kw", "kW", "gauge", -1e6, 1e6, "active power, phase L3"),
    _q("reactive_power_kvar", "kvar", "gauge", -1e6, 1e6, "total reactive power"),
    _q("apparent_power_kva", "kVA", "gauge", 0, 1e6, "total apparent power"),
    _q("power_factor", "1", "gauge", -1, 1, "total power factor"),
    _q("demand_kw", "kW", "gauge", -1e6, 1e6, "current demand (sliding window)"),
    _q("max_demand_kw", "kW", "gauge", -1e6, 1e6, "maximum demand this period"),
    _q("voltage_l1_v", "V", "gauge", 0, 1e6, "phase L1 to neutral voltage"),
    _q("voltage_l2_v", "V", "gauge", 0, 1e6, "phase L2 to neutral voltage"),
    _q("voltage_l3_v", "V", "gauge", 0, 1e6, "phase L3 to neutral voltage"),
    _q("voltage_l1_l2_v", "V", "gauge", 0, 1e6, "line voltage L1-L2"),
    _q("voltage_l2_l3_v", "V", "gauge", 0, 1e6, "line voltage L2-L3"),
    _q("voltage_l3_l1_v", "V", "gauge", 0, 1e6, "line voltage L3-L1"),
    _q("current_l1_a", "A", "gauge", -1e5, 1e5, "phase L1 current"),
    _q("current_l2_a", "A", "gauge", -1e5, 1e5, "phase L2 current"),
    _q("current_l3_a", "A", "gauge", -1e5, 1e5, "phase L3 current"),
    _q("current_n_a", "A", "gauge", -1e5, 1e5, "neutral current"),
    _q("frequency_hz", "Hz", "gauge", 40, 70, "grid frequency"),
    # water and gas
    _q("water_volume_m3", "m3", "counter", 0, _BIG, "cumulative water volume"),
    _q("water_flow_m3_h", "m3/h", "gauge", -1e5, 1e5, "water volume flow"),
    _q("gas_volume_m3", "m3", "counter", 0, _BIG, "cumulative gas volume at standard conditions"),
    _q("gas_flow_m3_h", "m3/h", "gauge", -1e6, 1e6, "gas flow at standard conditions"),
    _q("gas_pressure_kpa", "kPa", "gauge", -100, 1e5, "gas gauge pressure"),
    _q("gas_temp_c", "°C", "gauge", -60, 200, "gas temperature"),
    # heat (heat meters, hot-water boilers) and cooling
    _q("heat_energy_gj", "GJ", "counter", 0, _BIG, "cumulative heat energy"),
    _q("cooling_energy_gj", "GJ", "counter", 0, _BIG, "cumulative cooling energy"),
    _q("heat_power_kw", "kW", "gauge", -1e6, 1e6, "thermal power"),
    _q("supply_temp_c", "°C", "gauge", -50, 400, "supply (flow) temperature"),
    _q("return_temp_c", "°C", "gauge", -50, 400, "return temperature"),
    # steam
    _q("steam_mass_t", "t", "counter", 0, _BIG, "cumulative steam mass"),
    _q("steam_flow_t_h", "t/h", "gauge", -1e4, 1e4, "steam mass flow"),
    _q("steam_pressure_mpa", "MPa", "gauge", -0.1, 40, "steam gauge pressure"),
    _q("steam_temp_c", "°C", "gauge", 0, 700, "steam temperature"),
    # entered by hand (coal delivered to the furnaces, product output): cumulative ledgers
    _q("coal_mass_t", "t", "counter", 0, _BIG, "cumulative raw coal consumed (ledger)"),
    _q("product_output_t", "t", "counter", 0, _BIG, "cumulative product output (ledger)"),
    # boiler combustion
    _q("feedwater_temp_c", "°C", "gauge", -10, 400, "feedwater temperature"),
    _q("flue_o2_pct", "%", "gauge", 0, 21, "O2 in dry flue gas"),
    _q("flue_co_ppm", "ppm", "gauge", 0, 1e5, "CO in flue gas"),
    _q("flue_temp_c", "°C", "gauge", -40, 1200, "exhaust (flue) gas temperature"),
    _q("combustion_air_temp_c", "°C", "gauge", -50, 400, "combustion air temperature"),
    _q("boiler_load_pct", "%", "gauge", 0, 150, "boiler load relative to rated capacity"),
    # environment
    _q("outdoor_temp_c", "°C", "gauge", -60, 70, "outdoor air temperature"),
    _q("indoor_temp_c", "°C", "gauge", -30, 70, "indoor air temperature"),
    _q("relative_humidity_pct", "%", "gauge", 0, 100, "relative humidity"),
    # states read from coils and discrete inputs (Modbus FC1/FC2): 1 = yes, 0 = no
    _q("breaker_closed", "1", "gauge", 0, 1, "circuit breaker closed (1) or open (0)"),
    _q("pump_running", "1", "gauge", 0, 1, "pump or fan running (1) or stopped (0)"),
    _q("alarm_active", "1", "gauge", 0, 1, "a device's alarm contact active (1)"),
)

QUANTITIES: dict[str, Quantity] = {q.name: q for q in _ALL}


def get(name: str) -> Quantity:
    """Look a quantity up, with an error that lists near names."""
    try:
        return QUANTITIES[name]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(name, QUANTITIES, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else ""
        raise KeyError(f"unknown quantity {name!r}{hint}") from None


def is_counter(name: str) -> bool:
    q = QUANTITIES.get(name)
    return q is not None and q.kind == "counter"
