"""Device drivers: a profile plus an address, compiled once into read steps.

A driver does no I/O itself. It turns its profile into a fixed list of
:class:`Step` s (request bytes, how long the answer is, how to decode it) at
start-up — ``check()`` once, ``process()`` into an immutable plan, as in
Telegraf — and the bus scheduler executes the steps. That keeps every
protocol's half-duplex timing, retries and error accounting in one place
(:mod:`gateway.bus`) and every protocol's bytes pure and testable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway import cjt188 as cj
from gateway import dlt645 as d
from gateway import mbus as mb
from gateway import modbus_frames as mf
from gateway.planner import Read, plan
from gateway.profile import Field_, ModbusProfile, to_canonical
from gateway.serial_line import SerialLineProfile, parse_line

#: rtu and ascii on serial lines (or a serial server), tcp = Modbus TCP (MBAP)
Framing = Literal["rtu", "tcp", "ascii"]


@dataclass(frozen=True, slots=True)
class Step:
    """One transaction: ``request()`` (None = just listen), answer length, decoder."""

    label: str
    request: Callable[[], bytes | None]
    length: Callable[[bytes], int | None]
    parse: Callable[[bytes], dict[str, float]]
    quiet: bool = True  # a pause inside an incomplete answer means garbage (not for streams)


class Driver:
    name: str
    profile_name: str
    steps: list[Step]


def _decode_read(read: Read, regs: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in read.fields:
        assert isinstance(f, Field_)
        out[f.quantity] = to_canonical(f, read.words_of(f, regs))
    return out


class ModbusDriver(Driver):
    """A Modbus device on RTU or ASCII (serial or over a serial server) or Modbus TCP framing."""

    _tids = itertools.count(1)

    def __init__(self, name: str, profile: ModbusProfile, unit: int, *, framing: Framing = "rtu",
                 gap: int = 0, quantities: list[str] | None = None) -> None:
        self.name, self.profile_name, self.unit, self.framing = name, profile.model, unit, framing
        fields = [f for f in profile.fields() if quantities is None or f.quantity in quantities]
        self.reads = plan(fields, max_registers=profile.limits.max_registers, gap=gap,
                          forbidden=profile.limits.forbidden, max_bits=profile.limits.max_bits)
        self.steps = [self._step(r) for r in self.reads]

    def _step(self, read: Read) -> Step:
        req = mf.ReadRequest(self.unit, read.function, read.address, read.count)  # type: ignore[arg-type]
        label = f"unit {self.unit} {read.function} {read.address}+{read.count}"
        if self.framing == "rtu":
            raw = mf.rtu_request(req)

            def parse_rtu(frame: bytes) -> dict[str, float]:
                return _decode_read(read, mf.parse_rtu_response(req, frame))

            return Step(label, lambda: raw, mf.rtu_response_length, parse_rtu)
        if self.framing == "ascii":
            text = mf.ascii_request(req)

            def parse_ascii(frame: bytes) -> dict[str, float]:
                return _decode_read(read, mf.parse_ascii_response(req, frame))

            return Step(label, lambda: text, mf.ascii_frame_length, parse_ascii)

        state = {"tid": 0}

        def request() -> bytes:
            state["tid"] = next(self._tids) & 0xFFFF
            return mf.tcp_request(req, state["tid"])

        def parse_tcp(frame: bytes) -> dict[str, float]:
            return _decode_read(read, mf.parse_tcp_response(req, state["tid"], frame))

        return Step(label, request, mf.tcp_frame_length, parse_tcp)


class Dlt645Driver(Driver):
    """A DL/T 645-2007 or -1997 meter (the profile's ``version``): one read per data
    identifier (the protocol has no block reads that every meter supports)."""

    def __init__(self, name: str, profile: d.Dlt645Profile, address: str, *,
                 quantities: list[str] | None = None) -> None:
        d.address_bytes(address)  # validate early
        self.name, self.profile_name, self.address = name, profile.model, address
        self.version: d.Version = profile.version
        self.steps = [self._step(q, item) for q, item in profile.quantities.items()
                      if quantities is None or q in quantities]

    def _step(self, quantity: str, item: d.Dlt645Item) -> Step:
        raw = d.read_request(self.address, item.di, self.version)

        def parse(frame: bytes) -> dict[str, float]:
            found, _ = d.find_frame(frame)
            if found is None:
                raise d.Dlt645FrameError(f"meter {self.address}: no frame in {frame.hex()}")
            value = d.parse_read_response(self.address, item.di, found, self.version)
            return {quantity: d.item_value(item, value)}

        return Step(f"meter {self.address} DI {item.di}", lambda: raw, d.frame_length, parse)


class Cjt188Driver(Driver):
    """A CJ/T 188 water, heat or gas meter: one read of the profile's identifier (901F, the
    metering data) per cycle carries every quantity. SER counts up per request and the
    answer must echo it, so a late answer to an earlier request is never taken for this one.
    """

    _sers = itertools.count(0)

    def __init__(self, name: str, profile: cj.Cjt188Profile, address: str, *,
                 quantities: list[str] | None = None) -> None:
        cj.address_bytes(address)  # validate early
        self.name, self.profile_name, self.address = name, profile.model, address
        self.profile = profile
        wanted = [q for q in profile.quantities if quantities is None or q in quantities]
        state = {"ser": 0}

        def request() -> bytes:
            state["ser"] = next(self._sers) & 0xFF
            return cj.read_request(profile.type_byte, address, profile.di, state["ser"],
                                   profile.version)

        def parse(frame: bytes) -> dict[str, float]:
            found, _ = cj.find_frame(frame)
            if found is None:
                raise cj.Cjt188FrameError(f"meter {address}: no frame in {frame.hex()}")
            values = cj.parse_read_response(profile.type_byte, address, found, profile.di,
                                            state["ser"], profile.version)
            return {q: cj.item_value(profile, q, values) for q in wanted}

        self.steps = [Step(f"meter {address} DI {profile.di}", request, cj.frame_length, parse)]


class MbusDriver(Driver):
    """An M-Bus meter (EN 13757): REQ_UD2 at its primary address, or, with an 8-digit
    secondary address, a selection (answered by E5) then REQ_UD2 to FDh, so many meters
    can share one bus without primary addresses. One RSP_UD carries every quantity."""

    def __init__(self, name: str, profile: mb.MbusProfile, primary: int,
                 secondary: str | None = None, *, quantities: list[str] | None = None) -> None:
        self.name, self.profile_name, self.profile = name, profile.model, profile
        wanted = [q for q in profile.quantities if quantities is None or q in quantities]
        target = mb.ADDR_SELECTED if secondary else primary
        sec = mb.SecondaryAddress.parse(secondary) if secondary else None

        def read(frame: bytes) -> dict[str, float]:
            resp = mb.parse_response(mb.decode_frame(frame))
            if sec is not None and not sec.matches(resp.secondary):
                raise mb.MbusFrameError(f"answer from meter {resp.secondary.ident}, "
                                        f"not {sec.ident}")
            if sec is None and resp.address != primary:
                raise mb.MbusFrameError(f"answer from primary address {resp.address}, "
                                        f"not {primary}")
            # a record the meter does not send (another firmware or configuration) leaves
            # that quantity without a value; the others still count
            present = [q for q in wanted
                       if mb.find_record(resp.records, profile.quantities[q]) is not None]
            if not present:
                raise mb.MbusFrameError(f"none of {wanted} in the answer's records")
            return {q: mb.item_value(profile, q, resp.records) for q in present}

        steps: list[Step] = []
        if sec is not None:
            def selected(frame: bytes) -> dict[str, float]:
                if mb.decode_frame(frame).kind != "ack":
                    raise mb.MbusFrameError(f"selection of {sec.ident} not acknowledged")
                return {}

            select = mb.select_request(sec)
            steps.append(Step(f"select {sec.ident}", lambda: select, mb.frame_length, selected))
        req = mb.req_ud2(target)
        steps.append(Step(f"REQ_UD2 {secondary or primary}", lambda: req, mb.frame_length,
                          read))
        self.steps = steps


class LineDriver(Driver):
    """An ASCII instrument: one request/answer (or one streamed line) per cycle."""

    def __init__(self, name: str, profile: SerialLineProfile) -> None:
        self.name, self.profile_name, self.profile = name, profile.model, profile
        term = profile.terminator_bytes()
        req = profile.request_bytes()

        if req is not None:
            def length(buf: bytes) -> int | None:
                i = buf.find(term)
                return None if i < 0 else i + len(term)

            def parse(frame: bytes) -> dict[str, float]:
                return parse_line(profile, frame)
        else:
            # streaming: the first line may be cut; take the first whole one
            def length(buf: bytes) -> int | None:
                i = buf.find(term)
                if i < 0:
                    return None
                j = buf.find(term, i + len(term))
                return None if j < 0 else j + len(term)

            def parse(frame: bytes) -> dict[str, float]:
                i = frame.find(term)
                return parse_line(profile, frame[i + len(term) :])

        self.steps = [Step(f"{profile.model} line", lambda: req, length, parse,
                           quiet=req is not None)]
