"""The site model: sites → buildings → meters (real and virtual) → boilers, as YAML.

One file per site describes what the rule engine needs to know about the
buildings behind the meters: floor area and occupants (for intensities), which
meters add up to the building total, which quota and budgets apply, and which
meters belong to each boiler. See ``rules/sample-site.yaml`` for a documented
example and ``rules/README.md`` for every key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from energy import refdata
from energy.refdata import ExhaustCoefficients
from energy.tariff import Tariff
from enmon import quantities
from enmon.config import StrictModel, load_model
from enmon.wire import ID_PATTERN

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]
ClimateZone = Literal["severe_cold_and_cold", "hot_summer_cold_winter", "hot_summer_warm_winter",
                      "mild"]
BuildingType = Literal["office", "hospital", "school", "retail", "hotel", "government", "other"]
SUBITEM = re.compile(r"^\d{2}[0A-Z]\d{2}$")

# The counter that measures consumption of each energy type, in its canonical unit.
COUNTER_FOR: dict[str, str] = {
    "electricity": "active_energy_import_kwh",
    "water": "water_volume_m3",
    "gas": "gas_volume_m3",
    "heat": "heat_energy_gj",
    "cooling": "cooling_energy_gj",
    "steam": "steam_mass_t",
}


class Replacement(StrictModel):
    """A meter swap: when, the old meter's last index and the new meter's first."""

    at: int = Field(json_schema_extra={"fix": "epoch milliseconds of the swap"})
    old_final: float
    new_initial: float


class Meter(StrictModel):
    id: Id
    gateway: Id
    device: Id = Field(json_schema_extra={"fix": "the device name in the gateway's config"})
    energy_type: str
    quantity: str | None = Field(default=None, json_schema_extra={
        "fix": "a counter from the quantity vocabulary, e.g. active_energy_import_kwh"})
    category: str = Field(default="", json_schema_extra={
        "fix": "a five-character sub-item code such as 01000, 01A00, 01B00, 02000"})
    building_total: bool = Field(default=False, json_schema_extra={
        "fix": "true for the meters whose sum is the building's total of this energy type"})
    rollover_at: float | None = None
    jitter: float = 0.0
    max_rate_per_h: float | None = Field(default=None, json_schema_extra={
        "fix": "the most this counter can rise per hour (e.g. rated kW for a kWh counter)"})
    poll_interval_s: float = Field(default=60.0, gt=0)
    replacements: list[Replacement] = []

    @field_validator("energy_type")
    @classmethod
    def _etype(cls, v: str) -> str:
        if v not in quantities.ENERGY_TYPES:
            known = ", ".join(quantities.ENERGY_TYPES)
            raise ValueError(f"unknown energy type {v!r}; use one of {known}")
        return v

    @field_validator("category")
    @classmethod
    def _cat(cls, v: str) -> str:
        if v and not SUBITEM.match(v):
            raise ValueError(f"sub-item code {v!r} is not two digits + letter or 0 + two digits")
        return v

    @model_validator(mode="after")
    def _quantity(self) -> Meter:
        q = self.quantity or COUNTER_FOR.get(self.energy_type)
        if q is None:
            raise ValueError(
                f"no default counter for energy type {self.energy_type!r}; set quantity")
        if not quantities.is_counter(q):
            raise ValueError(f"quantity {q!r} is not a counter in the vocabulary")
        object.__setattr__(self, "quantity", q)
        return self

    @property
    def counter(self) -> str:
        assert self.quantity is not None
        return self.quantity


class VirtualMeter(StrictModel):
    """A meter computed from others: Σ plus − Σ minus (e.g. total minus HVAC = other uses)."""

    id: Id
    energy_type: str
    category: str = ""
    plus: list[Id] = Field(min_length=1)
    minus: list[Id] = []
    building_total: bool = False


class Quota(StrictModel):
    """Either a shipped quota (``ref``) or your own (``value`` + ``unit`` + ``source``)."""

    ref: str | None = Field(default=None, json_schema_extra={
        "fix": "a key of energy/data/quotas.yaml, "
               "e.g. gbt51161/office/A-commercial/hot_summer_cold_winter"})
    level: Literal["constraint", "baseline", "guide"] = "constraint"
    value: float | None = Field(default=None, gt=0)
    unit: Literal["kWh/(m2·a)", "kgce/(m2·a)", "kgce/(person·a)", "kWh/(person·a)"] | None = None
    source: str | None = None
    office_correction: bool | None = None
    seasonal_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, min_length=12, max_length=12,
        json_schema_extra={"fix": "12 relative monthly shares of the year's use, January "
                                  "first; leave out for use proportional to time"})
    warn_ratio: float = Field(default=1.0, gt=0)
    min_fraction: float = Field(default=0.05, ge=0, lt=1)

    @model_validator(mode="after")
    def _one_source(self) -> Quota:
        if (self.ref is None) == (self.value is None):
            raise ValueError(
                "give either ref (a shipped quota) or value + unit + source (your own)")
        if self.seasonal_weights is not None and sum(self.seasonal_weights) <= 0:
            raise ValueError("seasonal_weights must have a positive sum")
        if self.ref is not None:
            refdata.quota(self.ref)  # raises a ConfigError naming near keys
        elif self.unit is None or not self.source:
            raise ValueError("your own quota needs unit and source")
        return self

    @property
    def quota_unit(self) -> str:
        if self.ref is not None:
            return refdata.quota(self.ref).unit
        assert self.unit is not None
        return self.unit

    @property
    def basis(self) -> Literal["area", "person"]:
        return "person" if "person" in self.quota_unit else "area"

    @property
    def measure(self) -> Literal["kWh", "kgce"]:
        """What is compared: electricity kWh, or all energy converted to kgce."""
        return "kWh" if self.quota_unit.startswith("kWh") else "kgce"


class Budget(StrictModel):
    """A period energy budget (用能预算)."""

    name: Id
    period: Literal["month", "year"]
    amount: float = Field(gt=0)
    unit: Literal["kWh", "kgce", "m3", "GJ"]
    energy_type: str | None = None
    warn_ratio: float = Field(default=0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _what(self) -> Budget:
        if self.energy_type is None and self.unit in ("kWh", "GJ"):
            object.__setattr__(self, "energy_type", "electricity" if self.unit == "kWh" else "heat")
        if self.energy_type is None and self.unit == "m3":
            raise ValueError("a budget in m3 needs energy_type (gas or water)")
        return self


class Instruments(StrictModel):
    """The device that reports a boiler's gauges (flue O2 and temperature, feedwater, air)."""

    gateway: Id
    device: Id


class Boiler(StrictModel):
    id: Id
    kind: Literal["steam", "hot_water"]
    combustion: Literal["grate", "fluidised_bed", "chamber", "biomass", "electric"] = "chamber"
    fuel: str = Field(json_schema_extra={
        "fix": "a fuel of energy/data/boiler_limits.yaml, e.g. natural_gas"})
    rated_t_h: float | None = Field(default=None, gt=0)
    rated_mw: float | None = Field(default=None, gt=0)
    ncv_mj_per_unit: float = Field(gt=0, json_schema_extra={
        "fix": "net calorific value of the fuel, MJ per m3 (gas) or per kg (oil, coal)"})
    fuel_meter: Id
    output_meter: Id = Field(json_schema_extra={"fix": "a steam_mass_t or heat_energy_gj meter"})
    instruments: Instruments | None = Field(default=None, json_schema_extra={
        "fix": "{gateway: .., device: ..} of the device reporting flue_o2_pct, flue_temp_c"})
    steam_gauge_mpa: float = Field(default=0.7, ge=0)
    steam_temp_c: float | None = None
    feedwater_temp_c: float = 20.0
    air_temp_c: float = 20.0
    min_load_pct: float = Field(default=30.0, ge=0, le=100)
    startup_min: float = Field(default=30.0, ge=0)
    window_h: float = Field(default=24.0, gt=0)
    min_coverage: float = Field(default=0.5, gt=0, le=1)
    limit_pct: float | None = None
    max_efficiency_pct: float | None = Field(default=None, gt=0, json_schema_extra={
        "fix": "the physical ceiling in % of NCV, e.g. 100 x GCV/NCV of your gas for a "
               "condensing boiler; default from energy/data/boiler_ceilings.yaml"})
    exhaust_loss: ExhaustCoefficients | None = None
    other_losses_pct: float = Field(default=0.0, ge=0, json_schema_extra={
        "fix": "q3+q4+q5+q6 in % from your boiler's test report; enmon ships no default"})

    @model_validator(mode="after")
    def _capacity(self) -> Boiler:
        if self.rated_t_h is None and self.rated_mw is None:
            raise ValueError("give rated_t_h (steam) or rated_mw (hot water)")
        return self

    @property
    def rated_kw(self) -> float:
        """Rated heat output in kW (steam: 0.7 MW per t/h as GB 24500 pairs them)."""
        if self.rated_mw is not None:
            return self.rated_mw * 1000
        assert self.rated_t_h is not None
        return self.rated_t_h * refdata.boiler_limits().mw_per_t_h.value * 1000


class Building(StrictModel):
    id: Id
    name: str = ""
    type: BuildingType = "office"
    climate_zone: ClimateZone = "hot_summer_cold_winter"
    floor_area_m2: float = Field(gt=0)
    occupants: int = Field(default=0, ge=0)
    operating_hours_per_year: float | None = Field(default=None, gt=0)
    quota: Quota | None = None
    budgets: list[Budget] = []
    meters: list[Meter] = []
    virtual_meters: list[VirtualMeter] = []
    boilers: list[Boiler] = []
    tariffs: dict[str, str] = Field(default={}, json_schema_extra={
        "fix": "energy type → tariff id, overriding the site's tariffs: for this building"})
    contracted_kva: float | None = Field(default=None, gt=0, json_schema_extra={
        "fix": "the contracted capacity (kVA) a capacity-based demand charge is billed on"})
    submeter_balance: bool = Field(default=True, json_schema_extra={
        "fix": "false when the sub-item meters do not cover the whole main meter "
               "(no master-vs-submeter balance check then)"})


class KeyUnitSource(StrictModel):
    """A meter feeding a key energy-using unit, with the factor it is converted with."""

    meter: Id
    factor: str | None = Field(default=None, json_schema_extra={
        "fix": "a coal_equivalent key of energy/data/factors.yaml; default: the energy "
               "type's (electricity: 当量值 on the calorific basis, the unit's "
               "equal_value_electricity on the equivalent basis)"})


class KeyUnitProduct(StrictModel):
    """A product with an energy-consumption quota: its output ledger and its quota."""

    code: Id
    name: str = ""
    output_meter: Id = Field(json_schema_extra={
        "fix": "a meter (e.g. quantity product_output_t, entered by hand) of the output"})
    quota: str | None = Field(default=None, json_schema_extra={
        "fix": "a key of energy/data/product_quotas.yaml, e.g. gb21256/blast_furnace"})
    sources: list[Id] = Field(default=[], json_schema_extra={
        "fix": "the unit's meters whose energy the product's process uses; empty = all"})


class KeyUnitQuality(StrictModel):
    """The data-quality rules of the statistics upload; every threshold is configurable.

    The defaults are the commonly published rules of the provincial online monitoring
    platforms; the NDRC upload protocol itself was not available, so set your platform's.
    """

    completeness_min: float = Field(default=0.90, gt=0, le=1)
    day_month_tolerance: float = Field(default=0.05, ge=0)
    day_stamp_tolerance_s: float = Field(default=60.0, ge=0)
    month_stamp_tolerance_s: float = Field(default=86400.0, ge=0)


class KeyUnit(StrictModel):
    """A key energy-using unit (重点用能单位): which meters feed its statistics."""

    code: str = Field(min_length=1, json_schema_extra={
        "fix": "the unit's code on the monitoring platform (统一社会信用代码 or assigned)"})
    name: str = Field(min_length=1)
    sources: list[KeyUnitSource] = Field(min_length=1)
    products: list[KeyUnitProduct] = []
    equal_value_electricity: str = Field(
        default="electricity_equal_value_db31_783_2026", json_schema_extra={
            "fix": "the coal_equivalent key of your region's electricity 等价值"})
    quality: KeyUnitQuality = KeyUnitQuality()


class Site(StrictModel):
    site: Id
    name: str = ""
    timezone: str = "Asia/Shanghai"
    grid_region: str = Field(default="national", json_schema_extra={
        "fix": "national, a grid region (华东) or a province (上海) of energy/data/factors.yaml"})
    co2_basis: str = "mee_grid_average"
    electricity_kgce: str = Field(default="electricity_equivalent", json_schema_extra={
        "fix": "a coal_equivalent key of energy/data/factors.yaml for electricity"})
    buildings: list[Building] = Field(min_length=1)
    key_units: list[KeyUnit] = []
    tariffs: dict[str, str] = Field(default={}, json_schema_extra={
        "fix": "energy type → tariff id, e.g. electricity: example-tou-industrial-10kv "
               "(energy/data/tariffs.yaml or tariff_definitions:)"})
    tariff_definitions: list[Tariff] = Field(default=[], json_schema_extra={
        "fix": "the site's own tariffs, in the form of energy/data/tariffs.yaml entries"})

    @model_validator(mode="after")
    def _references(self) -> Site:
        seen: dict[str, str] = {}
        for b in self.buildings:
            ids = [m.id for m in b.meters] + [v.id for v in b.virtual_meters]
            for mid in ids:
                if mid in seen:
                    raise ValueError(f"meter id {mid!r} is used twice "
                                     f"(buildings {seen[mid]!r} and {b.id!r})")
                seen[mid] = b.id
            real = {m.id for m in b.meters}
            for v in b.virtual_meters:
                for ref in v.plus + v.minus:
                    if ref not in real and ref not in ids:
                        raise ValueError(f"virtual meter {v.id!r} refers to unknown meter "
                                         f"{ref!r} in building {b.id!r}")
            for bo in b.boilers:
                refs: list[str | None] = [bo.fuel_meter, bo.output_meter]
                for mref in refs:
                    if mref is not None and mref not in real:
                        raise ValueError(f"boiler {bo.id!r} refers to unknown meter "
                                         f"{mref!r} in building {b.id!r}")
        if self.electricity_kgce not in refdata.factors().coal_equivalent:
            raise ValueError(f"unknown electricity_kgce factor {self.electricity_kgce!r}")
        return self

    @model_validator(mode="after")
    def _key_units(self) -> Site:
        real = {m.id for _, m in self.meters()}
        coal = refdata.factors().coal_equivalent
        for ku in self.key_units:
            refs = [s.meter for s in ku.sources] + [p.output_meter for p in ku.products]
            for mref in refs:
                if mref not in real:
                    raise ValueError(f"key unit {ku.code!r} refers to unknown meter {mref!r}")
            own = {s.meter for s in ku.sources}
            for p in ku.products:
                for mref in p.sources:
                    if mref not in own:
                        raise ValueError(f"product {p.code!r} uses {mref!r}, which is not "
                                         f"one of key unit {ku.code!r}'s sources")
            keys = [s.factor for s in ku.sources if s.factor] + [ku.equal_value_electricity]
            for key in keys:
                if key not in coal:
                    raise ValueError(f"key unit {ku.code!r}: unknown factor {key!r}")
        return self

    def meter(self, mid: str) -> Meter:
        return next(m for _, m in self.meters() if m.id == mid)

    def building(self, bid: str) -> Building:
        return next(b for b in self.buildings if b.id == bid)

    def meters(self) -> list[tuple[Building, Meter]]:
        return [(b, m) for b in self.buildings for m in b.meters]


def load_site(path: str | Path) -> Site:
    """Load and validate a site file (errors name the file, key and fix)."""
    return load_model(Site, path)
