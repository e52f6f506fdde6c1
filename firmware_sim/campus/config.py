"""The campus file: buildings, boilers and the meters that watch them, as data.

A campus YAML says *what exists* (a 30 000 m² hospital on gateway gw-hosp, its
mains and four sub-item meters as Eastron SDM630s, a 4 t/h steam boiler with a
gas meter, a steam flow computer and a flue analyser); the physics modules say
how those things behave. Validation happens here once, with errors that name
the file, the key and the fix (``enmon.config``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from enmon.config import StrictModel, load_model
from enmon.wire import ID_PATTERN

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
BUILDING_MEASURES = ("mains", "lighting_sockets", "hvac", "power", "special", "water", "gas")
BOILER_MEASURES = ("gas", "steam", "heat", "flue")
CAMPUS_DIR = Path(__file__).parent
DEFAULT_CAMPUS = CAMPUS_DIR / "demo-campus.yaml"

_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86_400.0,
           "w": 604_800.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """``90``, ``"90s"``, ``"15m"``, ``"2h"``, ``"30d"``, ``"1w"`` → seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like '15m', '2h', '30d'")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration; write e.g. 90s, 15m, 2h, 30d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(json_schema_extra={"fix": "write seconds or e.g. 90s, 15m, 2h, 30d"}),
]


class Meter(StrictModel):
    """One simulated device, served through the gateway's profile library."""

    device: Id
    measures: str
    profile: str = Field(json_schema_extra={"fix": "a model name from gateway/profiles/"})
    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    initial: float | None = Field(
        default=None, ge=0, description="counter reading at the start of the simulation")
    rollover_at: float | None = Field(
        default=None, gt=0, description="the register wraps to 0 here (a short energy "
        "register); the site file gets the same value, so consumption bridges the wrap")
    bus: Annotated[str, Field(pattern=f"^{ID_PATTERN}$")] | None = Field(
        default=None, json_schema_extra={
            "fix": "a name shared by the meters wired to one RS-485 line behind one serial "
                   "server (Modbus RTU or DL/T 645); omit for a meter on its own Modbus TCP port"})
    address: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = Field(
        default=None, json_schema_extra={"fix": "DL/T 645 meters: the 12-digit address, quoted"})
    template: str | None = Field(default=None, json_schema_extra={
        "fix": "for serial-line instruments: the answer line as a str.format template, "
               "e.g. 'O2={flue_o2_pct:.2f};T={flue_temp_c:.1f}'"})


def _measuring(meters: list[Meter], allowed: tuple[str, ...]) -> list[Meter]:
    """A building's meters measure building quantities and a boiler's boiler ones."""
    for m in meters:
        if m.measures not in allowed:
            raise ValueError(f"measures {m.measures!r} is not one of {allowed}")
    return meters


class ClimateModel(StrictModel):
    mean_c: float = 17.0
    annual_amplitude_c: float = 12.5
    coldest_day: float = 20.0
    diurnal_amplitude_c: float = 4.0
    warmest_hour: float = 15.0
    weather_c: float = 3.0


class BuildingModel(StrictModel):
    id: Id
    type: Literal["office", "hospital", "school", "mall"]
    name: str = ""
    floor_area_m2: Annotated[float, Field(gt=0, le=2_000_000)]
    gateway: Id
    params: dict[str, Any] = {}
    rules: dict[str, Any] = Field(default={}, json_schema_extra={
        "fix": "keys of a building in the rules' site file (quota, budgets, occupants, ...)"})
    meters: list[Meter]

    @field_validator("meters")
    @classmethod
    def _measures(cls, v: list[Meter]) -> list[Meter]:
        return _measuring(v, BUILDING_MEASURES)


class BoilerModel(StrictModel):
    id: Id
    kind: Literal["steam", "hot_water"]
    name: str = ""
    rated_kw: Annotated[float, Field(gt=0, le=200_000)]
    fouling: Annotated[float, Field(ge=0, le=1)] = 0.0
    schedule_h: tuple[float, float] | None = None
    params: dict[str, Any] = {}
    rules: dict[str, Any] = Field(default={}, json_schema_extra={
        "fix": "keys of a boiler in the rules' site file (fuel, combustion, rated_t_h, ...)"})
    meters: list[Meter]

    @field_validator("meters")
    @classmethod
    def _measures(cls, v: list[Meter]) -> list[Meter]:
        return _measuring(v, BOILER_MEASURES)


class BoilerHouse(StrictModel):
    building: Id = "boiler-house"
    floor_area_m2: Annotated[float, Field(gt=0)] = 600.0
    gateway: Id
    boilers: list[BoilerModel]


class WeatherStation(StrictModel):
    device: Id
    gateway: Id
    building: Id
    profile: str
    unit_id: Annotated[int, Field(ge=1, le=247)] = 1
    template: str | None = None


class CampusModel(StrictModel):
    site: Id
    name: str = ""
    seed: int = 1
    timezone_hours: Annotated[float, Field(ge=-12, le=14)] = 8.0
    climate: ClimateModel = ClimateModel()
    gas_ncv_mj_m3: Annotated[float, Field(gt=20, lt=60)] = 35.5
    gas_ncv_source: str = "site gas supplier's declared NCV (model value; GB/T 2589-2020 range)"
    buildings: list[BuildingModel]
    boiler_house: BoilerHouse | None = None
    weather: WeatherStation | None = None

    @model_validator(mode="after")
    def _unique(self) -> CampusModel:
        seen: set[str] = set()
        ids: set[str] = set()
        for dev in self.devices():
            if dev in seen:
                raise ValueError(
                    f"device {dev!r} appears twice; device names are unique per campus")
            seen.add(dev)
        for b in self.buildings:
            if b.id in ids:
                raise ValueError(f"building {b.id!r} appears twice")
            ids.add(b.id)
        return self

    def devices(self) -> list[str]:
        out = [m.device for b in self.buildings for m in b.meters]
        if self.boiler_house:
            out += [m.device for bl in self.boiler_house.boilers for m in bl.meters]
        if self.weather:
            out.append(self.weather.device)
        return out


def load_campus(path: str | Path | None = None) -> CampusModel:
    return load_model(CampusModel, path or DEFAULT_CAMPUS)
