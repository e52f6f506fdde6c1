"""The campus, live: every simulated device on a real Modbus TCP endpoint.

Each device gets its own port (like a meter with an Ethernet module, or one
RS-485 meter behind its own serial server), served by the protocol server of
:mod:`firmware_sim.modbus_tcp` with the register map of its profile. Values
come from one shared :class:`~firmware_sim.campus.sim.CampusSim`, advanced to
the wall clock whenever a device is read, so counters read by two gateways at
two moments still integrate the same power.

Scenario faults act on the wire, as they would on a site: a dead meter answers
Modbus exception 0x0B (gateway target device failed to respond — what a TCP
gateway in front of a silent RS-485 meter says); a gateway whose uplink is lost
has its MQTT relay cut (:class:`firmware_sim.uplink.UplinkProxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes

from enmon.localrun import free_port
from firmware_sim.campus.sim import CampusSim
from firmware_sim.dlt645_meter import Dlt645Server
from firmware_sim.dlt645_meter import Meter as Dlt645Meter
from firmware_sim.faults import Faults
from firmware_sim.modbus_tcp import ModbusMeterServer
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from firmware_sim.serial_sensor import SerialSensorServer
from firmware_sim.uplink import UplinkProxy

log = logging.getLogger("enmon.sim.campus")


def served_quantities(sim: CampusSim) -> dict[str, list[str]]:
    """device → the quantities of its profile the simulator produces (poll only those).

    A register the model has no value for would read as 0, and a missing reading
    must never become a 0 downstream.
    """
    from gateway import library

    out: dict[str, list[str]] = {}
    for dev, info in sim.devices.items():
        have = sim.reading(dev)
        out[dev] = [q for q in library.load(info.profile).quantities if q in have]
    return out


@dataclass
class CampusDeviceServer(ModbusMeterServer):
    """A profile server that stops answering (exception 0x0B) while ``alive()`` is false."""

    alive: Callable[[], bool] = lambda: True
    refused: int = 0

    async def _action(self, fc: int, start: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None
                      ) -> ExcCodes | None:
        if not self.alive():
            self.refused += 1
            return ExcCodes.GATEWAY_NO_RESPONSE
        return await super()._action(fc, start, address, count, registers, set_values)


@dataclass
class LiveCampus:
    """Serve a campus simulator on loopback endpoints and follow its scenario clock.

    Args:
        sim: the simulator (already advanced through any history).
        broker: if given, one :class:`UplinkProxy` per gateway relays to it, so
            ``uplink_loss`` scenarios can cut a gateway off.
        clock: epoch seconds (injectable for tests).
        max_step: integration step while following the clock.
    """

    sim: CampusSim
    broker: tuple[str, int] | None = None
    host: str = "127.0.0.1"
    clock: Callable[[], float] = time.time
    max_step: float = 60.0
    servers: dict[str, CampusDeviceServer] = field(default_factory=dict)
    # device → the serial-line server it answers on (own line, or a shared RS-485 bus)
    lines: dict[str, LineServer] = field(default_factory=dict)
    faults: dict[str, Faults] = field(default_factory=dict)
    proxies: dict[str, UplinkProxy] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _alive: dict[str, bool] = field(default_factory=dict)
    # serial-line instruments answer from their own threads; the simulator is not thread-safe
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def transports(self) -> dict[str, dict[str, object]]:
        """device → the ``transport`` section of a gateway config that reaches it."""
        out: dict[str, dict[str, object]] = {
            d: {"type": "tcp", "host": s.host, "port": s.port} for d, s in self.servers.items()}
        for d, ls in self.lines.items():
            out[d] = {"type": "rtu_over_tcp", "host": ls.host, "port": ls.port}
        return out

    def mqtt_for(self, gateway: str) -> dict[str, object]:
        """The ``mqtt`` section a gateway config needs to go through its (cuttable) uplink."""
        if gateway in self.proxies:
            p = self.proxies[gateway]
            return {"host": p.host, "port": p.port}
        assert self.broker is not None
        return {"host": self.broker[0], "port": self.broker[1]}

    def quantities(self) -> dict[str, list[str]]:
        with self._lock:
            return served_quantities(self.sim)

    def _follow(self) -> None:
        with self._lock:
            now = self.clock()
            if now > self.sim.t:
                self.sim.advance_to(now, max_step=self.max_step)

    def _source(self, device: str) -> Callable[[float], dict[str, float]]:
        def read(_now: float) -> dict[str, float]:
            self._follow()
            with self._lock:
                return self.sim.reading(device)
        return read

    def _answering(self, device: str) -> Callable[[], bool]:
        def alive() -> bool:
            self._follow()
            with self._lock:
                return self.sim.answering(device)
        return alive

    def _line_values(self, device: str) -> Callable[[], dict[str, float]]:
        source = self._source(device)
        return lambda: source(0.0)

    async def start(self) -> None:
        from gateway import library
        from gateway.dlt645 import Dlt645Profile
        from gateway.profile import ModbusProfile
        from gateway.serial_line import SerialLineProfile

        self._follow()
        buses: dict[tuple[str, str], list[str]] = {}
        for dev, info in self.sim.devices.items():
            if info.bus is not None:
                buses.setdefault((info.gateway, info.bus), []).append(dev)
        for (_gw, bus), members in buses.items():
            profiles = {d: library.load(self.sim.devices[d].profile) for d in members}
            server: LineServer
            if all(isinstance(p, ModbusProfile) for p in profiles.values()):
                units: dict[int, Unit] = {}
                for d, p in profiles.items():
                    assert isinstance(p, ModbusProfile)
                    self.faults[d] = Faults()
                    units[self.sim.devices[d].unit_id] = Unit(p, self._line_values(d),
                                                              self.faults[d])
                server = ModbusSlaveServer(units, framing="rtu", link="tcp")
            elif all(isinstance(p, Dlt645Profile) for p in profiles.values()):
                meters: dict[str, Dlt645Meter] = {}
                for d, p in profiles.items():
                    assert isinstance(p, Dlt645Profile)
                    address = self.sim.devices[d].address
                    if address is None:
                        raise ValueError(f"{d}: a DL/T 645 meter needs `address:`")
                    self.faults[d] = Faults()
                    meters[address] = Dlt645Meter(p, self._line_values(d), self.faults[d])
                server = Dlt645Server(meters, link="tcp")
            else:
                raise ValueError(f"bus {bus!r}: all its meters must speak Modbus RTU, or all "
                                 "DL/T 645")
            server.host = self.host
            await asyncio.to_thread(server.start)
            for d in members:
                self.lines[d] = server
        for dev, info in self.sim.devices.items():
            if info.bus is not None:
                continue
            profile = library.load(info.profile)
            if isinstance(profile, SerialLineProfile):
                template = self.sim.templates.get(dev)
                if template is None:
                    raise ValueError(f"{dev}: serial-line profile {info.profile} needs a "
                                     "`template:` in the campus file")
                self.faults[dev] = Faults()
                line = SerialSensorServer(profile, template, self._line_values(dev),
                                          faults=self.faults[dev], link="tcp")
                line.host = self.host
                await asyncio.to_thread(line.start)
                self.lines[dev] = line
                continue
            if not isinstance(profile, ModbusProfile):
                raise NotImplementedError(
                    f"{dev}: profile {info.profile} speaks {profile.protocol}; the live campus "
                    "serves Modbus TCP and serial-line (over TCP) profiles")
            srv = CampusDeviceServer(profile, self._source(dev), host=self.host,
                                     port=free_port(self.host), unit_id=info.unit_id,
                                     alive=self._answering(dev))
            await srv.start()
            self.servers[dev] = srv
        if self.broker is not None:
            for gw in self.sim.gateways():
                proxy = UplinkProxy(self.broker, name=gw, host=self.host)
                await proxy.start()
                self.proxies[gw] = proxy
        self._task = asyncio.create_task(self._supervise())
        log.info("event=campus_serving site=%s devices=%d gateways=%d",
                 self.sim.model.site, len(self.servers) + len(self.lines),
                 len(self.sim.gateways()))

    async def _supervise(self) -> None:
        """Keep the physics and the scenario faults moving even between polls."""
        while True:
            self._follow()
            for gw, proxy in self.proxies.items():
                if self.sim.uplink_up(gw):
                    proxy.restore()
                else:
                    proxy.cut()
            for dev in [*self.servers, *self.lines]:
                with self._lock:
                    alive = self.sim.answering(dev)
                if dev in self.faults:
                    self.faults[dev].dead = not alive
                if self._alive.get(dev, True) != alive:
                    log.info("event=device_%s device=%s", "revived" if alive else "dead", dev)
                self._alive[dev] = alive
            await asyncio.sleep(0.25)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for p in self.proxies.values():
            await p.stop()
        for s in self.servers.values():
            await s.stop()
        for ls in {id(x): x for x in self.lines.values()}.values():
            await asyncio.to_thread(ls.stop)

    async def __aenter__(self) -> LiveCampus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
