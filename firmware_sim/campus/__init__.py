"""A simulated campus: buildings and boilers with physics, driven by scenarios.

Pure models (no I/O): :mod:`.climate`, :mod:`.schedule`, :mod:`.building`,
:mod:`.boiler`, :mod:`.steam`; the campus file schema :mod:`.config`; scenarios
:mod:`.scenario`; the stepping simulator :mod:`.sim`.
"""

from firmware_sim.campus.config import CampusModel, load_campus, parse_duration
from firmware_sim.campus.scenario import Effects, Scenario, load_scenario
from firmware_sim.campus.sim import CampusSim, DeviceInfo, year_start

__all__ = [
    "CampusModel",
    "CampusSim",
    "DeviceInfo",
    "Effects",
    "Scenario",
    "load_campus",
    "load_scenario",
    "parse_duration",
    "year_start",
]
