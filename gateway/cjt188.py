"""CJ/T 188 (户用计量仪表数据传输技术条件) framing, unit codes, status and profiles: water,
heat and gas meters on RS-485 (or M-Bus levels behind an RS-485 converter).

The sub-meters of a building's water, heating and gas — the ones an energy-supervision
collector must read beside its DL/T 645 electricity meters — mostly speak CJ/T 188. Like
DL/T 645 the framing is small and fixed, so it is pure functions here, driven by the
gateway's own half-duplex bus scheduler.

Frame::

    [FE FE FE FE]  68  T  A0..A6  C  L  DATA  CS  16

* T: meter type — 10h cold water, 11h domestic hot water, 12h drinking water, 13h
  reclaimed water, 20h heat meter (heat), 21h heat meter (cooling), 30h gas, 40h
  electricity; ``AA`` as a wildcard;
* A0..A6: 7-byte address, least significant byte first (A5 A6 carry the maker's code in
  many meters); written on the nameplate as 14 digits A6..A0; ``AA``×7 is the wildcard;
* C: 01h read data, answered by 81h (bit 7: the answer direction), an abnormal answer
  has bit 6 set as well (C1h) and carries SER and the status bytes;
* DATA for a read: DI (2 bytes) + SER (1 byte, echoed in the answer) — ``901F`` is the
  current metering data; the answer is DI + SER + the values;
* CS: sum of every byte from 68 to the end of DATA, modulo 256. No +33H offset
  (unlike DL/T 645).

**2004 vs 2018, where they differ on the wire: the DI byte order.** A CJ/T 188-2004 meter
sends ``90 1F``, a 2018 meter ``1F 90`` (DI0 first); the profile's ``version`` picks it.
This is how the ng-gateway CJ/T 188 driver (``ng_driver_cjt188``, ``frame/body.rs``:
``put_di`` big-endian for V2004, little-endian for V2018) does it and it matches the two
public frames below. 2018 also adds meter types and identifiers we do not read.

901F answer of a water / gas meter (value then unit code, BCD least significant byte
first): current cumulative flow XXXXXX.XX + unit, settlement-day flow XXXXXX.XX + unit,
real time ss mm hh DD MM YY YY (7 bytes), ST (2 bytes): 19 bytes. Of a heat meter:
settlement-day heat, current heat, heat power, flow rate, cumulative flow (each 4 BCD +
unit), supply and return temperature XXXX.XX °C (3 bytes each), operating hours XXXXXX
(3 bytes), real time (7), ST (2): 43 bytes. Some makers put the unit code *before* the
value (the profile's ``unit_position``).

Unit codes (the standard's 单位代码 table): 02h Wh, 05h kWh, 08h MWh, 0Ah MWh×100, 01h J,
0Bh kJ, 0Eh MJ, 11h GJ, 13h GJ×100, 14h W, 17h kW, 1Ah MW, 29h L, 2Ch m³, 32h L/h,
35h m³/h. A reading is converted to the canonical unit of its quantity *from the unit
code the meter sent*, so a meter switched from kWh to GJ keeps reading right.

ST byte 1: D1D0 valve 00 open / 01 closed / 11 abnormal, D2 battery 0 normal / 1 low;
the rest and ST byte 2 are the maker's (as recalled from copies of the 2004 text and
corroborated by the cj188.h of xijunzhou/sdqr_energy_node_class, which tests the same
bits counted from the top: 0x20 battery, 0xC0 valve).

Public frames, the tests' vectors (``tests/gateway/test_cjt188.py``):

* hftangyu.com/563.html ("CJ/T-188水表协议" for an SC water meter): read
  ``FE FE FE FE 68 10 44 33 22 11 00 33 78 01 03 1F 90 00 80 16`` (checksum right),
  answer ``68 10 44 33 22 11 00 33 78 81 16 1F 90 00 00 77 66 55 2C 00 77 66 55 2C 31 01
  22 11 05 15 20 21 84 08 16`` = 556677.00 m³, ST 21 84. The printed checksum 08 is wrong
  (the bytes sum to 13h): the page's example has a typo, and the codec refuses it.
* cnblogs.com/llguanli/p/8683992.html (same text on shuzhiduo.com, "CJ/T-188 冷热量表协议
  解析2", a JY heat meter): read ``FE FE FE FE 68 20 32 41 31 40 00 00 00 01 03 90 1F 01
  20 16``, answer ``68 20 32 41 31 40 00 00 00 81 2E 90 1F 01 08 02 00 00 00 …
  53 00 12 10 07 15 20 00 00 31 16`` (checksum right): unit code first, 0.02 MWh heat,
  10.34 m³, 25.35 / 25.66 °C.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from enmon import quantities
from enmon.config import StrictModel
from enmon.errors import DriverError
from gateway.profile import Profile, Vector

PREAMBLE = b"\xfe\xfe\xfe\xfe"
WILDCARD = "AAAAAAAAAAAAAA"  # AA×7
C_READ = 0x01
C_READ_OK = 0x81
C_ABNORMAL = 0x40  # D6 of the control code: abnormal answer
DI_METERING = "901F"  # current metering data
HEADER = 11  # 68 T A0..A6 C L

Version = Literal["2004", "2018"]

METER_TYPES: dict[int, str] = {
    0x10: "cold water", 0x11: "domestic hot water", 0x12: "drinking water",
    0x13: "reclaimed water", 0x20: "heat meter (heat)", 0x21: "heat meter (cooling)",
    0x30: "gas", 0x40: "electricity",
}

#: unit code -> unit name
UNIT_CODES: dict[int, str] = {
    0x02: "Wh", 0x05: "kWh", 0x08: "MWh", 0x0A: "MWh*100", 0x01: "J", 0x0B: "kJ",
    0x0E: "MJ", 0x11: "GJ", 0x13: "GJ*100", 0x14: "W", 0x17: "kW", 0x1A: "MW",
    0x29: "L", 0x2C: "m3", 0x32: "L/h", 0x35: "m3/h",
}
CODE_OF_UNIT: dict[str, int] = {v: k for k, v in UNIT_CODES.items()}

#: unit -> (canonical unit of the vocabulary, factor to it)
TO_CANONICAL: dict[str, tuple[str, float]] = {
    "Wh": ("GJ", 3.6e-6), "kWh": ("GJ", 3.6e-3), "MWh": ("GJ", 3.6), "MWh*100": ("GJ", 360.0),
    "J": ("GJ", 1e-9), "kJ": ("GJ", 1e-6), "MJ": ("GJ", 1e-3), "GJ": ("GJ", 1.0),
    "GJ*100": ("GJ", 100.0), "W": ("kW", 1e-3), "kW": ("kW", 1.0), "MW": ("kW", 1e3),
    "L": ("m3", 1e-3), "m3": ("m3", 1.0), "L/h": ("m3/h", 1e-3), "m3/h": ("m3/h", 1.0),
    "°C": ("°C", 1.0), "1": ("1", 1.0),
}
Unit = Literal["Wh", "kWh", "MWh", "MWh*100", "J", "kJ", "MJ", "GJ", "GJ*100", "W", "kW",
               "MW", "L", "m3", "L/h", "m3/h", "°C", "1"]

VALVE = {0b00: "open", 0b01: "closed", 0b10: "undefined (10)", 0b11: "abnormal"}


class Cjt188Error(DriverError):
    """The meter answered with an abnormal response (control code bit 6 set)."""

    def __init__(self, address: str, control: int, data: bytes) -> None:
        self.address, self.control, self.data = address, control, data
        super().__init__(f"meter {address}: abnormal answer C=0x{control:02X} "
                         f"data={data.hex() or '-'}")


class Cjt188FrameError(DriverError):
    """Bytes that are not a valid CJ/T 188 frame (checksum, length, garbage, wrong meter)."""


# --------------------------------------------------------------------------- codec


def address_bytes(address: str) -> bytes:
    """14 hex digits as on the nameplate (A6..A0) → 7 wire bytes, A0 first."""
    if len(address) != 14 or any(c not in "0123456789ABCDEFabcdef" for c in address):
        raise ValueError(f"meter address {address!r} must be 14 hex digits (A6..A0)")
    return bytes.fromhex(address)[::-1]


def address_text(raw: bytes) -> str:
    return raw[::-1].hex().upper()


def address_matches(pattern: str, address: str) -> bool:
    """Does a meter at ``address`` answer a frame sent to ``pattern`` (``AA`` byte = any)?"""
    pairs = [(pattern[i : i + 2].upper(), address[i : i + 2].upper()) for i in range(0, 14, 2)]
    return all(p in ("AA", a) for p, a in pairs)


def di_bytes(di: str, version: Version) -> bytes:
    """``901F`` → wire bytes: ``90 1F`` in 2004, ``1F 90`` in 2018."""
    raw = bytes.fromhex(di)
    return raw if version == "2004" else raw[::-1]


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def build_frame(meter_type: int, address: str, control: int, data: bytes = b"", *,
                preamble: bool = True) -> bytes:
    body = bytes([0x68, meter_type]) + address_bytes(address) + bytes([control, len(data)])
    body += data
    return (PREAMBLE if preamble else b"") + body + bytes([checksum(body), 0x16])


def read_request(meter_type: int, address: str, di: str = DI_METERING, ser: int = 0,
                 version: Version = "2004", *, preamble: bool = True) -> bytes:
    """The read-data frame (C 01h, L 03h, DI + SER)."""
    return build_frame(meter_type, address, C_READ, di_bytes(di, version) + bytes([ser & 0xFF]),
                       preamble=preamble)


@dataclass(frozen=True, slots=True)
class Frame:
    meter_type: int
    address: str
    control: int
    data: bytes


def frame_length(buf: bytes) -> int | None:
    """Bytes needed for the frame that starts at the first 68h of ``buf`` (None: not yet)."""
    start = buf.find(b"\x68")
    if start < 0 or len(buf) < start + HEADER:
        return None
    return start + HEADER + buf[start + 10] + 2


def find_frame(buf: bytes) -> tuple[Frame | None, int]:
    """The first complete frame in ``buf`` and the bytes consumed.

    Preamble and leading garbage are skipped; a complete frame with a wrong checksum or
    end byte raises :class:`Cjt188FrameError`.
    """
    start = buf.find(b"\x68")
    if start < 0:
        return None, len(buf)
    rest = buf[start:]
    if len(rest) < HEADER:
        return None, start
    total = HEADER + rest[10] + 2
    if len(rest) < total:
        return None, start
    frame = rest[:total]
    if frame[-1] != 0x16 or checksum(frame[:-2]) != frame[-2]:
        raise Cjt188FrameError(f"bad checksum or end byte in {frame.hex()} "
                               f"(sum 0x{checksum(frame[:-2]):02X}, sent 0x{frame[-2]:02X})")
    return Frame(frame[1], address_text(frame[2:9]), frame[9], frame[HEADER:-2]), start + total


def parse_read_response(meter_type: int, address: str, frame: Frame, di: str = DI_METERING,
                        ser: int | None = None, version: Version = "2004") -> bytes:
    """The value bytes (after DI and SER) of a normal answer to ``read_request``.

    Refuses, by name, an answer from another meter or type, an abnormal answer
    (:class:`Cjt188Error`), another control code, DI, or SER than asked.
    """
    if not address_matches(address, frame.address):
        raise Cjt188FrameError(f"answer from meter {frame.address}, asked {address}")
    if meter_type != 0xAA and frame.meter_type != meter_type:
        raise Cjt188FrameError(f"meter {address}: answer of meter type 0x{frame.meter_type:02X}, "
                               f"asked 0x{meter_type:02X}")
    if frame.control & 0xBF == C_READ_OK and frame.control & C_ABNORMAL:
        raise Cjt188Error(address, frame.control, frame.data)
    if frame.control != C_READ_OK:
        raise Cjt188FrameError(f"meter {address}: control 0x{frame.control:02X}, "
                               f"want 0x{C_READ_OK:02X}")
    want = di_bytes(di, version)
    if frame.data[:2] != want:
        raise Cjt188FrameError(f"meter {address}: answer for DI bytes {frame.data[:2].hex()}, "
                               f"asked {want.hex()} (CJ/T 188-{version})")
    if len(frame.data) < 3:
        raise Cjt188FrameError(f"meter {address}: answer without SER")
    if ser is not None and frame.data[2] != ser & 0xFF:
        raise Cjt188FrameError(f"meter {address}: answer SER {frame.data[2]}, asked {ser & 0xFF}")
    return frame.data[3:]


def decode_bcd(raw: bytes, decimals: int) -> float:
    """BCD bytes, least significant first → number; raises on a non-BCD nibble (FFh = none)."""
    digits = raw[::-1].hex()
    if not digits.isdigit():
        raise Cjt188FrameError(f"value bytes {raw.hex()} are not BCD")
    return int(digits) / 10**decimals


def encode_bcd(value: float, nbytes: int, decimals: int) -> bytes:
    """Number → BCD bytes, least significant first (wraps like the meter's display)."""
    scaled = round(abs(value) * 10**decimals) % 10 ** (2 * nbytes)
    return bytes.fromhex(f"{scaled:0{2 * nbytes}d}")[::-1]


@dataclass(frozen=True, slots=True)
class Status:
    """ST byte 1 as the standard defines it (byte 2 is the maker's)."""

    valve: str
    battery_low: bool

    @classmethod
    def of(cls, st: bytes) -> Status:
        return cls(VALVE[st[0] & 0b11], bool(st[0] & 0b100))


# --------------------------------------------------------------------------- profile


class Cjt188Item(StrictModel):
    """Where one quantity sits in the answer's value bytes (after DI and SER)."""

    offset: Annotated[int, Field(ge=0, le=250, json_schema_extra={
        "fix": "byte offset after DI and SER (the current cumulative flow is at 0)"})]
    bytes: Annotated[int, Field(ge=1, le=8)]
    type: Literal["bcd", "bits"] = "bcd"
    decimals: Annotated[int, Field(ge=0, le=8)] = 0
    #: a unit code byte goes with the value (before or after it: the profile's unit_position)
    unit_code: bool = False
    #: the unit the value is in (without a unit code), or the one a meter usually sends
    #: (with one: what the simulator sends)
    unit: Unit = "1"
    #: type bits: bits ``bit`` .. ``bit + width - 1`` of the bytes (little-endian, ST1 first)
    bit: Annotated[int, Field(ge=0, le=15)] = 0
    width: Annotated[int, Field(ge=1, le=16)] = 1


class Cjt188Vector(Vector):
    # value bytes after DI and SER, hex, as the meter sends them
    data: str


class Cjt188Profile(Profile[Cjt188Item, Cjt188Vector]):
    protocol: Literal["cjt188"]
    #: the edition: the DI byte order on the wire differs
    version: Version = "2004"
    meter_type: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{2}$", json_schema_extra={
        "fix": "the T byte in hex: 10 cold water, 11 hot water, 20 heat, 21 cooling, 30 gas"})]
    di: Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{4}$")] = DI_METERING
    #: value bytes after DI and SER in the answer
    length: Annotated[int, Field(ge=1, le=250)]
    unit_position: Literal["after", "before"] = "after"

    @property
    def type_byte(self) -> int:
        return int(self.meter_type, 16)

    def span(self, item: Cjt188Item) -> tuple[int, int]:
        """(first byte, end) of the item's value bytes, unit code excluded."""
        start = item.offset + (1 if item.unit_code and self.unit_position == "before" else 0)
        return start, start + item.bytes

    @model_validator(mode="after")
    def _fits(self) -> Self:
        for q, item in self.quantities.items():
            end = item.offset + item.bytes + (1 if item.unit_code else 0)
            if end > self.length:
                raise ValueError(f"quantity {q!r}: bytes {item.offset}..{end - 1} exceed "
                                 f"length {self.length}")
            canonical = quantities.get(q).unit
            if item.type == "bcd" and TO_CANONICAL[item.unit][0] != canonical:
                raise ValueError(f"quantity {q!r} is in {canonical}; unit {item.unit} is not")
            if item.type == "bits" and item.bit + item.width > 8 * item.bytes:
                raise ValueError(f"quantity {q!r}: bits {item.bit}+{item.width} exceed "
                                 f"{item.bytes} bytes")
        return self


def item_value(profile: Cjt188Profile, quantity: str, values: bytes) -> float:
    """The canonical value of ``quantity`` from an answer's value bytes."""
    item = profile.quantities[quantity]
    if len(values) < profile.length:
        raise Cjt188FrameError(f"{len(values)} value bytes, {profile.model} sends "
                               f"{profile.length}")
    start, end = profile.span(item)
    raw = values[start:end]
    if item.type == "bits":
        return (int.from_bytes(raw, "little") >> item.bit) & ((1 << item.width) - 1)
    unit = item.unit
    if item.unit_code:
        code = values[item.offset] if profile.unit_position == "before" else values[end]
        if code not in UNIT_CODES:
            raise Cjt188FrameError(f"{quantity}: unknown unit code 0x{code:02X}")
        unit = UNIT_CODES[code]  # type: ignore[assignment]
    canonical, factor = TO_CANONICAL[unit]
    if canonical != quantities.get(quantity).unit:
        raise Cjt188FrameError(f"{quantity}: unit code for {unit}, not "
                               f"{quantities.get(quantity).unit}")
    return decode_bcd(raw, item.decimals) * factor


def encode_values(profile: Cjt188Profile, values: dict[str, float]) -> bytes:
    """Canonical values → an answer's value bytes (firmware_sim); the inverse of
    :func:`item_value`, in each item's ``unit``. Bytes no quantity covers stay 0."""
    out = bytearray(profile.length)
    for q, item in profile.quantities.items():
        if q not in values:
            continue
        start, end = profile.span(item)
        if item.type == "bits":
            word = int.from_bytes(out[start:end], "little")
            word |= (round(values[q]) & ((1 << item.width) - 1)) << item.bit
            out[start:end] = word.to_bytes(item.bytes, "little")
            continue
        out[start:end] = encode_bcd(values[q] / TO_CANONICAL[item.unit][1], item.bytes,
                                    item.decimals)
        if item.unit_code:
            pos = item.offset if profile.unit_position == "before" else end
            out[pos] = CODE_OF_UNIT[item.unit]
    return bytes(out)
