"""Modbus writes: FC 5 / FC 15 (write single / multiple coils) and FC 6 / FC 16 (write
single / multiple registers).

Pure byte-level code with no I/O, shared by the gateway's command path
(:mod:`gateway.commands`) and firmware_sim's slaves, on the three framings the reads
use (RTU, ASCII, MBAP). Frames as in MODBUS Application Protocol V1.1b3 §6.5, §6.6,
§6.11 and §6.12: the spec's own examples are the tests' vectors —
FC 5 ``05 00AC FF00`` (coil 173 on) answered by its echo, FC 6 ``06 0001 0003`` answered
by its echo, FC 15 ``0F 0013 000A 02 CD01`` (coils 20..29) answered ``0F 0013 000A``,
FC 16 ``10 0001 0002 04 000A 0102`` answered ``10 0001 0002``. An FC 5 value other than
FF00h (on) or 0000h (off) is an illegal data value (exception 3, §6.5). Kept apart from
:mod:`gateway.modbus_frames` (reads) because a write is only ever sent by an authorised
command, never by the poller.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Literal

from gateway import modbus_frames as mf

WRITE_SINGLE = 6
WRITE_MULTIPLE = 16
WRITE_CODES = frozenset({WRITE_SINGLE, WRITE_MULTIPLE})
MAX_WRITE = 123  # registers per FC 16 request (spec §6.12: 1..123)
WRITE_COIL = 5
WRITE_COILS = 15
COIL_WRITE_CODES = frozenset({WRITE_COIL, WRITE_COILS})
MAX_WRITE_COILS = 1968  # coils per FC 15 request (spec §6.11: 1..0x07B0)
COIL_ON, COIL_OFF = 0xFF00, 0x0000  # the FC 5 values (spec §6.5)
Framing = Literal["rtu", "tcp", "ascii"]


def write_pdu(address: int, words: list[int], function: int | None = None) -> bytes:
    """The request PDU: FC 6 for one register (unless ``function`` says 16), else FC 16."""
    fc = function or (WRITE_SINGLE if len(words) == 1 else WRITE_MULTIPLE)
    if not 0 <= address <= 0xFFFF or any(not 0 <= w <= 0xFFFF for w in words):
        raise ValueError("address and registers are 16-bit")
    if fc == WRITE_SINGLE:
        if len(words) != 1:
            raise ValueError("FC 6 writes exactly one register")
        return struct.pack(">BHH", fc, address, words[0])
    if fc != WRITE_MULTIPLE or not 1 <= len(words) <= MAX_WRITE:
        raise ValueError(f"FC 16 writes 1..{MAX_WRITE} registers")
    return struct.pack(f">BHHB{len(words)}H", fc, address, len(words), 2 * len(words), *words)


def coil_write_pdu(address: int, bits: list[int], function: int | None = None) -> bytes:
    """The request PDU writing ``bits`` (0/1) from coil ``address``: FC 5 for one coil
    (unless ``function`` says 15), else FC 15 (bits packed LSB first, as FC 1 reads them)."""
    fc = function or (WRITE_COIL if len(bits) == 1 else WRITE_COILS)
    if not 0 <= address <= 0xFFFF or any(b not in (0, 1) for b in bits):
        raise ValueError("a coil address is 16-bit and a coil is 0 or 1")
    if fc == WRITE_COIL:
        if len(bits) != 1:
            raise ValueError("FC 5 writes exactly one coil")
        return struct.pack(">BHH", fc, address, COIL_ON if bits[0] else COIL_OFF)
    if fc != WRITE_COILS or not 1 <= len(bits) <= MAX_WRITE_COILS \
            or address + len(bits) > 0x10000:
        raise ValueError(f"FC 15 writes 1..{MAX_WRITE_COILS} coils within 0..65535")
    data = mf.pack_bits(bits)
    return struct.pack(">BHHB", fc, address, len(bits), len(data)) + data


def parse_coil_write_pdu(pdu: bytes) -> tuple[int, int, list[int]]:
    """(function code, address, bits) of an FC 5 / FC 15 request.

    Raises:
        ValueError: malformed, or an FC 5 value that is neither FF00h nor 0000h — the
        slave answers exception 3 (illegal data value), as the spec says.
    """
    if not pdu or pdu[0] not in COIL_WRITE_CODES:
        raise ValueError("not a coil write")
    if pdu[0] == WRITE_COIL:
        if len(pdu) != 5:
            raise ValueError("an FC 5 request PDU is 5 bytes")
        _, address, value = struct.unpack(">BHH", pdu)
        if value not in (COIL_ON, COIL_OFF):
            raise ValueError(f"FC 5 value {value:04X}h is neither FF00h nor 0000h")
        return WRITE_COIL, address, [1 if value == COIL_ON else 0]
    if len(pdu) < 6:
        raise ValueError("FC 15 request too short")
    _, address, count, nbytes = struct.unpack(">BHHB", pdu[:6])
    if not 1 <= count <= MAX_WRITE_COILS or nbytes != mf.bit_bytes(count) \
            or len(pdu) != 6 + nbytes:
        raise ValueError(f"FC 15 request with count {count}, {nbytes} bytes, {len(pdu)} long")
    return WRITE_COILS, address, mf.unpack_bits(pdu[6:], count)


def expected_response(request: bytes) -> bytes:
    """A write's normal answer: FC 5 and FC 6 echo the request, FC 15 and FC 16 its first
    five bytes (function, address, quantity)."""
    return request if request[0] in (WRITE_COIL, WRITE_SINGLE) else request[:5]


def check_write_response(unit: int, request: bytes, got_unit: int, pdu: bytes) -> None:
    """Raise unless ``pdu`` is the normal answer to ``request`` from ``unit``.

    Raises:
        mf.FrameError: another unit, another function, or an echo that differs.
        mf.ModbusException: an exception answer (illegal address, value, busy …).
    """
    if got_unit != unit:
        raise mf.FrameError(f"answer from unit {got_unit}, asked unit {unit}")
    fc = request[0]
    if len(pdu) == 2 and pdu[0] == fc | 0x80:
        raise mf.ModbusException(unit, fc, pdu[1])
    if pdu != expected_response(request):
        raise mf.FrameError(f"unit {unit}: write answer {pdu.hex()} is not the echo "
                            f"{expected_response(request).hex()}")


# --------------------------------------------------------------------------- framing


def frame(framing: Framing, unit: int, pdu: bytes, tid: int = 0) -> bytes:
    """Wrap a PDU for the line: RTU (CRC), ASCII (LRC) or MBAP (transaction ``tid``)."""
    if framing == "rtu":
        return mf.with_crc(bytes([unit]) + pdu)
    if framing == "ascii":
        return mf.ascii_encode(bytes([unit]) + pdu)
    return struct.pack(">HHHB", tid & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


def unframe(framing: Framing, raw: bytes, tid: int = 0) -> tuple[int, bytes]:
    """(unit, PDU) of a received frame, its check (CRC, LRC, MBAP header) verified."""
    if framing == "rtu":
        if not mf.check_crc(raw):
            raise mf.FrameError(f"CRC error in {raw.hex()}")
        return raw[0], raw[1:-2]
    if framing == "ascii":
        body = mf.ascii_decode(raw)
        return body[0], body[1:]
    if len(raw) < 8:
        raise mf.FrameError(f"MBAP frame too short: {raw.hex()}")
    got_tid, proto, length, unit = struct.unpack(">HHHB", raw[:7])
    if got_tid != tid & 0xFFFF or proto != 0 or length != len(raw) - 6:
        raise mf.FrameError(f"bad MBAP header {raw[:7].hex()} (want tid {tid})")
    return unit, raw[7:]


def response_length(framing: Framing) -> Callable[[bytes], int | None]:
    """The answer-length function the link needs for a write on ``framing``."""
    if framing == "ascii":
        return mf.ascii_frame_length
    if framing == "tcp":
        return mf.tcp_frame_length
    return rtu_write_response_length


def rtu_write_response_length(head: bytes) -> int | None:
    """An RTU write answer (FC 5, 6, 15 or 16) is 8 bytes (unit, fc, address,
    value/quantity, CRC); an exception 5."""
    if len(head) < 2:
        return None
    return 5 if head[1] & 0x80 else 8


# --------------------------------------------------------------------------- slave side


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the RTU request at the start of ``buf`` (None: not enough bytes yet).

    Reads, FC 5 and FC 6 are 8 bytes; FC 15/16 carry a byte count after address and
    quantity.
    """
    if len(buf) < 2:
        return None
    if buf[1] in (WRITE_COILS, WRITE_MULTIPLE):
        return None if len(buf) < 7 else 9 + buf[6]
    return 8


def parse_write_pdu(pdu: bytes) -> tuple[int, int, list[int]]:
    """(function code, address, registers) of a write request; ValueError if malformed."""
    if not pdu or pdu[0] not in WRITE_CODES:
        raise ValueError("not a register write")
    if pdu[0] == WRITE_SINGLE:
        if len(pdu) != 5:
            raise ValueError("an FC 6 request PDU is 5 bytes")
        _, address, value = struct.unpack(">BHH", pdu)
        return WRITE_SINGLE, address, [value]
    if len(pdu) < 6:
        raise ValueError("FC 16 request too short")
    _, address, count, nbytes = struct.unpack(">BHHB", pdu[:6])
    if not 1 <= count <= MAX_WRITE or nbytes != 2 * count or len(pdu) != 6 + nbytes:
        raise ValueError(f"FC 16 request with count {count}, {nbytes} bytes, {len(pdu)} long")
    return WRITE_MULTIPLE, address, list(struct.unpack(f">{count}H", pdu[6:]))
