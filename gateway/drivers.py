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
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from gateway import modbus_frames as mf
from gateway.planner import Read, plan
from gateway.profile import Field_, ModbusProfile, decode, to_canonical

if TYPE_CHECKING:
    # each protocol's codec is imported by its driver when one is built: a gateway that
    # reads only Modbus meters never holds the others' code (gateway/service.py)
    from gateway import cjt188 as cj
    from gateway import dlt645 as d
    from gateway import mbus as mb
    from gateway.serial_line import SerialLineProfile

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


class Values(dict[str, float]):
    """A step's decoded values, and the quantities whose raw value was the meter's own
    "no value" sentinel (profile ``no_value``): those have no figure here, and ``no_value``
    says which raw value came (quantity → its text) so the bus can log the reason."""

    def __init__(self) -> None:
        super().__init__()
        self.no_value: dict[str, str] = {}


def _sentinel_hit(raw: int | None, value: float | None,
                  sentinels: Iterable[int | float]) -> bool:
    """Is this reading one of the meter's "no value" sentinels?

    An integer sentinel is compared with the raw bits as they came off the wire (the
    field's registers or value bytes read as one unsigned number, so ``0xFFFF`` matches an
    i16 that would decode to -1, and ``0xFFFFFFFF`` a BCD field that would not decode at
    all) and with the decoded number (so ``-32768`` works too); a NaN sentinel matches a
    NaN; any other float the decoded number.
    """
    for s in sentinels:
        if isinstance(s, float) and math.isnan(s):
            hit = value is not None and math.isnan(value)
        else:
            hit = ((isinstance(s, int) and raw is not None and s == raw)
                   or (value is not None and value == s))
        if hit:
            return True
    return False


def _ordered_bytes(words: list[int], f: Field_) -> bytes:
    ws = words if f.word_order == "big" else list(reversed(words))
    return b"".join(w.to_bytes(2, "big" if f.byte_order == "big" else "little") for w in ws)


def _modbus_no_value(f: Field_, words: list[int], sentinels: list[int | float]) -> str | None:
    """The raw value's text when ``words`` hold one of ``sentinels`` for field ``f``."""
    raw = int.from_bytes(_ordered_bytes(words, f), "big") if f.type != "str" else None
    try:
        value: float | None = float(decode(words, f.type, f.byte_order, f.word_order))
    except (ValueError, OverflowError):
        value = None  # e.g. 0xFFFF in a BCD register: only the raw bits can match
    if not _sentinel_hit(raw, value, sentinels):
        return None
    return f"0x{raw:0{4 * len(words)}X}" if raw is not None else repr(value)


def _decode_read(read: Read, regs: list[int],
                 no_value: Mapping[str, list[int | float]] | None = None) -> dict[str, float]:
    out = Values()
    for f in read.fields:
        assert isinstance(f, Field_)
        words = read.words_of(f, regs)
        sentinels = no_value.get(f.quantity) if no_value else None
        if sentinels:
            hit = _modbus_no_value(f, words, sentinels)
            if hit is not None:
                out.no_value[f.quantity] = hit
                continue
        out[f.quantity] = to_canonical(f, words)
    return out


def _bytes_no_value(raw: bytes, value: float | None,
                    sentinels: list[int | float] | None) -> str | None:
    """For DL/T 645 and CJ/T 188 value bytes (least significant first): the raw value's
    text when it is a sentinel (an integer sentinel is the bytes as the number reads,
    most significant first: ``0xFFFFFFFF``)."""
    if not sentinels:
        return None
    number = int.from_bytes(raw, "little")
    if not _sentinel_hit(number, value, sentinels):
        return None
    return f"0x{number:0{2 * len(raw)}X}"


class ModbusDriver(Driver):
    """A Modbus device on RTU or ASCII (serial or over a serial server) or Modbus TCP framing."""

    _tids = itertools.count(1)

    def __init__(self, name: str, profile: ModbusProfile, unit: int, *, framing: Framing = "rtu",
                 gap: int = 0, quantities: list[str] | None = None) -> None:
        self.name, self.profile_name, self.unit, self.framing = name, profile.model, unit, framing
        self.no_value = profile.no_value
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
                return _decode_read(read, mf.parse_rtu_response(req, frame), self.no_value)

            return Step(label, lambda: raw, mf.rtu_response_length, parse_rtu)
        if self.framing == "ascii":
            text = mf.ascii_request(req)

            def parse_ascii(frame: bytes) -> dict[str, float]:
                return _decode_read(read, mf.parse_ascii_response(req, frame), self.no_value)

            return Step(label, lambda: text, mf.ascii_frame_length, parse_ascii)

        state = {"tid": 0}

        def request() -> bytes:
            state["tid"] = next(self._tids) & 0xFFFF
            return mf.tcp_request(req, state["tid"])

        def parse_tcp(frame: bytes) -> dict[str, float]:
            return _decode_read(read, mf.parse_tcp_response(req, state["tid"], frame),
                                self.no_value)

        return Step(label, request, mf.tcp_frame_length, parse_tcp)


class Dlt645Driver(Driver):
    """A DL/T 645-2007 or -1997 meter (the profile's ``version``): one read per data
    identifier (the protocol has no block reads that every meter supports)."""

    def __init__(self, name: str, profile: d.Dlt645Profile, address: str, *,
                 quantities: list[str] | None = None) -> None:
        from gateway import dlt645 as d

        d.address_bytes(address)  # validate early
        self.name, self.profile_name, self.address = name, profile.model, address
        self.version: d.Version = profile.version
        self.no_value = profile.no_value
        self.steps = [self._step(q, item) for q, item in profile.quantities.items()
                      if quantities is None or q in quantities]

    def _step(self, quantity: str, item: d.Dlt645Item) -> Step:
        from gateway import dlt645 as d

        raw = d.read_request(self.address, item.di, self.version)
        sentinels = self.no_value.get(quantity)

        def parse(frame: bytes) -> dict[str, float]:
            found, _ = d.find_frame(frame)
            if found is None:
                raise d.Dlt645FrameError(f"meter {self.address}: no frame in {frame.hex()}")
            value = d.parse_read_response(self.address, item.di, found, self.version)
            out = Values()
            if sentinels:
                try:
                    number: float | None = d.item_value(item, value)
                except d.Dlt645FrameError:
                    number = None  # FF bytes are not BCD: only the raw bytes can match
                hit = _bytes_no_value(value, number, sentinels)
                if hit is not None:
                    out.no_value[quantity] = hit
                    return out
            out[quantity] = d.item_value(item, value)
            return out

        return Step(f"meter {self.address} DI {item.di}", lambda: raw, d.frame_length, parse)


class Cjt188Driver(Driver):
    """A CJ/T 188 water, heat or gas meter: one read of the profile's identifier (901F, the
    metering data) per cycle carries every quantity. SER counts up per request and the
    answer must echo it, so a late answer to an earlier request is never taken for this one.
    """

    _sers = itertools.count(0)

    def __init__(self, name: str, profile: cj.Cjt188Profile, address: str, *,
                 quantities: list[str] | None = None) -> None:
        from gateway import cjt188 as cj

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
            out = Values()
            for q in wanted:
                sentinels = profile.no_value.get(q)
                if sentinels and len(values) >= profile.length:
                    start, end = profile.span(profile.quantities[q])
                    try:
                        number: float | None = cj.item_value(profile, q, values)
                    except cj.Cjt188FrameError:
                        number = None  # FF bytes are not BCD: only the raw bytes can match
                    hit = _bytes_no_value(values[start:end], number, sentinels)
                    if hit is not None:
                        out.no_value[q] = hit
                        continue
                out[q] = cj.item_value(profile, q, values)
            return out

        self.steps = [Step(f"meter {address} DI {profile.di}", request, cj.frame_length, parse)]


class MbusDriver(Driver):
    """An M-Bus meter (EN 13757): REQ_UD2 at its primary address, or, with an 8-digit
    secondary address, a selection (answered by E5) then REQ_UD2 to FDh, so many meters
    can share one bus without primary addresses. One RSP_UD carries every quantity."""

    def __init__(self, name: str, profile: mb.MbusProfile, primary: int,
                 secondary: str | None = None, *, quantities: list[str] | None = None) -> None:
        from gateway import mbus as mb

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
            out = Values()
            for q in present:
                sentinels = profile.no_value.get(q)
                rec = mb.find_record(resp.records, profile.quantities[q])
                raw = rec.value if rec is not None else None
                if sentinels and isinstance(raw, int | float) and _sentinel_hit(
                        int(raw) if isinstance(raw, int) else None, float(raw), sentinels):
                    out.no_value[q] = repr(raw)
                    continue
                out[q] = mb.item_value(profile, q, resp.records)
            return out

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

    def __init__(self, name: str, profile: SerialLineProfile, *,
                 quantities: list[str] | None = None) -> None:
        from gateway.serial_line import parse_line

        self.name, self.profile_name, self.profile = name, profile.model, profile
        term = profile.terminator_bytes()
        req = profile.request_bytes()
        wanted = [q for q in profile.quantities if quantities is None or q in quantities]

        def keep(values: dict[str, float]) -> dict[str, float]:
            """One line carries every quantity: keep the wanted ones, sentinels dropped."""
            out = Values()
            for q in wanted:
                if q not in values:
                    continue
                if _sentinel_hit(None, values[q], profile.no_value.get(q, ())):
                    out.no_value[q] = repr(values[q])
                    continue
                out[q] = values[q]
            return out

        if req is not None:
            def length(buf: bytes) -> int | None:
                i = buf.find(term)
                return None if i < 0 else i + len(term)

            def parse(frame: bytes) -> dict[str, float]:
                return keep(parse_line(profile, frame))
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
                return keep(parse_line(profile, frame[i + len(term) :]))

        self.steps = [Step(f"{profile.model} line", lambda: req, length, parse,
                           quiet=req is not None)]
