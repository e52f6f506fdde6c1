"""Simulated serial buses: pty pairs (and TCP sockets) carrying real frames.

A :class:`LineServer` owns the device end of a link — the master side of a
pty pair whose slave path the gateway opens as a serial port, or a TCP
listening socket for RTU-over-TCP serial servers — and runs in a thread so the
simulated devices are independent of the gateway's event loop. With ``baud``
set it emulates the line's timing: every answer is delayed by the time its
request and answer would take on the wire (11 bits per character), so a
benchmark over the pty sees what a 9600-baud RS-485 line would give.

:class:`ModbusSlaveServer` puts any number of Modbus units on one such link
(an RS-485 bus with 32 meters is one server with 32 units), each serving a
device profile with values from a dict or a callable, with optional
:class:`~firmware_sim.faults.Faults`. Framing is RTU on a pty and RTU or
MBAP (Modbus TCP) on a socket. The frames are checked against pymodbus'
client in the tests, so sim and gateway do not share blind spots.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pty
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from firmware_sim.faults import Faults, corrupt
from gateway import modbus_frames as mf
from gateway import modbus_writes as mw
from gateway.profile import BIT_FUNCTIONS, ModbusProfile, encode_into, from_canonical, to_canonical

log = logging.getLogger("enmon.sim.line")

Values = Mapping[str, float] | Callable[[], Mapping[str, float]]  # ints stay exact


def feed_frames(buf: bytearray, find: Callable[[bytes], tuple[Any, int]],
                error: type[Exception], answer: Callable[[Any], bytes | None]) -> list[bytes]:
    """Answers to every complete 68…16 frame in ``buf`` (DL/T 645, CJ/T 188), consumed.

    ``find`` returns (frame or None, bytes used); a broken frame raises ``error`` and is
    skipped from its start byte on, as a meter resynchronises on the next 68h. A buffer
    with no 68h left is noise and is dropped whole (deleting "up to the start byte" would
    delete nothing there, and the loop would never end).
    """
    out: list[bytes] = []
    while True:
        try:
            frame, used = find(bytes(buf))
        except error:
            start = buf.find(b"\x68")
            if start < 0:
                buf.clear()
                return out
            del buf[: start + 1]
            continue
        del buf[:used]
        if frame is None:
            return out
        a = answer(frame)
        if a is not None:
            out.append(a)


def _values(source: Values) -> Mapping[str, float]:
    return source() if callable(source) else source


class LineServer:
    """Owns one link end in a thread; subclasses turn received bytes into answers.

    Args:
        link: ``"pty"`` (``.device`` is the path to open) or ``"tcp"`` (``.port``).
        baud: emulate the line timing of this baud rate (None: answer at once).
        silence: idle time after which a partial frame in the buffer is discarded.
    """

    def __init__(self, *, link: Literal["pty", "tcp"] = "pty", baud: int | None = None,
                 silence: float = 0.05, host: str = "127.0.0.1") -> None:
        self.link, self.baud, self.silence, self.host = link, baud, silence, host
        self.device = ""
        self.port = 0
        self.requests = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fds: list[int] = []
        self._listener: socket.socket | None = None
        self._slave_fd = -1

    # subclasses ------------------------------------------------------------
    def feed(self, buf: bytearray) -> list[bytes]:
        """Consume complete requests from ``buf`` and return the answers to send."""
        raise NotImplementedError

    def tick(self) -> list[bytes]:
        """Unsolicited output (streaming instruments); called every few ms."""
        return []

    # lifecycle -------------------------------------------------------------
    def start(self) -> LineServer:
        if self.link == "pty":
            master, slave = pty.openpty()
            tty.setraw(slave)
            tty.setraw(master)
            self._fds = [master]
            self._slave_fd = slave  # keep open so the master never sees EIO between opens
            self.device = os.ttyname(slave)
        else:
            self._listener = socket.create_server((self.host, 0))
            self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.link}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._slave_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._slave_fd)
        if self._listener is not None:
            self._listener.close()

    def __enter__(self) -> LineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # loop ------------------------------------------------------------------
    def _send(self, fd: int, data: bytes, request_len: int) -> None:
        if self.baud:
            # the request's bytes, the 3.5-character silence before the answer, the answer
            time.sleep((request_len + 3.5 + len(data)) * mf.char_time(self.baud))
        try:
            if self.link == "pty":
                os.write(fd, data)
            else:
                socket.socket(fileno=os.dup(fd)).sendall(data)  # dup: do not close ours
        except OSError:
            pass

    def _run(self) -> None:
        bufs: dict[int, bytearray] = {fd: bytearray() for fd in self._fds}
        last_rx: dict[int, float] = {}
        socks: dict[int, socket.socket] = {}
        while not self._stop.is_set():
            watch = list(bufs)
            if self._listener is not None:
                watch.append(self._listener.fileno())
            try:
                ready, _, _ = select.select(watch, [], [], 0.005)
            except (OSError, ValueError):
                break
            now = time.monotonic()
            for fd in ready:
                if self._listener is not None and fd == self._listener.fileno():
                    conn, _ = self._listener.accept()
                    socks[conn.fileno()] = conn
                    bufs[conn.fileno()] = bytearray()
                    continue
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    if fd in socks:
                        socks.pop(fd).close()
                        bufs.pop(fd, None)
                    continue
                bufs[fd] += chunk
                last_rx[fd] = now
                before = len(bufs[fd])
                answers = self.feed(bufs[fd])
                used = before - len(bufs[fd])
                for a in answers:
                    self._send(fd, a, used)
            for fd, buf in bufs.items():
                if buf and now - last_rx.get(fd, now) > self.silence:
                    buf.clear()  # a partial or garbage frame: the line went quiet
            for out in self.tick():
                for fd in bufs:
                    self._send(fd, out, 0)
        for s in socks.values():
            s.close()


def write_check(profile: ModbusProfile, address: int, words: list[int]) -> int | None:
    """Would a meter of ``profile`` take this register write? None if so, else the exception
    code it answers: 2 (illegal data address) for a register that is not a writable setting
    or half of one (a single word of a float), 3 (illegal data value) outside min..max."""
    end = address + len(words)
    covered = 0
    for name in profile.writable:
        if profile.writable[name].is_coil:
            continue
        f = profile.writable_field(name)
        if f.address >= end or f.address + f.words <= address:
            continue
        if f.address < address or f.address + f.words > end:
            return 2
        point = profile.writable[name]
        off = f.address - address
        value = to_canonical(f, words[off:off + f.words])
        lo, hi = point.bounds()
        if not lo <= value <= hi:
            return 3
        covered += f.words
    return None if covered == len(words) else 2


def coil_write_check(profile: ModbusProfile, address: int, count: int) -> int | None:
    """Would a device of ``profile`` take a write of ``count`` coils from ``address``? None
    if every one is a coil of a writable coil point, else 2 (illegal data address), as a
    device answers for a coil it has no output behind (a status bit, an unused address)."""
    writable = {a for p in profile.writable.values() if p.is_coil
                for a in range(p.address, p.address + p.coils)}
    return None if all(a in writable for a in range(address, address + count)) else 2


@dataclass
class Unit:
    """One simulated Modbus device on a bus.

    ``settings`` are the starting values of the profile's writable points (by point name);
    the unit accepts FC 6 / FC 16 writes that cover whole writable points and holds what
    was written (``written``, by register address), as a meter keeps its settings. A write
    that touches any other register is answered with exception 2 (illegal data address),
    a value outside the point's min..max with exception 3 (illegal data value). Writable
    coils take FC 5 / FC 15 and hold their state (``coils``, by coil address), which FC 1
    then reads back whatever ``values`` says; a write to any other coil is answered with
    exception 2, an FC 5 value other than FF00h/0000h with exception 3.
    """

    profile: ModbusProfile
    values: Values
    faults: Faults = field(default_factory=Faults)
    settings: Mapping[str, float] = field(default_factory=dict)
    written: dict[int, int] = field(default_factory=dict)
    writes: int = 0
    coils: dict[int, int] = field(default_factory=dict)
    coil_writes: int = 0

    def __post_init__(self) -> None:
        for name, v in self.settings.items():
            point = self.profile.writable[name]
            if point.is_coil:
                for i in range(point.coils):
                    self.coils[point.address + i] = (int(v) >> i) & 1
                continue
            f = self.profile.writable_field(name)
            for i, w in enumerate(from_canonical(f, v)):
                self.written[f.address + i] = w

    def write_coils(self, address: int, bits: list[int]) -> int | None:
        """Apply a coil write; None if accepted, else the exception code."""
        code = coil_write_check(self.profile, address, len(bits))
        if code is not None:
            return code
        for i, b in enumerate(bits):
            self.coils[address + i] = b
        self.coil_writes += 1
        return None

    def write(self, address: int, words: list[int]) -> int | None:
        """Apply a register write; None if accepted, else the exception code."""
        code = write_check(self.profile, address, words)
        if code is not None:
            return code
        for i, w in enumerate(words):
            self.written[address + i] = w
        self.writes += 1
        return None

    def registers(self, function: str, address: int, count: int) -> list[int] | int:
        """The register (or, for coil/discrete, bit) image for one read, or an exception code.

        Fields sharing a register (bit-fields of a status word, the two bytes of a u8 pair)
        are OR-ed together, as the meter's firmware would.
        """
        bits = function in BIT_FUNCTIONS
        if not bits:
            for lo, hi in self.profile.limits.forbidden:
                if address <= hi and lo < address + count:
                    return 2
        limits = self.profile.limits
        if count > (limits.max_bits if bits else limits.max_registers):
            return 3
        image = [0] * count
        vals = _values(self.values)
        for f in self.profile.fields():
            if f.function != function or f.quantity not in vals:
                continue
            off = f.address - address
            if off < 0 or off + f.words > count:
                continue
            encode_into(image, off, f, vals[f.quantity])
        held = self.written if function == "holding" else (
            self.coils if function == "coil" else {})
        for i in range(count):
            if address + i in held:
                image[i] = held[address + i]
        return image


class ModbusSlaveServer(LineServer):
    """Any number of Modbus units on one link (RTU or ASCII framing, or MBAP on TCP)."""

    def __init__(self, units: Mapping[int, Unit], *,
                 framing: Literal["rtu", "tcp", "ascii"] = "rtu",
                 link: Literal["pty", "tcp"] = "pty", baud: int | None = None) -> None:
        super().__init__(link=link, baud=baud,
                         silence=max(0.02, 3.5 * mf.char_time(baud)) if baud else 0.02)
        self.units = dict(units)
        self.framing = framing

    def answer(self, unit_id: int, pdu: bytes) -> tuple[bytes | None, str | None]:
        """PDU in → (PDU out or None for silence, the fault applied)."""
        unit = self.units.get(unit_id)
        if unit is None or unit_id == 0:
            return None, None  # absent unit or broadcast: silence, as on a real bus
        self.requests += 1
        fault = unit.faults.pick()
        if fault == "timeout":
            return None, fault
        if pdu and (pdu[0] in mw.WRITE_CODES or pdu[0] in mw.COIL_WRITE_CODES):
            return self._write(unit, pdu, fault)
        try:
            fc, address, count = mf.parse_request_pdu(pdu)
        except ValueError:
            return mf.exception_pdu(pdu[0] if pdu else 0, 1), None
        function = mf.CODE_FUNCTION.get(fc)
        if function is None:
            return mf.exception_pdu(fc, 1), None
        if fault == "exception":
            return mf.exception_pdu(fc, unit.faults.exception_code), fault
        if fault == "busy":
            return mf.exception_pdu(fc, 6), fault
        if not 1 <= count <= mf.max_count(function):
            return mf.exception_pdu(fc, 3), None
        regs = unit.registers(function, address, count)
        if isinstance(regs, int):
            return mf.exception_pdu(fc, regs), None
        if fc in mf.BIT_CODES:
            return mf.bits_response_pdu(fc, regs), fault
        return mf.response_pdu(fc, regs), fault

    def _write(self, unit: Unit, pdu: bytes, fault: str | None) -> tuple[bytes, str | None]:
        """An FC 5 / 6 / 15 / 16 request → its echo, or an exception answer."""
        coils = pdu[0] in mw.COIL_WRITE_CODES
        try:
            fc, address, values = (mw.parse_coil_write_pdu(pdu) if coils
                                   else mw.parse_write_pdu(pdu))
        except ValueError:
            return mf.exception_pdu(pdu[0], 3), None
        if fault == "exception":
            return mf.exception_pdu(fc, unit.faults.exception_code), fault
        if fault == "busy":
            return mf.exception_pdu(fc, 6), fault
        code = unit.write_coils(address, values) if coils else unit.write(address, values)
        if code is not None:
            return mf.exception_pdu(fc, code), None
        return mw.expected_response(pdu), fault

    def _mangle(self, unit_id: int, frame: bytes, fault: str | None) -> bytes:
        """Apply a fault to an RTU frame (unit, PDU, CRC) or to an MBAP unit+PDU."""
        if fault == "crc":
            return corrupt(frame)
        if fault == "garbage":
            return self.units[unit_id].faults.garbage_bytes(len(frame))
        if fault == "address":  # the same answer, from the neighbouring unit, CRC correct
            other = bytes([unit_id % 247 + 1]) + frame[1:]
            return mf.with_crc(other[:-2]) if self.framing == "rtu" else other
        return frame

    def _ascii_answer(self, text: bytes) -> bytes | None:
        """One received ASCII frame -> the ASCII answer (None: silence, as for a bad LRC)."""
        try:
            body = mf.ascii_decode(text)
        except mf.FrameError:
            return None  # a slave discards a frame with an LRC error (serial line spec 2.5.2)
        pdu, fault = self.answer(body[0], body[1:])
        if pdu is None:
            return None
        frame = mf.ascii_encode(body[:1] + pdu)
        if fault == "crc":  # a wrong LRC: change its last hex digit
            return frame[:-3] + (b"0" if frame[-3:-2] != b"0" else b"1") + frame[-2:]
        if fault == "garbage":
            return self.units[body[0]].faults.garbage_bytes(len(frame) - 2) + b"\r\n"
        if fault == "address":
            return mf.ascii_encode(bytes([body[0] % 247 + 1]) + pdu)
        return frame

    def feed(self, buf: bytearray) -> list[bytes]:
        out: list[bytes] = []
        if self.framing == "tcp":
            while len(buf) >= 7:
                n = mf.tcp_frame_length(bytes(buf[:6]))
                if n is None or len(buf) < n:
                    break
                frame = bytes(buf[:n])
                del buf[:n]
                pdu, fault = self.answer(frame[6], frame[7:])
                if pdu is not None:
                    mbap = frame[:4] + (len(pdu) + 1).to_bytes(2, "big")
                    out.append(mbap + self._mangle(frame[6], frame[6:7] + pdu, fault))
            return out
        if self.framing == "ascii":
            while True:
                n = mf.ascii_frame_length(bytes(buf))
                if n is None:
                    return out
                frame = bytes(buf[:n])
                del buf[:n]
                answer = self._ascii_answer(frame)
                if answer is not None:
                    out.append(answer)
        # RTU: reads, FC 5 and FC 6 are 8 bytes, FC 15/16 say their length; after noise (a CRC that
        # does not check) resynchronise by dropping a byte
        while True:
            n = mw.rtu_request_length(bytes(buf))
            if n is None or len(buf) < n:
                if len(buf) > 8 + 2 * mw.MAX_WRITE + 1:
                    del buf[:1]
                    continue
                return out
            frame = bytes(buf[:n])
            if not mf.check_crc(frame):
                del buf[:1]
                continue
            del buf[:n]
            pdu, fault = self.answer(frame[0], frame[1:-2])
            if pdu is not None:
                out.append(self._mangle(frame[0], mf.with_crc(frame[:1] + pdu), fault))
