"""The gateway's run loop: poll every device, convert, batch, publish.

I/O lives here (Modbus, MQTT, the seq file); everything it decides with is pure
and lives elsewhere (``gateway.profile`` decodes, ``enmon.wire`` builds the batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from enmon import wire
from enmon.errors import DriverError
from gateway.config import Device, GatewayConfig
from gateway.mqtt import Uplink
from gateway.profile import Field_, ModbusProfile, load_profile, to_canonical

log = logging.getLogger("enmon.gateway")


class SeqStore:
    """``seq`` survives restarts: it is on disk before the batch that carries it leaves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._last = int(path.read_text().strip() or "-1")
        except FileNotFoundError:
            self._last = -1

    def next(self) -> int:
        self._last += 1
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(str(self._last))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        return self._last


@dataclass(frozen=True, slots=True)
class Read:
    """One Modbus transaction: ``count`` registers from ``address``, and the fields in it."""

    function: str
    address: int
    count: int
    fields: tuple[Field_, ...]


def plan_reads(profile: ModbusProfile) -> list[Read]:
    """Group fields into contiguous reads no longer than the device's limit."""
    reads: list[Read] = []
    limit = profile.limits.max_registers
    for function in ("holding", "input"):
        fs = sorted(
            (f for f in profile.fields() if f.function == function), key=lambda f: f.address
        )
        group: list[Field_] = []
        for f in fs:
            if group and f.address + f.words - group[0].address > limit:
                reads.append(_read(function, group))
                group = []
            group.append(f)
        if group:
            reads.append(_read(function, group))
    return reads


def _read(function: str, group: list[Field_]) -> Read:
    start = group[0].address
    end = max(f.address + f.words for f in group)
    return Read(function, start, end - start, tuple(group))


@dataclass
class ModbusTcpDevice:
    cfg: Device
    profile: ModbusProfile
    client: AsyncModbusTcpClient = field(init=False)

    def __post_init__(self) -> None:
        t = self.cfg.transport
        self.client = AsyncModbusTcpClient(
            t.host, port=t.port, timeout=t.timeout_s, retries=t.retries
        )
        self.reads = plan_reads(self.profile)

    async def poll(self) -> dict[str, float]:
        """Read every quantity; a failed transaction yields no value for its fields (never 0)."""
        if not self.client.connected:
            await self.client.connect()
            if not self.client.connected:
                raise DriverError(
                    f"{self.cfg.name}: cannot connect to "
                    f"{self.cfg.transport.host}:{self.cfg.transport.port}"
                )
        values: dict[str, float] = {}
        errors: list[str] = []
        for r in self.reads:
            fn = (
                self.client.read_holding_registers
                if r.function == "holding"
                else self.client.read_input_registers
            )
            try:
                resp = await fn(r.address, count=r.count, device_id=self.cfg.unit_id)
            except ModbusException as exc:
                errors.append(f"{r.function}@{r.address}: {exc}")
                continue
            if resp.isError():
                errors.append(f"{r.function}@{r.address}: exception response {resp}")
                continue
            regs = resp.registers
            for f in r.fields:
                off = f.address - r.address
                values[f.quantity] = to_canonical(f, list(regs[off : off + f.words]))
        if errors and not values:
            raise DriverError(f"{self.cfg.name}: " + "; ".join(errors))
        for e in errors:
            log.warning("event=read_failed device=%s detail=%s", self.cfg.name, e)
        return values

    def close(self) -> None:
        self.client.close()


@dataclass
class Stats:
    polls_ok: int = 0
    polls_failed: int = 0
    batches_sent: int = 0
    batches_acked: int = 0


class Gateway:
    def __init__(self, cfg: GatewayConfig) -> None:
        self.cfg = cfg
        self.stats = Stats()
        self.seq = SeqStore(cfg.state_dir / "seq")
        self.devices = [ModbusTcpDevice(d, load_profile(d.profile)) for d in cfg.devices]
        self.meta = {
            d.cfg.name: wire.DeviceMeta(
                building=d.cfg.building,
                category=d.cfg.category,
                energy_type=d.cfg.energy_type or d.profile.energy_type,
                profile=d.profile.model,
            )
            for d in self.devices
        }
        self.uplink = Uplink(cfg.mqtt, cfg.site, cfg.gateway, self._on_acked)

    def _on_acked(self, seq: int) -> None:
        self.stats.batches_acked += 1
        log.debug("event=batch_acked seq=%d", seq)

    async def poll_once(self) -> list[wire.Sample]:
        samples: list[wire.Sample] = []
        for dev in self.devices:
            ts = int(time.time() * 1000)
            try:
                values = await dev.poll()
            except DriverError as exc:
                self.stats.polls_failed += 1
                log.warning("event=poll_failed device=%s error=%s", dev.cfg.name, exc)
                continue
            self.stats.polls_ok += 1
            samples.append(wire.Sample(dev.cfg.name, ts, values))
        return samples

    def publish(self, samples: list[wire.Sample]) -> int:
        seq = self.seq.next()
        batch = wire.Batch(
            self.cfg.site, self.cfg.gateway, seq, int(time.time() * 1000), self.meta, samples
        )
        self.uplink.publish_telemetry(seq, wire.encode_batch(batch))
        self.stats.batches_sent += 1
        log.info("event=batch_published seq=%d samples=%d", seq, len(samples))
        return seq

    async def run(self, stop: asyncio.Event) -> None:
        self.uplink.start()
        interval = self.cfg.poll.interval_s
        next_tick = time.monotonic()
        try:
            while not stop.is_set():
                samples = await self.poll_once()
                if samples:
                    self.publish(samples)
                next_tick += interval
                delay = next_tick - time.monotonic()
                if delay < 0:  # we overran: skip missed ticks rather than burst
                    next_tick = time.monotonic()
                    delay = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            deadline = time.monotonic() + 5
            while self.uplink.unacked and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.uplink.unacked:
                log.warning("event=shutdown_unacked batches=%d", self.uplink.unacked)
            self.uplink.stop()
            for d in self.devices:
                d.close()
