"""Reference data (factors, quotas, boiler limits) loaded from ``energy/data/*.yaml``.

The numbers live in data files, not in code, so that each one travels with its
source and confidence mark (R/U/I as in ``shared/reference/standards.md``) into
every report that uses it, and so that a user can override any of them without
touching enmon. Every lookup returns a :class:`Ref`, never a bare float.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field

from enmon.config import StrictModel, load_model
from enmon.errors import ConfigError

DATA_DIR = Path(__file__).parent / "data"


def data_dir() -> Path:
    """The shipped data, or a directory of your own copies (``ENMON_RULES_DATA``)."""
    import os

    own = os.environ.get("ENMON_RULES_DATA")
    return Path(own) if own else DATA_DIR

Mark = Literal["R", "U", "I", "R/I", "R/U", "user"]


class Ref(StrictModel):
    """One reference number with where it comes from."""

    value: float
    unit: str = ""
    source: str
    mark: Mark

    def label(self) -> str:
        return f"{self.value:g} {self.unit} [{self.mark}] {self.source}".strip()


class CoalFactor(Ref):
    energy_type: str


class Co2Basis(StrictModel):
    description: str
    unit: str
    source: str
    mark: Mark
    # year ("2023" or "any") -> region ("national", "华东", "上海", ...) -> factor
    factors: dict[str, dict[str, float]]


class Co2Data(StrictModel):
    bases: dict[str, Co2Basis]
    natural_gas_combustion: Ref


class Factors(StrictModel):
    coal_equivalent: dict[str, CoalFactor]
    kgce_mj: Ref
    default_coal_equivalent: dict[str, str]
    co2: Co2Data


class QuotaEntry(StrictModel):
    unit: str
    basis: Literal["area", "person"]
    constraint: float
    baseline: float | None = None
    guide: float | None = None
    source: str
    mark: Mark
    office_correction: bool = False


class OfficeCorrection(StrictModel):
    T0_hours: Ref
    S0_m2_per_person: Ref


class Quotas(StrictModel):
    gbt51161_office_correction: OfficeCorrection
    quotas: dict[str, QuotaEntry]


class LimitRow(StrictModel):
    combustion: Literal["grate", "fluidised_bed", "chamber", "biomass", "electric"]
    fuel: str
    small: tuple[float, float, float]
    large: tuple[float, float, float]
    split_t_h: float = 20.0
    note: str = ""


class BoilerLimits(StrictModel):
    source: str
    mark: Mark
    mw_per_t_h: Ref
    limits: list[LimitRow]


class ExhaustCoefficients(StrictModel):
    A2: float = Field(gt=0)
    B: float = Field(ge=0)
    source: str = "user configuration"
    mark: Mark = "user"


class ExhaustLoss(StrictModel):
    formula: dict[str, str]
    coefficients: dict[str, ExhaustCoefficients]


@cache
def factors(path: Path | None = None) -> Factors:
    return load_model(Factors, path or data_dir() / "factors.yaml")


@cache
def quotas(path: Path | None = None) -> Quotas:
    return load_model(Quotas, path or data_dir() / "quotas.yaml")


@cache
def boiler_limits(path: Path | None = None) -> BoilerLimits:
    return load_model(BoilerLimits, path or data_dir() / "boiler_limits.yaml")


@cache
def exhaust_loss(path: Path | None = None) -> ExhaustLoss:
    return load_model(ExhaustLoss, path or data_dir() / "exhaust_loss.yaml")


def quota(ref: str) -> QuotaEntry:
    """Look a shipped quota up by its key, with a hint listing near keys."""
    table = quotas().quotas
    try:
        return table[ref]
    except KeyError:
        import difflib

        near = difflib.get_close_matches(ref, table, n=3, cutoff=0.5)
        raise ConfigError(
            str(data_dir() / "quotas.yaml"), ref, f"no quota {ref!r}",
            f"use one of {', '.join(near) or 'the keys in energy/data/quotas.yaml'}",
        ) from None


def grid_co2(year: int, region: str = "national", basis: str = "mee_grid_average") -> Ref:
    """Grid CO2 factor for a year and region on a named basis.

    Falls back to the closest earlier published year, then to the national value,
    and says so in ``source`` (an inspector must see which number was used).
    """
    data = factors().co2.bases.get(basis)
    if data is None:
        raise ConfigError("energy/data/factors.yaml", f"co2.bases.{basis}", "unknown CO2 basis",
                          f"use one of {', '.join(factors().co2.bases)}")
    years = sorted((y for y in data.factors if y.isdigit()), key=int)
    if "any" in data.factors:
        chosen = "any"
    else:
        earlier = [y for y in years if int(y) <= year]
        chosen = earlier[-1] if earlier else years[0]
    row = data.factors[chosen]
    note = []
    if chosen not in ("any", str(year)):
        note.append(f"{year} not published, used {chosen}")
    if region in row:
        value = row[region]
    else:
        value = row["national"]
        if region != "national":
            note.append(f"no {region} factor for {chosen}, used national")
    src = f"{data.source}, {chosen} {region if region in row else 'national'} (basis {basis})"
    if note:
        src += "; " + "; ".join(note)
    return Ref(value=value, unit=data.unit, source=src, mark=data.mark)
