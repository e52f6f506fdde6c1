"""Saturated steam and water properties for the boiler model.

A short table is enough: campus steam runs at 0.4-1.3 MPa(g). Values are from
the IAPWS-IF97 saturation tables (absolute pressure) [I: transcribed, spot-check
before relying on the last digit]; between points we interpolate linearly,
which is far inside the accuracy of a steam flow meter.
"""

from __future__ import annotations

from bisect import bisect_left

ATM_MPA = 0.101325
# (absolute pressure MPa, saturation temperature °C, enthalpy of saturated vapour kJ/kg)
_SAT: tuple[tuple[float, float, float], ...] = (
    (0.101325, 100.00, 2675.6),
    (0.2, 120.21, 2706.2),
    (0.3, 133.52, 2724.9),
    (0.4, 143.61, 2738.1),
    (0.5, 151.83, 2748.1),
    (0.6, 158.83, 2756.1),
    (0.7, 164.95, 2762.8),
    (0.8, 170.41, 2768.3),
    (0.9, 175.35, 2773.0),
    (1.0, 179.88, 2777.1),
    (1.2, 187.96, 2783.8),
    (1.4, 195.04, 2788.9),
    (1.6, 201.37, 2792.9),
)
_P = [row[0] for row in _SAT]
CP_WATER = 4.19  # kJ/(kg·K), liquid water 20-105 °C


def _interp(p_abs: float, col: int) -> float:
    p = min(max(p_abs, _P[0]), _P[-1])
    i = max(1, min(bisect_left(_P, p), len(_P) - 1))
    p0, p1 = _SAT[i - 1][0], _SAT[i][0]
    v0, v1 = _SAT[i - 1][col], _SAT[i][col]
    return v0 + (v1 - v0) * (p - p0) / (p1 - p0)


def saturation_temp_c(p_gauge_mpa: float) -> float:
    return _interp(p_gauge_mpa + ATM_MPA, 1)


def vapour_enthalpy_kj_kg(p_gauge_mpa: float) -> float:
    return _interp(p_gauge_mpa + ATM_MPA, 2)


def water_enthalpy_kj_kg(temp_c: float) -> float:
    return CP_WATER * temp_c
