"""Modbus RTU and TCP (MBAP) framing for the four read functions a meter or a plant
controller needs: registers (FC 3 holding, FC 4 input) and bits (FC 1 coils, FC 2
discrete inputs — breaker, pump and alarm states).

Pure byte-level code with no I/O, shared by the gateway's bus master and by
firmware_sim's slaves, so both sides can be tested frame by frame against the
worked examples in the Modbus specification (MODBUS over Serial Line V1.02,
MODBUS Application Protocol V1.1b3). Owning the framing, rather than driving
pymodbus' client, is what lets the bus scheduler enforce per-device timeouts,
retries and inter-frame silence on a half-duplex line, and count CRC errors and
garbage separately from timeouts.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from enmon.errors import DriverError

Function = Literal["holding", "input", "coil", "discrete"]
FUNCTION_CODE: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
CODE_FUNCTION: dict[int, Function] = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
BIT_CODES = frozenset({1, 2})
MAX_READ = 125  # registers per read request (spec: 1..125 for FC 3/4)
MAX_READ_BITS = 2000  # bits per read request (spec: 1..2000 for FC 1/2, §6.1, §6.2)
#: exceptions that mean "alive but not now" (acknowledge, server device busy): worth a retry
BUSY_CODES = frozenset({5, 6})


def max_count(function: str) -> int:
    """The largest read the spec allows for ``function`` (registers or bits)."""
    return MAX_READ_BITS if function in ("coil", "discrete") else MAX_READ


def bit_bytes(count: int) -> int:
    """Bytes that carry ``count`` bits in a FC 1/2 answer (LSB of the first byte = first bit)."""
    return (count + 7) // 8

EXCEPTIONS: dict[int, str] = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusException(DriverError):
    """The device answered with an exception response (it is alive, the request is wrong)."""

    def __init__(self, unit: int, function: int, code: int) -> None:
        self.unit, self.function, self.code = unit, function, code
        super().__init__(f"unit {unit} function {function}: exception {code} "
                         f"({EXCEPTIONS.get(code, 'unknown')})")


class FrameError(DriverError):
    """Bytes on the line that are not a valid answer (CRC error, garbage, wrong unit)."""


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def check_crc(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    unit: int
    function: Function
    address: int
    count: int

    def pdu(self) -> bytes:
        limit = max_count(self.function)
        if not 1 <= self.count <= limit:
            raise ValueError(f"count {self.count} outside 1..{limit}")
        return struct.pack(">BHH", FUNCTION_CODE[self.function], self.address, self.count)


# --------------------------------------------------------------------------- RTU


def rtu_request(req: ReadRequest) -> bytes:
    return with_crc(bytes([req.unit]) + req.pdu())


def rtu_response_length(head: bytes) -> int | None:
    """Total length of the RTU answer starting with ``head`` (≥ 3 bytes), None if unknown yet."""
    if len(head) < 3:
        return None
    fc = head[1]
    if fc & 0x80:
        return 5
    return 3 + head[2] + 2


def parse_rtu_response(req: ReadRequest, frame: bytes) -> list[int]:
    """Validate an RTU answer to ``req`` and return its registers (or bits, as 0/1).

    Raises:
        FrameError: CRC error, wrong unit, wrong function or wrong length.
        ModbusException: a well-formed exception response.
    """
    if not check_crc(frame):
        raise FrameError(f"unit {req.unit}: CRC error in {frame.hex()}")
    return _parse_pdu(req, frame[0], frame[1:-2])


# --------------------------------------------------------------------------- ASCII


def lrc(data: bytes) -> int:
    """Longitudinal redundancy check of Modbus ASCII: two's complement of the byte sum
    (MODBUS over Serial Line V1.02 §2.5.2.2, §6.2.1)."""
    return -sum(data) & 0xFF


def ascii_encode(body: bytes) -> bytes:
    """``unit + PDU`` -> ``:`` + upper-case hex of body and LRC + CR LF."""
    return b":" + (body + bytes([lrc(body)])).hex().upper().encode() + b"\r\n"


def ascii_request(req: ReadRequest) -> bytes:
    return ascii_encode(bytes([req.unit]) + req.pdu())


def ascii_frame_length(buf: bytes) -> int | None:
    """Bytes up to and including the CR LF that ends the first frame (None: not yet)."""
    start = buf.find(b":")
    if start < 0:
        return None
    end = buf.find(b"\r\n", start)
    return None if end < 0 else end + 2


def ascii_decode(frame: bytes) -> bytes:
    """A received ASCII frame -> ``unit + PDU`` with its LRC checked.

    Raises:
        FrameError: no ``:``, non-hex characters, odd length or an LRC mismatch.
    """
    start = frame.find(b":")
    text = frame[start + 1 :].rstrip(b"\r\n") if start >= 0 else b""
    try:
        raw = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise FrameError(f"not a Modbus ASCII frame: {frame[:40]!r}") from None
    if len(raw) < 3:
        raise FrameError(f"Modbus ASCII frame too short: {frame[:40]!r}")
    if lrc(raw[:-1]) != raw[-1]:
        raise FrameError(f"LRC error in {frame[:40]!r} (want {lrc(raw[:-1]):02X})")
    return raw[:-1]


def parse_ascii_response(req: ReadRequest, frame: bytes) -> list[int]:
    """Validate an ASCII answer to ``req`` and return its registers (or bits)."""
    body = ascii_decode(frame)
    return _parse_pdu(req, body[0], body[1:])


# --------------------------------------------------------------------------- TCP (MBAP)


def tcp_request(req: ReadRequest, transaction: int) -> bytes:
    pdu = req.pdu()
    return struct.pack(">HHHB", transaction & 0xFFFF, 0, len(pdu) + 1, req.unit) + pdu


def tcp_frame_length(head: bytes) -> int | None:
    """Total length of an MBAP frame starting with ``head`` (≥ 6 bytes)."""
    if len(head) < 6:
        return None
    return 6 + int.from_bytes(head[4:6], "big")


def parse_tcp_response(req: ReadRequest, transaction: int, frame: bytes) -> list[int]:
    tid, proto, length, unit = struct.unpack(">HHHB", frame[:7])
    if tid != transaction & 0xFFFF or proto != 0 or length != len(frame) - 6:
        raise FrameError(f"unit {req.unit}: bad MBAP header {frame[:7].hex()} "
                         f"(want tid {transaction})")
    return _parse_pdu(req, unit, frame[7:])


def _parse_pdu(req: ReadRequest, unit: int, pdu: bytes) -> list[int]:
    if unit != req.unit:
        raise FrameError(f"answer from unit {unit}, asked unit {req.unit}")
    if not pdu:
        raise FrameError(f"unit {req.unit}: empty PDU")
    fc = pdu[0]
    want = FUNCTION_CODE[req.function]
    if fc == want | 0x80 and len(pdu) == 2:
        raise ModbusException(req.unit, want, pdu[1])
    if fc != want:
        raise FrameError(f"unit {req.unit}: function {fc} in answer, asked {want}")
    if want in BIT_CODES:
        n = bit_bytes(req.count)
        if len(pdu) < 2 or pdu[1] != n or len(pdu) != 2 + n:
            raise FrameError(f"unit {req.unit}: {len(pdu)}-byte PDU for {req.count} bits")
        return unpack_bits(pdu[2:], req.count)
    if len(pdu) < 2 or pdu[1] != 2 * req.count or len(pdu) != 2 + 2 * req.count:
        raise FrameError(f"unit {req.unit}: {len(pdu)}-byte PDU for {req.count} registers")
    return list(struct.unpack(f">{req.count}H", pdu[2:]))


# --------------------------------------------------------------------------- slave side


def parse_request_pdu(pdu: bytes) -> tuple[int, int, int]:
    """(function code, address, count) of a read request PDU; raises ValueError if not 5 bytes."""
    if len(pdu) != 5:
        raise ValueError("a read request PDU is 5 bytes")
    fc, address, count = struct.unpack(">BHH", pdu)
    return fc, address, count


def response_pdu(fc: int, registers: list[int]) -> bytes:
    return struct.pack(f">BB{len(registers)}H", fc, 2 * len(registers), *registers)


def unpack_bits(data: bytes, count: int) -> list[int]:
    """FC 1/2 answer bytes -> ``count`` bits as 0/1, first bit = LSB of the first byte."""
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def pack_bits(bits: list[int]) -> bytes:
    """The inverse of :func:`unpack_bits`; unused high bits of the last byte are 0 (spec)."""
    out = bytearray(bit_bytes(len(bits)))
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def bits_response_pdu(fc: int, bits: list[int]) -> bytes:
    data = pack_bits(bits)
    return bytes([fc, len(data)]) + data


def exception_pdu(fc: int, code: int) -> bytes:
    return bytes([fc | 0x80, code])


# --------------------------------------------------------------------------- line timing


def char_time(baud: int, bits_per_char: int = 11) -> float:
    """Seconds per character: start + 8 data + parity/stop = 11 bits (serial line spec 2.5.1)."""
    return bits_per_char / baud


def silent_interval(baud: int) -> float:
    """The 3.5-character inter-frame silence; fixed at 1.75 ms above 19200 baud (spec 2.5.1.1)."""
    return 3.5 * char_time(baud) if baud <= 19200 else 0.00175


def rtu_wire_bytes(count: int) -> tuple[int, int]:
    """(request, response) bytes on the line for one read of ``count`` registers."""
    return 8, 5 + 2 * count


def ascii_wire_bytes(count: int) -> tuple[int, int]:
    """ASCII sends every byte as two characters plus ``:`` and CR LF."""
    return 17, 11 + 4 * count


def tcp_wire_bytes(count: int) -> tuple[int, int]:
    return 12, 9 + 2 * count
