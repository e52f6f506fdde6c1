"""Serve a device profile over real Modbus TCP (pymodbus), values computed at read time.

The register image comes from the same YAML profile the gateway uses, encoded
with :func:`gateway.profile.from_canonical`, so the simulator speaks the real
model's map (addresses, types, word order, scaling). The profile's writable points
(``writable:``) take FC 6 / FC 16 writes, as the meter's settings would, starting from
``settings``; anything else written is refused as the meter would (exception 2 or 3, see
:func:`firmware_sim.rtu.write_check`). Its writable coils take FC 5 / FC 15 and keep the
state written (FC 1 reads it back); a write to any other coil is refused with exception 2
(:func:`firmware_sim.rtu.coil_write_check`). (pymodbus 3.16 takes any non-zero FC 5
value as "on" where the spec asks for exception 3; :mod:`firmware_sim.rtu` answers 3.)
Every read is recorded in
``served`` (canonical values *as the wire carries them*, i.e. after the
register type's quantisation) so end-to-end tests can check that nothing was
altered downstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.rtu import coil_write_check, write_check
from gateway.profile import (
    BIT_FUNCTIONS,
    Field_,
    ModbusProfile,
    encode_into,
    from_canonical,
    to_canonical,
)

log = logging.getLogger("enmon.sim")

ValueSource = Callable[[float], dict[str, float]]
_FC_FUNCTION = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


@dataclass(slots=True)
class ServedRead:
    """One Modbus read the simulator answered: when, and the values it carried."""

    ts: float
    values: dict[str, float]


def _span(fields: list[Field_], function: str) -> tuple[int, int] | None:
    fs = [f for f in fields if f.function == function]
    if not fs:
        return None
    start = min(f.address for f in fs)
    end = max(f.address + f.words for f in fs)
    return start, end - start


@dataclass
class ModbusMeterServer:
    """One simulated device at ``unit_id`` on a Modbus TCP port.

    Args:
        profile: the device's register map.
        source: epoch seconds -> canonical values (e.g. ``ThreePhaseMeter.reading``).
        host, port: where to listen (port 0 is not supported by pymodbus; pick a free one).
    """

    profile: ModbusProfile
    source: ValueSource
    host: str = "127.0.0.1"
    port: int = 5020
    # serve Modbus RTU on this serial device instead of TCP (e.g. one end of a socat pty
    # pair): pymodbus' own RTU server, an independent check of the gateway's RTU master
    serial_port: str | None = None
    baudrate: int = 9600
    unit_id: int = 1
    #: starting values of the profile's writable points, by point name
    settings: dict[str, float] = field(default_factory=dict)
    served: deque[ServedRead] = field(default_factory=lambda: deque(maxlen=100_000))
    _server: ModbusTcpServer | ModbusSerialServer | None = field(
        default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._fields = self.profile.fields()
        self._writable = [self.profile.writable_field(n) for n, p in
                          self.profile.writable.items() if not p.is_coil]
        #: coil address -> the writable coil point's name and the coil's bit in its value
        self._coils = {p.address + i: (n, i) for n, p in self.profile.writable.items()
                       if p.is_coil for i in range(p.coils)}
        self._settings_applied = False
        self._coils_applied = False

    async def _action(
        self,
        fc: int,
        start: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if fc in (3, 6, 16) and not self._settings_applied:  # the holding block, once
            self._settings_applied = True
            for name, v in self.settings.items():
                if self.profile.writable[name].is_coil:
                    continue
                f = self.profile.writable_field(name)
                registers[f.address - start : f.address - start + f.words] = (
                    from_canonical(f, v))
        if fc in (1, 5, 15) and not self._coils_applied:  # the coil block, once
            self._coils_applied = True
            for a, (name, bit) in self._coils.items():
                on = (int(self.settings.get(name, 0)) >> bit) & 1
                reg, mask = a // 16 - start, 1 << (a % 16)
                registers[reg] = (registers[reg] | mask) if on else (registers[reg] & ~mask)
        if set_values is not None:
            if fc in (5, 15):  # ``address`` counts bits; one bool per coil written
                code = coil_write_check(self.profile, address, len(set_values))
                return ExcCodes(code) if code is not None else None
            if fc not in (6, 16):
                return ExcCodes.ILLEGAL_FUNCTION
            code = write_check(self.profile, address, [int(v) for v in set_values])
            if code is not None:
                return ExcCodes(code)
            return None  # pymodbus stores the registers; reads serve them from then on
        if fc in (5, 15):
            return None  # pymodbus reading the coils it just wrote, for its echo
        function = _FC_FUNCTION.get(fc)
        if function is None:
            return ExcCodes.ILLEGAL_FUNCTION
        now = time.time()
        values = self.source(now)
        carried: dict[str, float] = {}
        fields = [f for f in self._fields if f.function == function and f.quantity in values]
        if function in BIT_FUNCTIONS:
            # pymodbus keeps bits 16 to a register, bit 0 first (bit addressing): bit
            # address a is bit a % 16 of register a // 16, ``start`` counted in registers
            for f in fields:
                if function == "coil" and f.address in self._coils:
                    continue  # a writable coil holds what was written, not the source's value
                reg, mask = f.address // 16 - start, 1 << (f.address % 16)
                on = bool(from_canonical(f, values[f.quantity])[0])
                registers[reg] = (registers[reg] | mask) if on else (registers[reg] & ~mask)
                carried[f.quantity] = int(on)
            self.served.append(ServedRead(now, carried))
            return None
        for f in fields:  # clear first: bit-fields sharing a register are OR-ed in below
            off = f.address - start
            registers[off : off + f.words] = [0] * f.words
        for f in fields:
            off = f.address - start
            encode_into(registers, off, f, values[f.quantity])
            if address <= f.address and f.address + f.words <= address + count:
                carried[f.quantity] = to_canonical(f, from_canonical(f, values[f.quantity]))
        self.served.append(ServedRead(now, carried))
        return None

    def _device(self) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
        for function in blocks:
            span = _span(self._fields + (self._writable if function == "holding" else []),
                         function)
            if span is not None:
                start, n = span
                blocks[function].append(
                    SimData(start, count=n, values=0, datatype=DataType.REGISTERS)
                )

        # pymodbus wants every block non-empty: an INVALID cell answers "illegal address"
        def block(b: list[SimData]) -> list[SimData]:
            return b or [SimData(0, count=1, datatype=DataType.INVALID)]

        # coils / discrete inputs: registers of 16 bits spanning the profile's bit fields;
        # pymodbus insists on a BITS block for both, so an unused one is 16 bits of False
        def bits(function: str) -> list[SimData]:
            addrs = [f.address for f in self._fields if f.function == function]
            if function == "coil":
                addrs += list(self._coils)
            if not addrs:
                return [SimData(0, count=1, values=0, datatype=DataType.BITS)]
            lo, hi = min(addrs) // 16, max(addrs) // 16
            return [SimData(lo, count=hi - lo + 1, values=0, datatype=DataType.BITS)]

        return SimDevice(
            id=self.unit_id,
            simdata=(bits("coil"), bits("discrete"), block(blocks["holding"]),
                     block(blocks["input"])),
            action=self._action,
        )

    async def start(self) -> None:
        if self.serial_port is not None:
            self._server = ModbusSerialServer(
                self._device(), port=self.serial_port, baudrate=self.baudrate)
        else:
            self._server = ModbusTcpServer(self._device(), address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        # serve_forever(background=True) returns once listening
        log.info(
            "event=sim_listening model=%s addr=%s:%d unit=%d",
            self.profile.model,
            self.host,
            self.port,
            self.unit_id,
        )

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusMeterServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_forever(server: ModbusMeterServer, stop: asyncio.Event) -> None:
    async with server:
        await stop.wait()
