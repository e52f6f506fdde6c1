"""Modbus register writes: FC 6 (write single register) and FC 16 (write multiple registers).

Pure byte-level code with no I/O, shared by the gateway's command path
(:mod:`gateway.commands`) and firmware_sim's slaves, on the three framings the reads
use (RTU, ASCII, MBAP). Frames as in MODBUS Application Protocol V1.1b3 §6.6 and
§6.12: the spec's own examples are the tests' vectors —
FC 6 ``06 0001 0003`` answered by its echo, FC 16 ``10 0001 0002 04 000A 0102``
answered ``10 0001 0002``. Kept apart from :mod:`gateway.modbus_frames` (reads) because
a write is only ever sent by an authorised command, never by the poller.
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


def expected_response(request: bytes) -> bytes:
    """A write's normal answer: FC 6 echoes the request, FC 16 its first five bytes."""
    return request if request[0] == WRITE_SINGLE else request[:5]


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
    """An RTU write answer is 8 bytes (unit, fc, address, value/count, CRC); an exception 5."""
    if len(head) < 2:
        return None
    return 5 if head[1] & 0x80 else 8


# --------------------------------------------------------------------------- slave side


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the RTU request at the start of ``buf`` (None: not enough bytes yet).

    Reads and FC 6 are 8 bytes; FC 15/16 carry a byte count after address and quantity.
    """
    if len(buf) < 2:
        return None
    if buf[1] in (15, WRITE_MULTIPLE):
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
