"""EN 13757-2 (link layer) and EN 13757-3 (application layer) wired M-Bus: frames, primary
and secondary addressing, and the variable data structure a heat meter answers with.

Heat, water and cooling meters in European-made district-heating substations (Landis+Gyr
T550/UH50, Kamstrup MULTICAL, Diehl/Sensus, Itron) are read over M-Bus. The codec is pure
functions (no I/O), like ``gateway.cjt188``; the gateway's bus scheduler drives it.

We write our own codec rather than depend on PyPI ``pyMeterBus`` (0.8.5: decodes variable
data only, "does currently NOT support encoding and transmission of M-Bus frames, such as
control frames", per its PyPI page; a side project without documentation). We need strict
rejection with a reason (a frame that is almost right must never be read as a value), the
exact canonical units of ``enmon.quantities``, and no dependency that pulls its own serial
layer into the gateway. Only the subset a heat meter uses is decoded; anything else is kept
as a raw record and never guessed at.

Link layer (EN 13757-2, FT1.2 framing)::

    single character   E5                       (acknowledge)
    short frame        10 C A CS 16             CS = C + A (mod 256)
    control frame      68 03 03 68 C A CI CS 16
    long frame         68 L L 68 C A CI DATA CS 16, L = 3 + len(DATA), CS = sum C..DATA

Control codes: SND_NKE 40h (link reset / deselect), SND_UD 53h/73h, REQ_UD2 5Bh/7Bh (7Bh
with the frame-count bit set), RSP_UD 08h (+ ACD 20h, DFC 10h). Addresses: 0 unconfigured,
1..250 primary, FDh "the slave selected by secondary address", FEh broadcast with answer,
FFh broadcast without answer.

Secondary addressing: SND_UD to FDh with CI 52h and the 8-byte secondary address (ID as
8 BCD digits LSB first, manufacturer 2 bytes, version, medium). Any nibble of the ID may be
F (wildcard), manufacturer FFFFh, version and medium FFh match anything. Every meter that
matches is selected and answers E5; two answers on the line collide (garbage), which is how
the wildcard search narrows digit by digit.

Application layer (EN 13757-3): CI 72h (variable data, long header): ID (4 BCD), manufacturer
(2, three 5-bit letters + 64), version, medium, access number, status, signature (2), then
data records: DIF [DIFE…] VIF [VIFE…] data.

Test vectors (``tests/gateway/test_mbus.py``): the Landis+Gyr ULTRAHEAT T230 RSP_UD of
libmbus (github.com/rscada/libmbus, ``test/test-frames/landis+gyr_ultraheat_t230.hex``, its
decoded values in ``….norm.xml``: 35 records incl. negative BCD, 10 DIFEs' storage 510,
type F date, manufacturer data), and the RSP_UD example of "The M-Bus: A
Documentation" (m-bus.com, rev 4.8, chapter 6.5: ID 12345678, manufacturer PAD, water,
12.565 m³, max. volume flow 0.113 m³/h in storage 5, 218.37 kWh in tariff 2 unit 1) — as
recalled, its L field and checksum are self-consistent.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field as _Field
from pydantic import model_validator as _model_validator

from enmon import quantities as _quantities
from enmon.config import StrictModel as _StrictModel
from enmon.errors import DriverError
from gateway.profile import Profile as _Profile
from gateway.profile import Vector as _Vector

ACK = 0xE5
START_SHORT = 0x10
START_LONG = 0x68
STOP = 0x16

C_SND_NKE = 0x40
C_SND_UD = 0x53
C_REQ_UD2 = 0x5B
C_REQ_UD2_FCB = 0x7B
C_RSP_UD = 0x08

ADDR_SELECTED = 0xFD
ADDR_BROADCAST_ANSWER = 0xFE
ADDR_BROADCAST = 0xFF

CI_SELECT = 0x52
CI_RSP_LONG = 0x72
CI_RSP_SHORT = 0x7A

MEDIA: dict[int, str] = {
    0x00: "other", 0x02: "electricity", 0x03: "gas", 0x04: "heat (outlet)", 0x06: "hot water",
    0x07: "water", 0x0A: "cooling (outlet)", 0x0B: "cooling (inlet)", 0x0C: "heat (inlet)",
    0x0D: "heat/cooling", 0x16: "cold water",
}


class MbusFrameError(DriverError):
    """Bytes that are not a valid M-Bus frame (checksum, length, stop byte, garbage) or a
    record structure we refuse to read; the message says which."""


# --------------------------------------------------------------------------- link layer


@dataclass(frozen=True)
class Frame:
    kind: Literal["ack", "short", "control", "long"]
    c: int = 0
    a: int = 0
    ci: int | None = None
    data: bytes = b""


def short_frame(c: int, a: int) -> bytes:
    return bytes([START_SHORT, c, a, (c + a) & 0xFF, STOP])


def long_frame(c: int, a: int, ci: int, data: bytes = b"") -> bytes:
    if len(data) > 252:
        raise ValueError("an M-Bus long frame carries at most 252 data bytes")
    body = bytes([c, a, ci]) + data
    n = len(body)
    return bytes([START_LONG, n, n, START_LONG]) + body + bytes([sum(body) & 0xFF, STOP])


def snd_nke(a: int) -> bytes:
    """Link reset (primary) or, sent to FDh, deselect the selected slave."""
    return short_frame(C_SND_NKE, a)


def req_ud2(a: int, fcb: bool = False) -> bytes:
    return short_frame(C_REQ_UD2_FCB if fcb else C_REQ_UD2, a)


def frame_length(buf: bytes) -> int | None:
    """Bytes of the first frame in ``buf`` (from offset 0), or None while incomplete.

    Garbage at the start is reported as its own length (1) so the caller's parser sees it
    and rejects it with a reason, instead of waiting forever.
    """
    if not buf:
        return None
    first = buf[0]
    if first == ACK:
        return 1
    if first == START_SHORT:
        return 5 if len(buf) >= 5 else None
    if first == START_LONG:
        if len(buf) < 2:
            return None
        return buf[1] + 6
    return 1


def decode_frame(raw: bytes) -> Frame:
    """One complete frame → Frame; MbusFrameError with the reason otherwise."""
    if raw == bytes([ACK]):
        return Frame("ack")
    if not raw:
        raise MbusFrameError("empty answer")
    if raw[0] == START_SHORT:
        if len(raw) != 5:
            raise MbusFrameError(f"short frame of {len(raw)} bytes (5 expected): {raw.hex()}")
        if raw[4] != STOP:
            raise MbusFrameError(f"short frame without stop byte 16h: {raw.hex()}")
        if (raw[1] + raw[2]) & 0xFF != raw[3]:
            raise MbusFrameError(f"short frame checksum {raw[3]:02X}h, bytes sum to "
                                 f"{(raw[1] + raw[2]) & 0xFF:02X}h: {raw.hex()}")
        return Frame("short", raw[1], raw[2])
    if raw[0] == START_LONG:
        if len(raw) < 9:
            raise MbusFrameError(f"long frame cut at {len(raw)} bytes: {raw.hex()}")
        n = raw[1]
        if raw[2] != n or raw[3] != START_LONG:
            raise MbusFrameError(f"long frame header {raw[:4].hex()} is not 68 L L 68")
        if n < 3:
            raise MbusFrameError(f"long frame L={n} (at least 3: C A CI)")
        if len(raw) != n + 6:
            raise MbusFrameError(f"long frame L={n} needs {n + 6} bytes, got {len(raw)}")
        if raw[-1] != STOP:
            raise MbusFrameError(f"long frame without stop byte 16h: ...{raw[-4:].hex()}")
        body = raw[4 : 4 + n]
        if sum(body) & 0xFF != raw[-2]:
            raise MbusFrameError(f"long frame checksum {raw[-2]:02X}h, bytes sum to "
                                 f"{sum(body) & 0xFF:02X}h")
        kind: Literal["control", "long"] = "control" if n == 3 else "long"
        return Frame(kind, body[0], body[1], body[2], bytes(body[3:]))
    raise MbusFrameError(f"not an M-Bus frame (starts {raw[:8].hex()})")


# --------------------------------------------------------------------------- secondary address


def manufacturer_code(text: str) -> int:
    """Three letters → the 2-byte manufacturer code (EN 13757-3: 5 bits per letter, A=1)."""
    t = text.upper()
    if len(t) != 3 or not all("A" <= ch <= "Z" for ch in t):
        raise ValueError(f"manufacturer {text!r} must be three letters A-Z")
    return ((ord(t[0]) - 64) << 10) | ((ord(t[1]) - 64) << 5) | (ord(t[2]) - 64)


def manufacturer_text(code: int) -> str:
    return "".join(chr(((code >> s) & 0x1F) + 64) for s in (10, 5, 0))


@dataclass(frozen=True)
class SecondaryAddress:
    """The 8-byte secondary address. ``ident`` is 8 characters, digits or ``F`` wildcards
    (as printed on the nameplate, most significant first); ``manufacturer`` 0xFFFF,
    ``version`` and ``medium`` 0xFF match anything."""

    ident: str
    manufacturer: int = 0xFFFF
    version: int = 0xFF
    medium: int = 0xFF

    def __post_init__(self) -> None:
        if len(self.ident) != 8 or any(c not in "0123456789Ff" for c in self.ident):
            raise ValueError(f"secondary id {self.ident!r} must be 8 digits (F = wildcard)")

    def to_bytes(self) -> bytes:
        return (bytes.fromhex(self.ident)[::-1] + self.manufacturer.to_bytes(2, "little")
                + bytes([self.version, self.medium]))

    @classmethod
    def from_bytes(cls, raw: bytes) -> SecondaryAddress:
        if len(raw) != 8:
            raise MbusFrameError(f"secondary address of {len(raw)} bytes (8 expected)")
        return cls(raw[3::-1].hex().upper(), int.from_bytes(raw[4:6], "little"), raw[6], raw[7])

    @classmethod
    def parse(cls, text: str) -> SecondaryAddress:
        """``12345678`` or ``12345678.PAD.01.07`` (id.manufacturer.version.medium)."""
        parts = text.split(".")
        ident = parts[0]
        man = manufacturer_code(parts[1]) if len(parts) > 1 and parts[1] else 0xFFFF
        ver = int(parts[2], 16) if len(parts) > 2 else 0xFF
        med = int(parts[3], 16) if len(parts) > 3 else 0xFF
        return cls(ident.upper(), man, ver, med)

    def matches(self, meter: SecondaryAddress) -> bool:
        """Does the meter with address ``meter`` answer a selection with this pattern?"""
        digits = all(p in ("F", m) for p, m in zip(self.ident.upper(), meter.ident, strict=True))
        return (digits and self.manufacturer in (0xFFFF, meter.manufacturer)
                and self.version in (0xFF, meter.version) and self.medium in (0xFF, meter.medium))


def select_request(address: SecondaryAddress) -> bytes:
    return long_frame(C_SND_UD, ADDR_SELECTED, CI_SELECT, address.to_bytes())


def parse_select_request(frame: Frame) -> SecondaryAddress | None:
    """The pattern of a selection frame, or None if ``frame`` is not one."""
    if (frame.kind == "long" and frame.c in (C_SND_UD, 0x73) and frame.a == ADDR_SELECTED
            and frame.ci == CI_SELECT and len(frame.data) == 8):
        return SecondaryAddress.from_bytes(frame.data)
    return None


Probe = Literal["none", "one", "collision"]


def wildcard_search(probe: Callable[[str], Probe], *, limit: int = 10_000) -> list[str]:
    """Every meter id on the bus, by the standard's digit-by-digit wildcard search.

    ``probe(ident)`` selects with the 8-character pattern and reports no answer, one valid
    E5, or a collision (garbled answer). Bounded by ``limit`` probes.
    """
    found: list[str] = []
    count = 0

    def walk(prefix: str) -> None:
        nonlocal count
        for d in "0123456789":
            count += 1
            if count > limit:
                raise MbusFrameError(f"wildcard search gave up after {limit} selections")
            pattern = (prefix + d).ljust(8, "F")
            got = probe(pattern)
            if got == "none":
                continue
            if got == "one" and len(prefix) + 1 == 8:
                found.append(pattern)
            elif got == "one":
                # one meter below this prefix: finish the digits to learn its id
                walk(prefix + d)
            elif len(prefix) + 1 < 8:
                walk(prefix + d)

    walk("")
    return found


# --------------------------------------------------------------------------- records

#: DIF data field → (bytes, kind)
DATA_FIELDS: dict[int, tuple[int, str]] = {
    0x0: (0, "none"), 0x1: (1, "int"), 0x2: (2, "int"), 0x3: (3, "int"), 0x4: (4, "int"),
    0x5: (4, "real"), 0x6: (6, "int"), 0x7: (8, "int"), 0x8: (0, "selection"),
    0x9: (1, "bcd"), 0xA: (2, "bcd"), 0xB: (3, "bcd"), 0xC: (4, "bcd"), 0xD: (-1, "variable"),
    0xE: (6, "bcd"),
}
FUNCTIONS = ("instantaneous", "maximum", "minimum", "error")


@dataclass(frozen=True)
class Vif:
    """What a VIF means: quantity kind, unit and the power of ten on the raw value."""

    description: str
    unit: str
    exponent: int = 0


def _time_unit(nn: int) -> str:
    return ("s", "min", "h", "d")[nn]


def primary_vif(vif: int) -> Vif | None:
    """EN 13757-3 table of primary VIFs (E bit stripped), the ones a heat meter sends."""
    v = vif & 0x7F
    n3, n2 = v & 0x07, v & 0x03
    if v <= 0x07:
        return Vif("energy", "Wh", n3 - 3)
    if v <= 0x0F:
        return Vif("energy", "J", n3)
    if v <= 0x17:
        return Vif("volume", "m3", n3 - 6)
    if v <= 0x1F:
        return Vif("mass", "kg", n3 - 3)
    if v <= 0x23:
        return Vif("on time", _time_unit(n2))
    if v <= 0x27:
        return Vif("operating time", _time_unit(n2))
    if v <= 0x2F:
        return Vif("power", "W", n3 - 3)
    if v <= 0x37:
        return Vif("power", "J/h", n3)
    if v <= 0x3F:
        return Vif("volume flow", "m3/h", n3 - 6)
    if v <= 0x47:
        return Vif("volume flow", "m3/min", n3 - 7)
    if v <= 0x4F:
        return Vif("volume flow", "m3/s", n3 - 9)
    if v <= 0x57:
        return Vif("mass flow", "kg/h", n3 - 3)
    if v <= 0x5B:
        return Vif("flow temperature", "°C", n2 - 3)
    if v <= 0x5F:
        return Vif("return temperature", "°C", n2 - 3)
    if v <= 0x63:
        return Vif("temperature difference", "K", n2 - 3)
    if v <= 0x67:
        return Vif("external temperature", "°C", n2 - 3)
    if v <= 0x6B:
        return Vif("pressure", "bar", n2 - 3)
    if v == 0x6C:
        return Vif("date", "date")
    if v == 0x6D:
        return Vif("date and time", "datetime")
    if v == 0x6E:
        return Vif("units for H.C.A.", "1")
    if 0x70 <= v <= 0x73:
        return Vif("averaging duration", _time_unit(n2))
    if 0x74 <= v <= 0x77:
        return Vif("actuality duration", _time_unit(n2))
    if v == 0x78:
        return Vif("fabrication number", "1")
    if v == 0x79:
        return Vif("enhanced identification", "1")
    if v == 0x7A:
        return Vif("bus address", "1")
    return None


def fb_vif(vife: int) -> Vif | None:
    """The FBh extension table entries heat meters use (MWh, GJ, large volumes, MW)."""
    v = vife & 0x7F
    if v <= 0x01:
        return Vif("energy", "MWh", (v & 1) - 1)
    if 0x08 <= v <= 0x09:
        return Vif("energy", "GJ", (v & 1) - 1)
    if 0x10 <= v <= 0x11:
        return Vif("volume", "m3", (v & 1) + 2)
    if 0x28 <= v <= 0x29:
        return Vif("power", "MW", (v & 1) - 1)
    if 0x30 <= v <= 0x31:
        return Vif("power", "GJ/h", (v & 1) - 1)
    return None


@dataclass(frozen=True)
class Record:
    """One data record. ``value`` is the raw number times 10^exponent, in ``unit``."""

    dif: int
    vif: int
    description: str
    unit: str
    value: float | str | None
    storage: int = 0
    tariff: int = 0
    subunit: int = 0
    function: str = "instantaneous"
    vifes: tuple[int, ...] = ()
    raw: bytes = b""


@dataclass(frozen=True)
class Response:
    """A decoded RSP_UD (CI 72h)."""

    address: int
    secondary: SecondaryAddress
    access: int
    status: int
    records: list[Record] = field(default_factory=list)

    @property
    def manufacturer(self) -> str:
        return manufacturer_text(self.secondary.manufacturer)

    @property
    def medium(self) -> str:
        return MEDIA.get(self.secondary.medium, f"medium {self.secondary.medium:02X}h")


def bcd_value(raw: bytes) -> int:
    """BCD, least significant byte first; a top nibble F makes it negative (EN 13757-3)."""
    digits = raw[::-1].hex().upper()
    negative = digits[0] == "F"
    if negative:
        digits = digits[1:]
    if not digits.isdigit():
        raise MbusFrameError(f"BCD field {raw.hex()} holds a non-decimal digit")
    return -int(digits) if negative else int(digits)


def _data_value(kind: str, raw: bytes) -> float | str | None:
    if kind == "none":
        return None
    if kind == "int":
        return int.from_bytes(raw, "little", signed=True)
    if kind == "real":
        x = float(struct.unpack("<f", raw)[0])
        if not math.isfinite(x):
            raise MbusFrameError(f"real field {raw.hex()} is not a finite number")
        return x
    if kind == "bcd":
        return bcd_value(raw)
    return raw[::-1].decode("latin-1")  # variable length: ASCII, sent last character first


def _century(year: int) -> int:
    """The 7-bit year of types F/G as libmbus reads it: 0..80 → 2000s, else 1900 + year."""
    return 2000 + year if year <= 80 else 1900 + year


def _date_text(vif: Vif, raw: bytes) -> str:
    if vif.unit == "date" and len(raw) == 2:  # type G
        day, month = raw[0] & 0x1F, raw[1] & 0x0F
        year = ((raw[0] & 0xE0) >> 5) | ((raw[1] & 0xF0) >> 1)
        return f"{_century(year):04d}-{month:02d}-{day:02d}"
    if vif.unit == "datetime" and len(raw) == 4:  # type F
        minute, hour, day = raw[0] & 0x3F, raw[1] & 0x1F, raw[2] & 0x1F
        month = raw[3] & 0x0F
        year = ((raw[2] & 0xE0) >> 5) | ((raw[3] & 0xF0) >> 1)
        return f"{_century(year):04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}"
    return raw.hex()


def iter_records(data: bytes) -> Iterator[Record]:
    """The data records after the fixed header; MbusFrameError on a structure we refuse."""
    i = 0
    while i < len(data):
        dif = data[i]
        i += 1
        if dif == 0x2F:  # idle filler
            continue
        if dif in (0x0F, 0x1F):  # manufacturer-specific data follows (to the end)
            return
        if dif & 0x0F == 0x0F:
            raise MbusFrameError(f"special DIF {dif:02X}h at byte {i - 1}")
        storage = (dif >> 6) & 1
        function = FUNCTIONS[(dif >> 4) & 0x03]
        tariff = subunit = 0
        ext, n = dif & 0x80, 0
        while ext:
            if i >= len(data):
                raise MbusFrameError("record cut inside its DIFEs")
            if n >= 10:
                raise MbusFrameError("more than 10 DIFEs in one record")
            dife = data[i]
            i += 1
            storage |= (dife & 0x0F) << (1 + 4 * n)
            tariff |= ((dife >> 4) & 0x03) << (2 * n)
            subunit |= ((dife >> 6) & 0x01) << n
            ext, n = dife & 0x80, n + 1
        if i >= len(data):
            raise MbusFrameError("record cut before its VIF")
        vif_byte = data[i]
        i += 1
        vifes: list[int] = []
        ext = vif_byte & 0x80
        while ext:
            if i >= len(data):
                raise MbusFrameError("record cut inside its VIFEs")
            if len(vifes) >= 10:
                raise MbusFrameError("more than 10 VIFEs in one record")
            vifes.append(data[i])
            ext = data[i] & 0x80
            i += 1
        size, kind = DATA_FIELDS[dif & 0x0F]
        if kind == "variable":
            if i >= len(data):
                raise MbusFrameError("variable-length record cut before its length byte")
            lvar = data[i]
            i += 1
            if lvar > 0xBF:
                raise MbusFrameError(f"variable-length LVAR {lvar:02X}h not supported")
            size = lvar
        if i + size > len(data):
            raise MbusFrameError(f"record DIF {dif:02X}h needs {size} bytes, "
                                 f"{len(data) - i} left")
        raw = bytes(data[i : i + size])
        i += size
        if vif_byte == 0xFB and vifes:
            vif = fb_vif(vifes[0])
            rest = vifes[1:]
        elif vif_byte in (0xFD, 0xFF, 0x7F, 0x7C, 0xFC):
            vif, rest = None, vifes
        else:
            vif, rest = primary_vif(vif_byte), vifes
        value: float | str | None
        if vif is None:
            yield Record(dif, vif_byte, "unknown", "", None, storage, tariff, subunit,
                         function, tuple(vifes), raw)
            continue
        if vif.unit in ("date", "datetime") and kind == "int":
            value = _date_text(vif, raw)
        else:
            v = _data_value(kind, raw)
            if isinstance(v, int | float) and not isinstance(v, bool):
                value = v * 10.0 ** vif.exponent if vif.exponent else v
                if isinstance(value, float):
                    value = round(value, 12)
            else:
                value = v
        yield Record(dif, vif_byte, vif.description, vif.unit, value, storage, tariff,
                     subunit, function, tuple(rest), raw)


def parse_response(frame: Frame) -> Response:
    """A long RSP_UD frame with CI 72h → Response (header + records)."""
    if frame.kind != "long":
        raise MbusFrameError(f"expected a long RSP_UD frame, got a {frame.kind} frame")
    if frame.c & 0xCF != C_RSP_UD:
        raise MbusFrameError(f"control field {frame.c:02X}h is not RSP_UD (08h)")
    if frame.ci != CI_RSP_LONG:
        raise MbusFrameError(f"CI {frame.ci:02X}h: only variable data with long header "
                             "(72h) is read")
    if len(frame.data) < 12:
        raise MbusFrameError(f"RSP_UD header of {len(frame.data)} bytes (12 expected)")
    sec = SecondaryAddress.from_bytes(frame.data[:8])
    if not sec.ident.isdigit():
        raise MbusFrameError(f"meter id {sec.ident} is not BCD")
    records = list(iter_records(frame.data[12:]))
    return Response(frame.a, sec, frame.data[8], frame.data[9], records)


# --------------------------------------------------------------------------- encoding (simulator)


def encode_bcd(value: int, size: int) -> bytes:
    if value < 0 or value >= 10 ** (2 * size):
        raise ValueError(f"{value} does not fit {2 * size} BCD digits")
    return bytes.fromhex(f"{value:0{2 * size}d}")[::-1]


def response_frame(address: int, secondary: SecondaryAddress, access: int, status: int,
                   records: bytes, *, c: int = C_RSP_UD) -> bytes:
    header = secondary.to_bytes() + bytes([access & 0xFF, status, 0, 0])
    return long_frame(c, address, CI_RSP_LONG, header + records)


# --------------------------------------------------------------------------- mapping


#: unit → (canonical unit of the vocabulary, factor to it)
TO_CANONICAL: dict[str, tuple[str, float]] = {
    "Wh": ("GJ", 3.6e-6), "J": ("GJ", 1e-9), "MWh": ("GJ", 3.6), "GJ": ("GJ", 1.0),
    "m3": ("m3", 1.0), "W": ("kW", 1e-3), "J/h": ("kW", 1 / 3.6e6), "MW": ("kW", 1e3),
    "GJ/h": ("kW", 1e6 / 3600), "m3/h": ("m3/h", 1.0), "m3/min": ("m3/h", 60.0),
    "m3/s": ("m3/h", 3600.0), "°C": ("°C", 1.0), "K": ("K", 1.0),
    "s": ("h", 1 / 3600), "min": ("h", 1 / 60), "h": ("h", 1.0), "d": ("h", 24.0),
}

#: record description → quantity of ``enmon.quantities`` (heat meter)
QUANTITY_OF: dict[str, str] = {
    "energy": "heat_energy_gj", "volume": "water_volume_m3", "power": "heat_power_kw",
    "volume flow": "water_flow_m3_h", "flow temperature": "supply_temp_c",
    "return temperature": "return_temp_c",
}


def canonical(record: Record) -> tuple[str, float]:
    """A numeric record's value in the canonical unit of its quantity."""
    if not isinstance(record.value, int | float):
        raise MbusFrameError(f"record {record.description!r} has no number")
    unit, factor = TO_CANONICAL.get(record.unit, (record.unit, 1.0))
    return unit, record.value * factor


# --------------------------------------------------------------------------- profile

Function = Literal["instantaneous", "maximum", "minimum", "error"]


class MbusItem(_StrictModel):
    """Which data record of the answer carries a quantity: its kind (the VIF's description)
    and where it sits (storage 0 = current value, tariff, subunit, function)."""

    record: str
    storage: int = _Field(0, ge=0)
    tariff: int = _Field(0, ge=0)
    subunit: int = _Field(0, ge=0)
    function: Function = "instantaneous"
    mark: Literal["R", "U", "I"] = "U"


class MbusVector(_Vector):
    #: the data records (hex) after the 12-byte header of an RSP_UD
    records: str


class MbusProfile(_Profile[MbusItem, MbusVector]):
    protocol: Literal["mbus"]
    medium: int = _Field(0x04, ge=0, le=0xFF)

    @_model_validator(mode="after")
    def _units(self) -> MbusProfile:
        for q, item in self.quantities.items():
            if QUANTITY_OF.get(item.record) not in (None, q) and not q.startswith(
                    ("heat_", "cooling_")):
                raise ValueError(f"quantity {q!r}: record {item.record!r} measures "
                                 f"{QUANTITY_OF[item.record]}")
        return self


def find_record(records: list[Record], item: MbusItem) -> Record | None:
    """The record a profile item names. Records with VIFEs are never taken: a VIFE may
    change the meaning (per time unit, accumulation, limit values) in ways we do not read."""
    for r in records:
        if (not r.vifes and r.description == item.record and r.storage == item.storage
                and r.tariff == item.tariff and r.subunit == item.subunit
                and r.function == item.function):
            return r
    return None


def item_value(profile: MbusProfile, quantity: str, records: list[Record]) -> float:
    """The quantity's value in its canonical unit, from the answer's records."""
    item = profile.quantities[quantity]
    rec = find_record(records, item)
    if rec is None:
        raise MbusFrameError(f"no {item.record!r} record (storage {item.storage}, tariff "
                             f"{item.tariff}, subunit {item.subunit}) for {quantity}")
    unit, value = canonical(rec)
    want = _quantities.get(quantity).unit
    if unit != want:
        raise MbusFrameError(f"{quantity} is in {want}; the meter sent {rec.unit}")
    return value
