"""Device profiles: a meter model is data (a YAML file), never code.

A profile lists, per canonical quantity, where the value lives in the device
(function, address, type, byte/word order) and how to scale it to the
canonical unit, plus test vectors copied from the manual so the library is
checked on every test run. Decoding is pure (``struct``), so it is trivially
testable and shared by the gateway (decode) and firmware_sim (encode).
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import Field, field_validator, model_validator

from enmon import quantities
from enmon.config import StrictModel, parse_model, read_yaml
from enmon.errors import ConfigError

RegType = Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"]
Order = Literal["big", "little"]
Function = Literal["holding", "input"]

WORDS: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "u64": 4,
    "i64": 4,
    "f32": 2,
    "f64": 4,
}
_STRUCT: dict[str, str] = {
    "u16": "H",
    "i16": "h",
    "u32": "I",
    "i32": "i",
    "u64": "Q",
    "i64": "q",
    "f32": "f",
    "f64": "d",
}
PROFILE_DIR = Path(__file__).parent / "profiles"


class Register(StrictModel):
    """Where one quantity lives in a Modbus device and how to scale it."""

    address: Annotated[
        int,
        Field(
            ge=0,
            le=0xFFFF,
            json_schema_extra={"fix": "0-based protocol address 0..65535 (register 30001 → 0)"},
        ),
    ]
    function: Function | None = None
    type: RegType | None = None
    byte_order: Order | None = None
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0


class Defaults(StrictModel):
    function: Function = "holding"
    type: RegType = "u16"
    byte_order: Order = "big"
    word_order: Order = "big"


class Limits(StrictModel):
    """What the device accepts in one request."""

    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    # inclusive [start, end] address ranges never to read (the device answers with an exception)
    forbidden: list[tuple[int, int]] = []


class Vector(StrictModel):
    """A test vector: what a meter sent (per protocol) and the canonical values it means."""

    __test__ = False  # not a pytest class
    name: str
    expect: dict[str, float]


class TestVector(Vector):
    # function -> {address: [words]}
    registers: dict[Function, dict[int, list[Annotated[int, Field(ge=0, le=0xFFFF)]]]]


class Field_(StrictModel):
    """A register with every default applied (what the poller uses)."""

    quantity: str
    address: int
    function: Function
    type: RegType
    byte_order: Order
    word_order: Order
    scale: float
    offset: float

    @property
    def words(self) -> int:
        return WORDS[self.type]


ItemT = TypeVar("ItemT", bound=StrictModel)
VectorT = TypeVar("VectorT", bound=Vector)


class Profile(StrictModel, Generic[ItemT, VectorT]):
    """The header and checks every protocol's profile shares, so a Modbus, DL/T 645 and
    serial-line YAML are validated alike; each protocol adds how a quantity is reached
    (``ItemT``) and what its test vectors carry (``VectorT``)."""

    model: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
    manufacturer: str
    name: str
    energy_type: str = "electricity"
    source: str = Field(
        min_length=5, json_schema_extra={"fix": "name the manual and section the map comes from"}
    )
    confidence: Literal["R", "U", "I"] = "U"
    probe: str | None = None
    quantities: dict[str, ItemT]
    test_vectors: list[VectorT] = []

    @field_validator("quantities")
    @classmethod
    def _known(cls, v: dict[str, ItemT]) -> dict[str, ItemT]:
        for name in v:
            quantities.get(name)  # KeyError with suggestions -> pydantic error
        if not v:
            raise ValueError("a profile needs at least one quantity")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.energy_type not in quantities.ENERGY_TYPES:
            raise ValueError(f"energy_type {self.energy_type!r} not in {quantities.ENERGY_TYPES}")
        if self.probe is not None and self.probe not in self.quantities:
            raise ValueError(f"probe {self.probe!r} is not one of the profile's quantities")
        for vec in self.test_vectors:
            for q in vec.expect:
                if q not in self.quantities:
                    raise ValueError(f"test vector {vec.name!r} expects {q!r}, not in quantities")
        return self


class ModbusProfile(Profile[Register, TestVector]):
    protocol: Literal["modbus"] = "modbus"
    defaults: Defaults = Defaults()
    limits: Limits = Limits()

    def fields(self) -> list[Field_]:
        d = self.defaults
        return [
            Field_(
                quantity=q,
                address=r.address,
                function=r.function or d.function,
                type=r.type or d.type,
                byte_order=r.byte_order or d.byte_order,
                word_order=r.word_order or d.word_order,
                scale=r.scale,
                offset=r.offset,
            )
            for q, r in self.quantities.items()
        ]


# --------------------------------------------------------------------------- codec


def decode(
    words: list[int], type_: RegType, byte_order: Order = "big", word_order: Order = "big"
) -> float:
    """Registers (16-bit words as read off the wire) -> number.

    ``word_order`` big means the most significant word comes first (ABCD);
    ``byte_order`` little swaps the two bytes inside each word (BADC).
    """
    n = WORDS[type_]
    if len(words) != n:
        raise ValueError(f"{type_} needs {n} registers, got {len(words)}")
    ws = words if word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in ws)
    return float(struct.unpack(">" + _STRUCT[type_], raw)[0])


def encode(
    value: float, type_: RegType, byte_order: Order = "big", word_order: Order = "big"
) -> list[int]:
    """Number -> registers; the inverse of :func:`decode` (used by firmware_sim)."""
    code = _STRUCT[type_]
    raw = struct.pack(">" + code, value if code in "fd" else round(value))
    ws = [
        int.from_bytes(raw[i : i + 2], "big" if byte_order == "big" else "little")
        for i in range(0, len(raw), 2)
    ]
    return ws if word_order == "big" else list(reversed(ws))


def to_canonical(f: Field_, words: list[int]) -> float:
    return decode(words, f.type, f.byte_order, f.word_order) * f.scale + f.offset


def from_canonical(f: Field_, value: float) -> list[int]:
    raw = (value - f.offset) / f.scale
    return encode(raw, f.type, f.byte_order, f.word_order)


# --------------------------------------------------------------------------- library


def profile_path(name: str) -> Path:
    """A profile by model name from the shipped library, or a path to a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return p
    return PROFILE_DIR / f"{name}.yaml"


@cache
def load_profile(name: str) -> ModbusProfile:
    """A Modbus profile; DL/T 645 and serial-line ones load with ``gateway.library.load``."""
    path = profile_path(name)
    data = read_yaml(path)
    if isinstance(data, dict) and data.get("protocol", "modbus") != "modbus":
        raise ConfigError(str(path), "protocol",
                          f"{data['protocol']!r} profile where a Modbus one is needed",
                          "pick a modbus profile (enmon gateway profiles)")
    return parse_model(ModbusProfile, data, file=str(path))


def library() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
