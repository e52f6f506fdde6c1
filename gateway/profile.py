"""Device profiles: a meter model is data (a YAML file), never code.

A profile lists, per canonical quantity, where the value lives in the device
(function, address, type, byte/word order) and how to scale it to the
canonical unit, plus test vectors copied from the manual so the library is
checked on every test run. Decoding is pure (``struct``), so it is trivially
testable and shared by the gateway (decode) and firmware_sim (encode).
"""

from __future__ import annotations

import struct
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Generic, Literal, Self, TypeVar

from pydantic import Field, field_validator, model_validator

from enmon import quantities
from enmon.config import StrictModel, parse_model, read_yaml
from enmon.errors import ConfigError

RegType = Literal["u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "u8", "i8",
                  "bcd16", "bcd32", "str", "bool"]
Order = Literal["big", "little"]
#: holding/input are 16-bit registers (FC 3/4); coil/discrete are single bits (FC 1/2)
Function = Literal["holding", "input", "coil", "discrete"]
BIT_FUNCTIONS: frozenset[str] = frozenset({"coil", "discrete"})

WORDS: dict[str, int] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "u64": 4,
    "i64": 4,
    "f32": 2,
    "f64": 4,
    "u8": 1,
    "i8": 1,
    "bcd16": 1,
    "bcd32": 2,
    "bool": 1,  # one bit of a coil / discrete-input read
}
#: integer types: decoded to a Python int, never through a float
INTEGER_TYPES: frozenset[str] = frozenset({"u16", "i16", "u32", "i32", "u64", "i64", "u8", "i8",
                                           "bcd16", "bcd32", "bool"})
#: above 2**53 a float cannot hold every integer: these are scaled in exact decimal arithmetic
WIDE_TYPES: frozenset[str] = frozenset({"u64", "i64"})
_UNSIGNED_BITS: dict[str, int] = {"u16": 16, "u32": 32, "u64": 64}
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
    # bit-field: bits ``bit`` .. ``bit + width - 1`` of an unsigned register value (u16/u32/u64),
    # e.g. a status word's "breaker closed" bit; for u8/i8, ``bit`` 8 picks the high byte
    bit: Annotated[int, Field(ge=0, le=63)] | None = None
    width: Annotated[int, Field(ge=1, le=64)] | None = None
    # type str: the number of registers (2 ASCII characters each) holding the text
    length: Annotated[int, Field(ge=1, le=125)] | None = None


class Defaults(StrictModel):
    function: Function = "holding"
    type: RegType = "u16"
    byte_order: Order = "big"
    word_order: Order = "big"


class Limits(StrictModel):
    """What the device accepts in one request."""

    max_registers: Annotated[int, Field(ge=1, le=125)] = 125
    max_bits: Annotated[int, Field(ge=1, le=2000)] = 2000  # per coil / discrete-input read
    # inclusive [start, end] address ranges never to read (the device answers with an exception)
    forbidden: list[tuple[int, int]] = []


class Vector(StrictModel):
    """A test vector: what a meter sent (per protocol) and the canonical values it means."""

    __test__ = False  # not a pytest class
    name: str
    # an int stays an int (64-bit counters are compared exactly, not as floats)
    expect: dict[str, int | float]


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
    bit: int | None = None
    width: int | None = None
    length: int | None = None

    @property
    def words(self) -> int:
        """Registers (or, for coil/discrete, bits) this field spans."""
        return self.length if self.type == "str" and self.length else WORDS[self.type]


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
    # a quantity's own poll interval where the model wants one (a daily water index beside a
    # 1 s demand); the device config's ``intervals_s`` overrides, other quantities follow
    # the device's poll interval
    intervals_s: dict[str, Annotated[float, Field(ge=0.1, le=86_400)]] = {}
    # quantities the meter reports on the secondary side of its current / voltage
    # transformers: multiplied by the device config's ``ct_ratio`` (current, energy,
    # power: "ct" current only, "pt" voltage only, "ctpt" energy and power)
    ratio: dict[str, Literal["ct", "pt", "ctpt"]] = {}
    # raw values a meter sends for "no value" (0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, NaN): such a
    # reading is dropped with a logged reason, never stored as a figure
    no_value: dict[str, list[int | float]] = {}
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
        for what, names in (("intervals_s", self.intervals_s), ("ratio", self.ratio),
                            ("no_value", self.no_value)):
            for q in names:
                if q not in self.quantities:
                    raise ValueError(f"{what} names {q!r}, not one of the profile's quantities")
        for vec in self.test_vectors:
            for q in vec.expect:
                if q not in self.quantities:
                    raise ValueError(f"test vector {vec.name!r} expects {q!r}, not in quantities")
        return self


#: register types a command may write (text and bits have no numeric range to check)
WRITABLE_TYPES: frozenset[str] = frozenset(
    {"u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bcd16", "bcd32"})
#: consecutive coils one writable coil point may span (its value is then a bit mask)
MAX_WRITABLE_COILS = 16


class WritablePoint(StrictModel):
    """A setting a command may change (a set-point, a demand period, a relay or a pump's run
    coil): the only registers and coils the gateway ever writes.

    A holding register (``function: holding``, the default) holds ``(value - offset) /
    scale`` in ``type``; its range ``min``..``max`` is in the point's own unit (``unit``), as
    the manual states it, and must be given — a register without a stated range is not
    safe to write. A coil (``function: coil``) is 0 or 1; a point of ``coils`` consecutive
    coils takes a bit mask (bit 0 = the first coil), so a bank of relays is one setting.
    """

    address: Annotated[int, Field(ge=0, le=0xFFFF)]
    function: Literal["holding", "coil"] = "holding"
    type: RegType | None = None  # default: the profile's defaults.type (a coil: bool)
    byte_order: Order | None = None
    word_order: Order | None = None
    scale: float = 1.0
    offset: float = 0.0
    min: float | None = None  # a register: required; a coil: 0 (default)
    max: float | None = None  # a register: required; a coil: 2**coils - 1 (default)
    # the only values the device accepts, if the manual lists them (e.g. 0, 5, 10 … minutes;
    # [1] for a reset coil that only takes "on")
    choices: list[float] | None = None
    unit: str = ""
    description: str = ""
    #: a coil point: how many consecutive coils it spans
    coils: Annotated[int, Field(ge=1, le=MAX_WRITABLE_COILS)] = 1
    # registers: 6 (write single register) or 16 (write multiple); default 6 for one
    # register, else 16. Coils: 5 (write single coil) or 15 (write multiple coils); default
    # 5 for one coil, else 15 (some devices take FC 15 only, even for one coil)
    write_function: Literal[5, 6, 15, 16] | None = None

    @property
    def is_coil(self) -> bool:
        return self.function == "coil"

    def bounds(self) -> tuple[float, float]:
        """The point's range: a register's min..max, a coil's 0..2**coils - 1."""
        if self.is_coil:
            top = float(2**self.coils - 1)
            return (0.0 if self.min is None else self.min), (top if self.max is None
                                                             else self.max)
        assert self.min is not None and self.max is not None  # checked in _sane
        return self.min, self.max

    def coil_function(self) -> int:
        """The write function of a coil point (5 or 15)."""
        return self.write_function or (5 if self.coils == 1 else 15)

    @model_validator(mode="after")
    def _sane(self) -> Self:
        if self.is_coil:
            if self.type not in (None, "bool"):
                raise ValueError(f"a coil is a bit: type {self.type} cannot be written to it")
            if self.scale != 1.0 or self.offset != 0.0 or self.unit:
                raise ValueError("a coil is 0 or 1: no scale, offset or unit")
            if self.write_function not in (None, 5, 15):
                raise ValueError(f"write_function {self.write_function} writes registers; "
                                 "a coil takes 5 or 15")
            if self.write_function == 5 and self.coils != 1:
                raise ValueError("write_function 5 writes one coil; use 15 for several")
            top = 2**self.coils - 1
            for name, v in (("min", self.min), ("max", self.max)):
                if v is not None and (v != int(v) or not 0 <= v <= top):
                    raise ValueError(f"{name} {v} is not a whole value in 0..{top}")
        else:
            if self.min is None or self.max is None:
                raise ValueError("a writable register needs min and max (the manual's range)")
            if self.coils != 1:
                raise ValueError("coils applies to a coil point (function: coil)")
            if self.write_function in (5, 15):
                raise ValueError(f"write_function {self.write_function} writes coils; "
                                 "a register takes 6 or 16")
            if self.scale == 0:
                raise ValueError("scale 0 cannot be written")
        lo, hi = self.bounds()
        if lo > hi:
            raise ValueError(f"min {lo} is above max {hi}")
        for c in self.choices or []:
            if not lo <= c <= hi:
                raise ValueError(f"choice {c} is outside min..max")
        return self


class ModbusProfile(Profile[Register, TestVector]):
    protocol: Literal["modbus"] = "modbus"
    defaults: Defaults = Defaults()
    limits: Limits = Limits()
    # settings a signed command may write (gateway.commands); nothing else is ever written
    writable: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")], WritablePoint] = {}

    @model_validator(mode="after")
    def _types_fit(self) -> Self:
        for f in self.fields():
            _check_field(f)
        for name in self.writable:
            f = self.writable_field(name)
            if self.writable[name].is_coil:
                continue  # a bit: checked by WritablePoint itself
            if f.type not in WRITABLE_TYPES:
                raise ValueError(f"writable {name!r}: type {f.type} cannot be written "
                                 f"(one of {sorted(WRITABLE_TYPES)})")
            if self.writable[name].write_function == 6 and f.words != 1:
                raise ValueError(f"writable {name!r}: write_function 6 writes one register, "
                                 f"{f.type} has {f.words}")
        return self

    def writable_field(self, name: str) -> Field_:
        """The writable point ``name`` as a field (for the same encode/decode as reads)."""
        w = self.writable[name]
        d = self.defaults
        return Field_(quantity=name, address=w.address, function=w.function,
                      type=w.type or ("bool" if w.is_coil else d.type),
                      byte_order=w.byte_order or d.byte_order,
                      word_order=w.word_order or d.word_order, scale=w.scale, offset=w.offset)

    def fields(self) -> list[Field_]:
        d = self.defaults
        out = []
        for q, r in self.quantities.items():
            function = r.function or d.function
            # a bit read has one type; the register default (u16) never applies to it
            type_ = r.type or ("bool" if function in BIT_FUNCTIONS else d.type)
            out.append(Field_(
                quantity=q,
                address=r.address,
                function=function,
                type=type_,
                byte_order=r.byte_order or d.byte_order,
                word_order=r.word_order or d.word_order,
                scale=r.scale,
                offset=r.offset,
                bit=r.bit,
                width=r.width,
                length=r.length,
            ))
        return out


def _check_field(f: Field_) -> None:
    """Refuse combinations the decoder cannot honour, naming the quantity (at load time)."""
    where = f"quantity {f.quantity!r}"
    if (f.function in BIT_FUNCTIONS) != (f.type == "bool"):
        raise ValueError(f"{where}: type bool goes with function coil/discrete and only there "
                         f"(got type {f.type} on {f.function})")
    if (f.type == "str") != (f.length is not None):
        raise ValueError(f"{where}: type str needs length (registers), and only str takes one")
    if f.bit is not None or f.width is not None:
        if f.type in ("u8", "i8"):
            if f.bit not in (None, 0, 8) or f.width is not None:
                raise ValueError(f"{where}: {f.type} takes bit 0 (low byte) or 8 (high byte)")
            return
        size = _UNSIGNED_BITS.get(f.type)
        if size is None:
            raise ValueError(f"{where}: a bit-field needs an unsigned u16/u32/u64 type, "
                             f"not {f.type}")
        if (f.bit or 0) + (f.width or 1) > size:
            raise ValueError(f"{where}: bits {f.bit or 0}+{f.width or 1} exceed {f.type}")


# --------------------------------------------------------------------------- codec

Number = int | float


def _raw_bytes(words: list[int], byte_order: Order, word_order: Order) -> bytes:
    ws = words if word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in ws)


def _words_of(raw: bytes, byte_order: Order, word_order: Order) -> list[int]:
    ws = [int.from_bytes(raw[i : i + 2], "big" if byte_order == "big" else "little")
          for i in range(0, len(raw), 2)]
    return ws if word_order == "big" else list(reversed(ws))


def decode(
    words: list[int], type_: RegType, byte_order: Order = "big", word_order: Order = "big"
) -> Number:
    """Registers (16-bit words as read off the wire) -> number.

    ``word_order`` big means the most significant word comes first (ABCD);
    ``byte_order`` little swaps the two bytes inside each word (BADC). Integer types
    come back as ``int`` — exact at any width, so a u64 counter above 2**53 keeps its
    last digit; floats as ``float``. ``u8``/``i8`` are the register's low byte (see
    :func:`to_canonical` for the high one); ``bcd16``/``bcd32`` are packed decimal digits
    (raises ValueError on a nibble above 9, which meters send for "no value").
    """
    n = len(words) if type_ == "str" else WORDS[type_]
    if len(words) != n:
        raise ValueError(f"{type_} needs {n} registers, got {len(words)}")
    if type_ == "bool":
        return 1 if words[0] else 0
    if type_ == "str":
        return parse_number_text(decode_string(words, byte_order))
    raw = _raw_bytes(words, byte_order, word_order)
    if type_ in ("bcd16", "bcd32"):
        digits = raw.hex()
        if not digits.isdigit():
            raise ValueError(f"registers {raw.hex()} are not BCD")
        return int(digits)
    if type_ in ("u8", "i8"):
        return int.from_bytes(raw[1:], "big", signed=type_ == "i8")
    if type_ in ("f32", "f64"):
        return float(struct.unpack(">" + _STRUCT[type_], raw)[0])
    return int.from_bytes(raw, "big", signed=type_.startswith("i"))


def encode(
    value: Number, type_: RegType, byte_order: Order = "big", word_order: Order = "big",
    *, length: int = 1,
) -> list[int]:
    """Number -> registers; the inverse of :func:`decode` (used by firmware_sim)."""
    if type_ == "bool":
        return [1 if value else 0]
    if type_ == "str":
        return encode_string(format_number_text(value), length, byte_order)
    if type_ in ("bcd16", "bcd32"):
        nbytes = 2 * WORDS[type_]
        v = round(value)
        if not 0 <= v < 10 ** (2 * nbytes):
            raise ValueError(f"{value} does not fit {type_}")
        return _words_of(bytes.fromhex(f"{v:0{2 * nbytes}d}"), byte_order, word_order)
    if type_ in ("u8", "i8"):
        return [round(value).to_bytes(1, "big", signed=type_ == "i8")[0]]
    if type_ in ("f32", "f64"):
        raw = struct.pack(">" + _STRUCT[type_], value)
    else:
        nbytes = 2 * WORDS[type_]
        iv = value if isinstance(value, int) else round(value)
        raw = iv.to_bytes(nbytes, "big", signed=type_.startswith("i"))
    return _words_of(raw, byte_order, word_order)


def decode_string(words: list[int], byte_order: Order = "big") -> str:
    """ASCII text, two characters per register (high byte first unless byte_order little),
    trailing NULs and spaces dropped: how meters hold serial numbers, models, versions."""
    raw = b"".join(w.to_bytes(2, "big" if byte_order == "big" else "little") for w in words)
    try:
        return raw.decode("ascii").rstrip("\x00 ").lstrip(" ")
    except UnicodeDecodeError:
        raise ValueError(f"registers {raw.hex()} are not ASCII text") from None


def encode_string(text: str, length: int, byte_order: Order = "big") -> list[int]:
    raw = text.encode("ascii")
    if len(raw) > 2 * length:
        raise ValueError(f"{text!r} does not fit {length} registers")
    raw = raw.ljust(2 * length, b"\x00")
    return [int.from_bytes(raw[i : i + 2], "big" if byte_order == "big" else "little")
            for i in range(0, len(raw), 2)]


def parse_number_text(text: str) -> Number:
    """A number written as text in registers (some flow computers do this): int if integral."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"text {text!r} is not a number") from None


def format_number_text(value: Number) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _bits(f: Field_, raw: Number) -> Number:
    """Apply the field's bit-field / byte selection to an integer register value."""
    if f.type in ("u8", "i8"):
        return raw
    if f.bit is None and f.width is None:
        return raw
    assert isinstance(raw, int)
    return (raw >> (f.bit or 0)) & ((1 << (f.width or 1)) - 1)


def _field_words(f: Field_, words: list[int]) -> list[int]:
    if f.type in ("u8", "i8") and f.bit == 8:
        return [words[0] >> 8]  # the high byte, moved where decode() reads a byte
    return words


def to_canonical(f: Field_, words: list[int]) -> Number:
    """Registers of one field -> its canonical value (scale, then offset).

    Integer types stay exact: unscaled they are returned as ``int``; 64-bit ones are
    scaled in decimal arithmetic and rounded once to the nearest float, so a counter at
    2**53 + 1 with scale 0.01 does not first lose its last digit in a float.
    """
    raw = _bits(f, decode(_field_words(f, words), f.type, f.byte_order, f.word_order))
    if isinstance(raw, int):
        if f.scale == 1 and f.offset == 0:
            return raw
        if f.type in WIDE_TYPES:
            exact = Decimal(raw) * Decimal(repr(f.scale)) + Decimal(repr(f.offset))
            return int(exact) if exact == exact.to_integral_value() else float(exact)
    return raw * f.scale + f.offset


def from_canonical(f: Field_, value: Number) -> list[int]:
    """Canonical value -> the field's registers (firmware_sim); see :func:`encode_into`."""
    if isinstance(value, int) and f.scale == 1 and f.offset == 0:
        raw: Number = value
    elif f.type in WIDE_TYPES:
        exact = (Decimal(repr(value) if isinstance(value, float) else value)
                 - Decimal(repr(f.offset))) / Decimal(repr(f.scale))
        raw = int(exact.to_integral_value())
    else:
        raw = (value - f.offset) / f.scale
    if f.bit is not None or f.width is not None:
        if f.type in ("u8", "i8"):
            word = encode(raw, f.type)[0]
            return [word << 8] if f.bit == 8 else [word]
        return encode(round(raw) << (f.bit or 0), f.type, f.byte_order, f.word_order)
    return encode(raw, f.type, f.byte_order, f.word_order, length=f.words)


def encode_into(image: list[int], offset: int, f: Field_, value: Number) -> None:
    """Write one field into a register image; bit-fields and high/low bytes are OR-ed in, so
    several fields may share a register (a status word)."""
    words = from_canonical(f, value)
    shares = f.bit is not None or f.width is not None
    for i, w in enumerate(words):
        image[offset + i] = (image[offset + i] | w) if shares else w


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
