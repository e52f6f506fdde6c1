"""A simulated key energy-using unit (重点用能单位): a small ironworks with its ground truth.

Two electricity meters (furnace and auxiliaries), a gas volume corrector and a steam flow
computer are served on real Modbus TCP with their real register maps
(:class:`firmware_sim.modbus_tcp.ModbusMeterServer`); coal burnt and hot metal made are
hand-kept ledgers, entered once a day at 00:00 for the day before (cumulative, like a
counter). Every value is a function of *simulated* time, so a test can step a month
through the real servers in seconds and compare what enmon computes with
:meth:`Factory.truth`, the exact consumption of the simulator's own model.

Pure model: the servers are started by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.meter import LoadProfile, ThreePhaseMeter

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Flow:
    """A smooth daily cycle of a flow (per hour): ``base`` ± ``swing``; exact integral."""

    base_per_h: float
    swing_per_h: float
    phase_s: float = 0.0

    def rate(self, t: float) -> float:
        return self.base_per_h + self.swing_per_h * math.sin(2 * math.pi * (t + self.phase_s)
                                                             / DAY_S)

    def total(self, t0: float, t1: float) -> float:
        w = 2 * math.pi / DAY_S

        def anti(t: float) -> float:
            return (self.base_per_h * t - self.swing_per_h * math.cos(w * (t + self.phase_s))
                    / w) / 3600.0

        return anti(t1) - anti(t0)


@dataclass(frozen=True, slots=True)
class Ledger:
    """A hand-kept daily figure: ``base`` + ``swing`` · sin(day), cumulative from ``start``."""

    base: float
    swing: float
    start: float

    def day(self, n: int) -> float:
        return self.base + self.swing * math.sin(n)

    def cumulative(self, days: int) -> float:
        """The ledger's running total after ``days`` whole days (what is entered at 00:00)."""
        return self.start + sum(self.day(i) for i in range(days))


@dataclass
class Factory:
    """The ironworks. ``t0``: epoch seconds of a site midnight where the model starts.

    Devices (device id → gateway profile): ``furnace-e`` and ``aux-e`` (acrel-dtsd1352),
    ``gas`` (elster-ek280), ``steam`` (yokogawa-yewflo-steam). Ledgers: ``coal`` (t) and
    ``hot-metal`` (t), device ids of the hand entries.
    """

    t0: float
    site: str = "ironworks"
    gateway: str = "gw-plant"
    unit_code: str = "91320000SIMIRON01"
    unit_name: str = "模拟炼铁厂"
    furnace: ThreePhaseMeter = field(init=False)
    aux: ThreePhaseMeter = field(init=False)
    gas: Flow = field(default=Flow(120.0, 40.0))
    gas0: float = 500_000.0
    steam: Flow = field(default=Flow(3.0, 1.0, 6 * 3600.0))
    steam0: float = 12_345.5
    coal: Ledger = field(default=Ledger(40.0, 5.0, 9_000.0))
    hot_metal: Ledger = field(default=Ledger(200.0, 10.0, 50_000.0))

    PROFILES = {"furnace-e": "acrel-dtsd1352", "aux-e": "acrel-dtsd1352",
                "gas": "elster-ek280", "steam": "yokogawa-yewflo-steam"}
    ENERGY = {"furnace-e": "electricity", "aux-e": "electricity", "gas": "gas",
              "steam": "steam", "coal": "coal", "hot-metal": "other"}

    def __post_init__(self) -> None:
        # fed at 6 kV (3464 V phase to neutral), so the currents fit the meter's registers
        self.furnace = ThreePhaseMeter(LoadProfile(800.0, 1500.0), self.t0, 100_000.0,
                                       voltage_v=3464.1)
        self.aux = ThreePhaseMeter(LoadProfile(100.0, 300.0, phase_s=3 * 3600.0), self.t0,
                                   20_000.0, voltage_v=3464.1)

    # ------------------------------------------------------------------ what the meters show

    def values(self, device: str, t: float) -> dict[str, float]:
        """Canonical values of a served device at simulated epoch second ``t``."""
        if device in ("furnace-e", "aux-e"):
            return (self.furnace if device == "furnace-e" else self.aux).reading(t)
        if device == "gas":
            return {"gas_volume_m3": self.gas0 + self.gas.total(self.t0, t),
                    "gas_flow_m3_h": self.gas.rate(t), "gas_pressure_kpa": 50.0,
                    "gas_temp_c": 15.0}
        if device == "steam":
            return {"steam_mass_t": self.steam0 + self.steam.total(self.t0, t),
                    "steam_flow_t_h": self.steam.rate(t), "steam_pressure_mpa": 0.8,
                    "steam_temp_c": 175.0, "feedwater_temp_c": 20.0}
        raise KeyError(device)

    def ledger_entry(self, device: str, day: int) -> tuple[float, str, float]:
        """The hand entry made at 00:00 after ``day`` whole days: (epoch s, quantity, value)."""
        book, q = ((self.coal, "coal_mass_t") if device == "coal"
                   else (self.hot_metal, "product_output_t"))
        return self.t0 + day * DAY_S, q, book.cumulative(day)

    # ------------------------------------------------------------------ ground truth

    def truth(self, t0: float, t1: float) -> dict[str, float]:
        """Exact consumption (canonical units) per device in [t0, t1), from the model itself.

        Ledgers count whole days only: [t0, t1) must start and end at the model's midnights.
        """
        d0, d1 = round((t0 - self.t0) / DAY_S), round((t1 - self.t0) / DAY_S)
        return {
            "furnace-e": self.furnace.load.energy_kwh(t0 - self.t0, t1 - self.t0),
            "aux-e": self.aux.load.energy_kwh(t0 - self.t0, t1 - self.t0),
            "gas": self.gas.total(t0, t1),
            "steam": self.steam.total(t0, t1),
            "coal": sum(self.coal.day(i) for i in range(d0, d1)),
            "hot-metal": sum(self.hot_metal.day(i) for i in range(d0, d1)),
        }

    # ------------------------------------------------------------------ the site file

    def site_file(self, poll_s: float = 3600.0) -> dict[str, Any]:
        """The site file a facility manager would write for this factory (key_units block)."""
        meters: list[dict[str, Any]] = [
            {"id": d, "gateway": self.gateway, "device": d, "energy_type": self.ENERGY[d],
             "building_total": True, "poll_interval_s": poll_s, "category":
             {"electricity": "01000", "gas": "03000"}.get(self.ENERGY[d], "")}
            for d in self.PROFILES]
        meters += [
            {"id": "coal", "gateway": "manual", "device": "coal", "energy_type": "coal",
             "quantity": "coal_mass_t", "poll_interval_s": DAY_S},
            {"id": "hot-metal", "gateway": "manual", "device": "hot-metal",
             "energy_type": "other", "quantity": "product_output_t", "poll_interval_s": DAY_S},
        ]
        return {"site": self.site, "name": self.unit_name, "timezone": "Asia/Shanghai",
                "buildings": [{"id": "plant", "name": "炼铁车间", "type": "other",
                               "floor_area_m2": 20_000, "meters": meters}],
                "key_units": [{
                    "code": self.unit_code, "name": self.unit_name,
                    "sources": [{"meter": m} for m in ("furnace-e", "aux-e", "gas", "steam",
                                                       "coal")],
                    "products": [{"code": "hot_metal", "name": "铁水",
                                  "output_meter": "hot-metal",
                                  "quota": "gb21256/blast_furnace"}]}]}
