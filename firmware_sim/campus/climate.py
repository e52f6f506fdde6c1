"""Outdoor temperature: an annual cycle, a daily cycle and smooth weather noise.

Simple on purpose — enough that heating is a winter-morning load, cooling a
summer-afternoon one, and two cold days in a row cost more gas than one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_sim.campus import noise

DAY_S = 86_400.0
YEAR_DAYS = 365.2425
_KEY_WEATHER = noise.key_of("weather.synoptic")
_KEY_HOURLY = noise.key_of("weather.hourly")


@dataclass(frozen=True, slots=True)
class Climate:
    """Parameters of the temperature model (°C).

    Args:
        mean_c: annual mean temperature.
        annual_amplitude_c: half the difference between the warmest and coldest month.
        coldest_day: day of year (0 = 1 Jan) of the coldest point of the annual cycle.
        diurnal_amplitude_c: half the day/night swing.
        warmest_hour: local hour of the daily maximum.
        weather_c: amplitude of multi-day weather (fronts, cold waves).
    """

    mean_c: float = 17.0
    annual_amplitude_c: float = 12.5
    coldest_day: float = 20.0
    diurnal_amplitude_c: float = 4.0
    warmest_hour: float = 15.0
    weather_c: float = 3.0


def day_of_year(local_s: float) -> float:
    """Fractional day of year from local epoch seconds (a mean year; no calendar needed)."""
    return (local_s / DAY_S) % YEAR_DAYS


def hour_of_day(local_s: float) -> float:
    return (local_s % DAY_S) / 3600.0


def outdoor_temp_c(c: Climate, seed: int, local_s: float) -> float:
    doy = day_of_year(local_s)
    annual = -c.annual_amplitude_c * math.cos(2 * math.pi * (doy - c.coldest_day) / YEAR_DAYS)
    hour = hour_of_day(local_s)
    diurnal = c.diurnal_amplitude_c * math.cos(2 * math.pi * (hour - c.warmest_hour) / 24.0)
    weather = c.weather_c * noise.smooth(seed, _KEY_WEATHER, local_s, 3 * DAY_S)
    wobble = 0.5 * noise.smooth(seed, _KEY_HOURLY, local_s, 3 * 3600.0)
    return c.mean_c + annual + diurnal + weather + wobble
