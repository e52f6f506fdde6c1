"""Simulated DL/T 645-2007 and -1997 electricity meters on a pty (RS-485) or TCP link.

Several meters can share one bus, each at its 12-digit address, each serving a
DL/T 645 profile's data identifiers with values from a dict or a callable, in the
profile's edition (``version``); 2007 and 1997 meters may share one bus, as they do
on old sites. A 2007 meter answers a read (C=0x11) with 0x91 + DI + BCD value, an
unknown DI with the abnormal answer 0xD1 / ERR 0x02 ("no requested data"), and the
read-address broadcast (C=0x13) when exactly one meter is on the bus — as real
meters do. A 1997 meter answers C=0x01 with 0x81 + 2-byte DI + value, an unknown DI
with 0xC1 / ERR 0x02 (DI error), and anything else (a 2007 request included) with
0xC1 / ERR 0x01. A broadcast time sync (C=0x08 to 99×6, no answer) sets the clock of
every meter on the bus whose clock is within ±5 minutes of the time sent (meters refuse a
bigger step, which could skip or repeat a day's freeze). Every meter answers the read of
its clock — the date and time identifiers (2007: 04000101 YYMMDDWW and 04000102 hhmmss;
1997: C010 and C011, :data:`gateway.dlt645.CLOCK_DI`) — from that clock, so a time sync
can be read back. Faults: ``timeout``,
``garbage``, ``crc``, ``exception`` (abnormal answer) and ``address`` (a valid answer
carrying another meter's address).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from firmware_sim.faults import Faults, corrupt
from firmware_sim.rtu import LineServer, Values, _values, feed_frames
from gateway import dlt645 as d
from gateway import modbus_frames as mf

#: the largest clock step a broadcast time sync may make on a meter
MAX_SYNC_STEP_S = 300.0


@dataclass
class Meter:
    profile: d.Dlt645Profile
    values: Values
    faults: Faults = field(default_factory=Faults)
    #: the meter's clock runs this many seconds ahead of the host's (negative: behind)
    clock_offset_s: float = 0.0
    tz: str = "Asia/Shanghai"
    time_syncs: int = 0  # broadcast time syncs applied
    time_syncs_refused: int = 0  # ignored: the step would have exceeded MAX_SYNC_STEP_S

    def clock(self, now: float | None = None) -> dt.datetime:
        """The meter's local wall-clock time (naive, as DL/T 645 carries it)."""
        t = (time.time() if now is None else now) + self.clock_offset_s
        return dt.datetime.fromtimestamp(t, ZoneInfo(self.tz)).replace(tzinfo=None)

    def set_clock(self, when: dt.datetime, now: float | None = None) -> bool:
        """Apply a time sync to ``when`` (local); False if the step is too big."""
        t = time.time() if now is None else now
        target = when.replace(tzinfo=ZoneInfo(self.tz)).timestamp()
        offset = target - t
        if abs(offset - self.clock_offset_s) > MAX_SYNC_STEP_S:
            self.time_syncs_refused += 1
            return False
        self.clock_offset_s = offset
        self.time_syncs += 1
        return True


def collide(frames: list[bytes]) -> bytes | None:
    """What a master hears when several meters answer at once: on RS-485 a driven 0 wins
    over a 1 where drivers fight, so the bytes AND together (the longest frame's tail
    stays) — a frame whose checksum fails, or noise."""
    if not frames:
        return None
    out = bytearray(max(frames, key=len))
    for f in frames:
        for i, b in enumerate(f):
            out[i] &= b
    return bytes(out)


class Dlt645Server(LineServer):
    def __init__(self, meters: Mapping[str, Meter], *, link: Literal["pty", "tcp"] = "pty",
                 baud: int | None = None) -> None:
        super().__init__(link=link, baud=baud, silence=0.05)
        self.meters = dict(meters)

    def _answer(self, frame: d.Frame) -> bytes | None:
        if frame.control == d.C_TIME_SYNC and frame.address == d.TIME_SYNC_ADDRESS:
            try:
                when = d.parse_time_sync(frame)
            except d.Dlt645FrameError:
                return None
            # a meter takes the time when the whole frame has arrived: with line timing that
            # is the frame's wire time after the pty handed it over at once
            wire = (16 + len(frame.data)) * mf.char_time(self.baud) if self.baud else 0.0
            for meter in self.meters.values():  # a broadcast: every meter, nobody answers
                meter.set_clock(when, now=time.time() + wire)
            return None
        if frame.control == d.C_READ_ADDRESS:
            if len(self.meters) != 1:
                return None  # several meters would collide on the wire
            addr = next(iter(self.meters))
            if self.meters[addr].profile.version != "2007":
                return None  # read-address is a 2007 command: a 1997 meter stays silent
            return d.build_frame(addr, d.C_READ_ADDRESS_OK, d.address_bytes(addr))
        matching = [a for a in self.meters if d.address_matches(frame.address, a)]
        if len(matching) > 1:
            # every addressed meter answers at once: on RS-485 the frames collide
            return collide([a for m in matching if (a := self._answer_as(m, frame)) is not None])
        if not matching:
            return None
        return self._answer_as(matching[0], frame)

    def _answer_as(self, addr: str, frame: d.Frame) -> bytes | None:
        meter = self.meters[addr]
        self.requests += 1
        fault = meter.faults.pick()
        if fault == "timeout":
            return None
        if fault == "garbage":
            return meter.faults.garbage_bytes(12)
        version = meter.profile.version
        read, ok, err = d.CONTROL[version]
        if frame.control != read or len(frame.data) != d.DI_BYTES[version]:
            return d.build_frame(addr, err, b"\x01")
        di = frame.data[::-1].hex().upper()
        if di in d.CLOCK_DI[version] and fault != "exception":
            now = meter.clock()
            value = d.date_bytes(now) if di == d.CLOCK_DI[version][0] else d.time_bytes(now)
            who = f"{(int(addr) + 1) % 10**12:012d}" if fault == "address" else addr
            answer = d.build_frame(who, ok, frame.data + value)
            return corrupt(answer) if fault == "crc" else answer
        item_q = next(((q, it) for q, it in meter.profile.quantities.items()
                       if it.di.upper() == di), None)
        vals = _values(meter.values)
        if fault == "exception" or item_q is None or item_q[0] not in vals:
            return d.build_frame(addr, err, b"\x02")
        q, item = item_q
        # fault "address": the answer a misconfigured neighbour would give (checksum right)
        who = f"{(int(addr) + 1) % 10**12:012d}" if fault == "address" else addr
        answer = d.build_frame(who, ok, frame.data + d.item_bytes(item, vals[q]))
        return corrupt(answer) if fault == "crc" else answer

    def feed(self, buf: bytearray) -> list[bytes]:
        return feed_frames(buf, d.find_frame, d.Dlt645FrameError, self._answer)
