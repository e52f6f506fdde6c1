"""Simulated M-Bus (EN 13757-2/-3) heat meters on a pty or TCP link, several per bus.

Each meter has a primary address (1..250) and an 8-byte secondary address and answers as a
wired M-Bus slave does: SND_NKE at its primary address with E5; a selection (SND_UD to FDh,
CI 52h) whose pattern (wildcards included) matches it selects it and it answers E5, a
selection that does not match deselects it; SND_NKE to FDh deselects; REQ_UD2 at its primary
address, or at FDh while selected, is answered with an RSP_UD (CI 72h) carrying the values
in the Landis+Gyr T550 record layout of ``gateway/profiles/landis-gyr-t550-mbus.yaml``.
Two meters answering the same request overlap on a real bus; here that is a garbled
(collision) answer, which is what a wildcard search narrows on.

Line timing comes from ``LineServer`` (the request's and answer's characters at the baud
rate plus the silence before answering). Faults: ``timeout``, ``garbage``, ``crc``,
``address`` (a valid answer carrying another meter's id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from firmware_sim.faults import Faults
from firmware_sim.rtu import LineServer, Values, _values
from gateway import mbus as mb


@dataclass
class Meter:
    secondary: mb.SecondaryAddress
    values: Values
    primary: int = 0
    faults: Faults = field(default_factory=Faults)
    selected: bool = False
    access: int = 0


def t550_records(values: Mapping[str, float]) -> bytes:
    """The canonical values as the T550 layout's BCD records (units as the meter sends)."""
    out = b""
    layout = (  # quantity, DIF, VIF, factor from the canonical unit to the raw BCD number
        ("heat_energy_gj", 0x0C, 0x06, 1 / 0.0036),   # kWh
        ("water_volume_m3", 0x0C, 0x14, 100.0),       # 0.01 m3
        ("heat_power_kw", 0x0B, 0x2D, 10.0),          # 0.1 kW (10^2 W)
        ("water_flow_m3_h", 0x0B, 0x3B, 1000.0),      # l/h
        ("supply_temp_c", 0x0A, 0x5A, 10.0),          # 0.1 °C
        ("return_temp_c", 0x0A, 0x5E, 10.0),
    )
    for q, dif, vif, factor in layout:
        if q in values:
            size = mb.DATA_FIELDS[dif & 0x0F][0]
            out += bytes([dif, vif]) + mb.encode_bcd(round(values[q] * factor), size)
    return out


class MbusServer(LineServer):
    def __init__(self, meters: list[Meter], *, link: Literal["pty", "tcp"] = "pty",
                 baud: int | None = None) -> None:
        super().__init__(link=link, baud=baud, silence=0.05)
        self.meters = meters

    def _collision(self) -> bytes:
        return b"\xe5\x68\x3f\x2a\xe5\x00"  # overlapping answers: no valid frame

    def _rsp(self, m: Meter) -> bytes | None:
        self.requests += 1
        fault = m.faults.pick()
        if fault == "timeout":
            return None
        if fault == "garbage":
            return m.faults.garbage_bytes(20)
        sec = m.secondary
        if fault == "address":
            sec = mb.SecondaryAddress(f"{(int(sec.ident) + 1) % 10**8:08d}", sec.manufacturer,
                                      sec.version, sec.medium)
        m.access = (m.access + 1) & 0xFF
        frame = mb.response_frame(m.primary, sec, m.access, 0, t550_records(_values(m.values)))
        if fault == "crc":  # a flipped data bit: the checksum no longer matches
            return frame[:20] + bytes([frame[20] ^ 0x01]) + frame[21:]
        return frame

    def _answer(self, f: mb.Frame) -> bytes | None:
        pattern = mb.parse_select_request(f)
        if pattern is not None:
            hits = []
            for m in self.meters:
                m.selected = pattern.matches(m.secondary)
                if m.selected:
                    hits.append(m)
            if not hits:
                return None
            return bytes([mb.ACK]) if len(hits) == 1 else self._collision()
        if f.kind != "short":
            return None
        if f.a == mb.ADDR_SELECTED:
            targets = [m for m in self.meters if m.selected]
        elif f.a == mb.ADDR_BROADCAST_ANSWER:
            targets = list(self.meters)
        else:
            targets = [m for m in self.meters if m.primary == f.a]
        if not targets:
            return None
        if f.c == mb.C_SND_NKE:
            if f.a == mb.ADDR_SELECTED:
                for m in targets:
                    m.selected = False
            return bytes([mb.ACK]) if len(targets) == 1 else self._collision()
        if f.c in (mb.C_REQ_UD2, mb.C_REQ_UD2_FCB):
            return self._rsp(targets[0]) if len(targets) == 1 else self._collision()
        return None

    def feed(self, buf: bytearray) -> list[bytes]:
        out: list[bytes] = []
        while buf:
            if buf[0] not in (mb.START_SHORT, mb.START_LONG):
                del buf[:1]  # resynchronise on the next start byte
                continue
            n = mb.frame_length(bytes(buf))
            if n is None or len(buf) < n:
                return out
            raw = bytes(buf[:n])
            try:
                frame = mb.decode_frame(raw)
            except mb.MbusFrameError:
                del buf[:1]
                continue
            del buf[:n]
            answer = self._answer(frame)
            if answer is not None:
                out.append(answer)
        return out
