"""The bus scheduler: one transaction at a time per bus, every device bounded.

RS-485 is half-duplex: a second request while a meter is still answering
garbles both, so every device on one port is polled by one task, strictly in
turn, with the inter-frame silence between transactions. Separate buses (two
ports, two TCP gateways) run concurrently.

Failure budget — the promise the tests hold us to: **a dead meter costs the
others no more than its timeout per cycle.** A timeout ends that device's
turn for the cycle (no retry, no further steps). Corrupt answers (CRC errors,
garbage, wrong unit) are fast, so they are retried up to ``retries`` times.
Exception answers mean the device is alive but refuses that read: those
quantities have no value this cycle, the rest are still read. A device whose
cycles fail ``offline_after`` times in a row is marked offline and then only
tried every 2, 4, 8 … cycles (capped at ``backoff_max_cycles``), so a bus full
of dead meters does not stretch every cycle; the first good answer brings it
back online. Every outcome is counted per device for the ``health`` message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from enmon.errors import DriverError
from gateway.dlt645 import Dlt645Error
from gateway.drivers import Driver
from gateway.modbus_frames import ModbusException
from gateway.transport import Link, LinkError, LinkTimeout

log = logging.getLogger("enmon.gateway.bus")


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-device timing; defaults suit 9600-baud RS-485."""

    timeout_s: float = 0.5
    retries: int = 1
    inter_frame_s: float = 0.005
    offline_after: int = 3
    backoff_max_cycles: int = 16


@dataclass(slots=True)
class DeviceStats:
    online: bool = True
    consecutive_failures: int = 0
    next_cycle: int = 0
    backoff: int = 1
    polls: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    timeouts: int = 0
    frame_errors: int = 0
    exceptions: int = 0
    link_errors: int = 0
    last_latency_s: float = 0.0
    latency_sum_s: float = 0.0


@dataclass(slots=True)
class Reading:
    device: str
    ts_ms: int
    values: dict[str, float]
    complete: bool


@dataclass
class BusDevice:
    driver: Driver
    timing: Timing = field(default_factory=Timing)
    stats: DeviceStats = field(default_factory=DeviceStats)


class Bus:
    """Devices sharing one link, polled one transaction at a time."""

    def __init__(self, name: str, link: Link, devices: list[BusDevice]) -> None:
        self.name, self.link, self.devices = name, link, devices
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self.link.close()

    async def poll_device(self, dev: BusDevice) -> Reading:
        """Run one device's steps; values that failed are absent, never 0."""
        t = dev.timing
        st = dev.stats
        name = dev.driver.name
        ts_ms = int(time.time() * 1000)
        started = time.monotonic()
        values: dict[str, float] = {}
        answered = False
        complete = True
        async with self._lock:
            for step in dev.driver.steps:
                done = False
                for attempt in range(t.retries + 1):
                    try:
                        frame = await self.link.transact(step.request(), step.length, t.timeout_s,
                                                         quiet=step.quiet)
                        values.update(step.parse(frame))
                        answered = done = True
                    except (LinkTimeout, LinkError) as exc:  # ends this device's turn
                        if isinstance(exc, LinkTimeout):
                            st.timeouts += 1
                            log.warning("event=timeout bus=%s device=%s step=%r detail=%r",
                                        self.name, name, step.label, str(exc))
                        else:
                            st.link_errors += 1
                            log.warning("event=link_error bus=%s device=%s detail=%r",
                                        self.name, name, str(exc))
                        await asyncio.sleep(t.inter_frame_s)
                        return self._finish(dev, ts_ms, started, values, answered, False)
                    except (ModbusException, Dlt645Error) as exc:
                        st.exceptions += 1
                        answered = done = True
                        log.warning("event=exception bus=%s device=%s step=%r detail=%r",
                                    self.name, name, step.label, str(exc))
                    except (DriverError, ValueError) as exc:  # CRC, garbage, bad line
                        st.frame_errors += 1
                        log.warning("event=bad_frame bus=%s device=%s step=%r attempt=%d detail=%r",
                                    self.name, name, step.label, attempt + 1, str(exc)[:200])
                    await asyncio.sleep(t.inter_frame_s)
                    if done:
                        break
                if not done:
                    complete = False
        return self._finish(dev, ts_ms, started, values, answered, complete)

    def _finish(self, dev: BusDevice, ts_ms: int, started: float, values: dict[str, float],
                answered: bool, complete: bool) -> Reading:
        st = dev.stats
        st.polls += 1
        st.last_latency_s = time.monotonic() - started
        st.latency_sum_s += st.last_latency_s
        name = dev.driver.name
        if answered:
            st.ok += 1
            st.consecutive_failures = 0
            st.backoff = 1
            if not st.online:
                st.online = True
                log.info("event=device_online bus=%s device=%s", self.name, name)
        else:
            st.failed += 1
            st.consecutive_failures += 1
            if st.online and st.consecutive_failures >= dev.timing.offline_after:
                st.online = False
                log.warning("event=device_offline bus=%s device=%s failures=%d",
                            self.name, name, st.consecutive_failures)
        return Reading(name, ts_ms, values, complete and bool(values))

    async def poll_cycle(self, cycle: int) -> list[Reading]:
        """Poll every device that is due in ``cycle``; offline devices back off."""
        out: list[Reading] = []
        for dev in self.devices:
            st = dev.stats
            if not st.online and cycle < st.next_cycle:
                st.skipped += 1
                continue
            try:
                reading = await self.poll_device(dev)
            except Exception:  # a bug or an unforeseen OS error must not stop the gateway
                log.exception("event=poll_error bus=%s device=%s", self.name, dev.driver.name)
                with contextlib.suppress(Exception):
                    await self.link.close()
                continue
            if not st.online:
                st.next_cycle = cycle + st.backoff
                st.backoff = min(st.backoff * 2, dev.timing.backoff_max_cycles)
            out.append(reading)
        return out
