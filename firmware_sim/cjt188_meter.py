"""Simulated CJ/T 188 water, heat and gas meters on a pty (RS-485) or TCP link.

Several meters can share one bus, each at its 14-digit address and meter type, each
serving its profile's metering identifier (901F) with values from a dict or a callable,
in the profile's edition (``version``: the DI byte order) and unit codes (each item's
``unit``). A meter answers a read (C = 01h) of its identifier with 81h + DI + the echoed
SER + the value bytes; a read of another identifier with the abnormal answer C1h + SER +
ST; anything addressed to another meter or type it ignores, as a real meter on the bus
does. Faults: ``timeout``, ``garbage``, ``crc``, ``exception`` (abnormal answer) and
``address`` (a valid answer carrying another meter's address).

Why a separate server from the DL/T 645 one: the frames differ from the first bytes
(meter type, 7-byte address, no second 68h, no +33H), so a request of one protocol is
garbage to the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from firmware_sim.faults import Faults, corrupt
from firmware_sim.rtu import LineServer, Values, _values, feed_frames
from gateway import cjt188 as cj


@dataclass
class Meter:
    profile: cj.Cjt188Profile
    values: Values
    faults: Faults = field(default_factory=Faults)
    status: bytes = b"\x00\x00"  # ST1 ST2 sent in an abnormal answer


class Cjt188Server(LineServer):
    def __init__(self, meters: Mapping[str, Meter], *, link: Literal["pty", "tcp"] = "pty",
                 baud: int | None = None) -> None:
        super().__init__(link=link, baud=baud, silence=0.05)
        self.meters = dict(meters)

    def _answer(self, frame: cj.Frame) -> bytes | None:
        matching = [a for a, m in self.meters.items()
                    if cj.address_matches(frame.address, a)
                    and frame.meter_type in (0xAA, m.profile.type_byte)]
        if len(matching) != 1:
            return None  # nobody, or several meters whose answers would collide
        return self._answer_as(matching[0], frame)

    def _answer_as(self, addr: str, frame: cj.Frame) -> bytes | None:
        meter = self.meters[addr]
        p = meter.profile
        self.requests += 1
        fault = meter.faults.pick()
        if fault == "timeout":
            return None
        if fault == "garbage":
            return meter.faults.garbage_bytes(14)
        ser = frame.data[2:3] or b"\x00"
        if (fault == "exception" or frame.control != cj.C_READ or len(frame.data) != 3
                or frame.data[:2] != cj.di_bytes(p.di, p.version)):
            return cj.build_frame(p.type_byte, addr, cj.C_READ_OK | cj.C_ABNORMAL,
                                  ser + meter.status)
        values = {q: v for q, v in _values(meter.values).items() if q in p.quantities}
        who = addr
        if fault == "address":  # a misconfigured neighbour's answer (checksum right)
            who = f"{(int(addr, 16) + 1) % 16**14:014X}"
        answer = cj.build_frame(p.type_byte, who, cj.C_READ_OK,
                                frame.data[:3] + cj.encode_values(p, values))
        return corrupt(answer) if fault == "crc" else answer

    def feed(self, buf: bytearray) -> list[bytes]:
        return feed_frames(buf, cj.find_frame, cj.Cjt188FrameError, self._answer)
