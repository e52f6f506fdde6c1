"""A simulated ASCII serial instrument (e.g. a flue-gas analyser).

Answers each request line with one reading formatted by ``template`` (a
``str.format`` string over the profile's quantity names), or, for a streaming
profile (no request), prints a reading every ``period`` seconds. Faults: a
timeout is silence, garbage is random bytes plus a terminator, ``crc`` (no
checksum in ASCII) becomes a truncated line.
"""

from __future__ import annotations

import time
from typing import Literal

from firmware_sim.faults import Faults
from firmware_sim.rtu import LineServer, Values, _values
from gateway.serial_line import SerialLineProfile, format_line


class SerialSensorServer(LineServer):
    def __init__(self, profile: SerialLineProfile, template: str, values: Values, *,
                 faults: Faults | None = None, period: float = 0.2,
                 link: Literal["pty", "tcp"] = "pty", baud: int | None = None) -> None:
        super().__init__(link=link, baud=baud, silence=0.5)
        self.profile, self.template, self.values = profile, template, values
        self.faults = faults or Faults()
        self.period = period
        self._next = time.monotonic()

    def _reading(self) -> bytes | None:
        self.requests += 1
        fault = self.faults.pick()
        if fault == "timeout":
            return None
        if fault == "garbage":
            noise = self.faults.garbage_bytes(9).replace(b"\n", b"?")
            return noise + self.profile.terminator_bytes()
        if fault == "exception":
            return b"ERR\r\n"
        line = format_line(self.profile, self.template, dict(_values(self.values)))
        if fault == "crc":
            return line[: len(line) // 2] + self.profile.terminator_bytes()
        return line

    def feed(self, buf: bytearray) -> list[bytes]:
        req = self.profile.request_bytes()
        out: list[bytes] = []
        if req is None:
            buf.clear()
            return out
        while True:
            i = buf.find(req)
            if i < 0:
                return out
            del buf[: i + len(req)]
            line = self._reading()
            if line is not None:
                out.append(line)

    def tick(self) -> list[bytes]:
        if self.profile.request is not None or time.monotonic() < self._next:
            return []
        self._next = time.monotonic() + self.period
        line = self._reading()
        return [line] if line is not None else []
