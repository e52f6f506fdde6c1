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
quantities have no value this cycle, the rest are still read — except the
"busy" exceptions 5/6, which get a bounded retry budget of their own with a
short, doubling pause (``busy_retries``, ``busy_backoff_s``). A device whose
cycles fail ``offline_after`` times in a row is marked offline and then only
tried every 2, 4, 8 … cycles (capped at ``backoff_max_cycles``), so a bus full
of dead meters does not stretch every cycle; the first good answer brings it
back online. Every outcome is counted per device for the ``health`` message.

A device's turn may read several *parts* (its quantities grouped by poll interval, each
planned on its own): one turn, one timestamp, one reading — so a batch never carries two
samples of one meter at one instant — and each part's line time and the bytes it put on
the wire are measured, which is what the schedule's health figures are made of. A value
the meter itself marks as "no value" (the profile's ``no_value`` sentinels) is no value
with a logged reason (``event=value_dropped reason=no_value``), not a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from enmon.errors import DriverError
from gateway.drivers import Driver, Step
from gateway.modbus_frames import BUSY_CODES, ModbusException
from gateway.transport import Link, LinkError, LinkTimeout

log = logging.getLogger("enmon.gateway.bus")

#: (module, class): a meter's refusal in DL/T 645 and CJ/T 188 (an error answer, not a bad
#: frame); only those codecs raise them, so only loaded codecs' classes are caught
_REFUSALS = (("gateway.dlt645", "Dlt645Error"), ("gateway.cjt188", "Cjt188Error"))


def _refusals() -> tuple[type[Exception], ...]:
    """The refusal classes of the protocol codecs this process has loaded (a gateway with
    Modbus meters only imports neither codec)."""
    return tuple(getattr(sys.modules[m], c) for m, c in _REFUSALS
                 if getattr(sys.modules.get(m), c, None) is not None)

#: how one step ended: a value, no value (corrupt answers past the retry budget), refused
#: (an exception answer: the device is alive), or the link (timeout / link error)
Outcome = Literal["ok", "failed", "refused", "link"]


@dataclass(frozen=True, slots=True)
class Timing:
    """Per-device timing; defaults suit 9600-baud RS-485."""

    timeout_s: float = 0.5
    retries: int = 1
    inter_frame_s: float = 0.005
    offline_after: int = 3
    backoff_max_cycles: int = 16
    busy_retries: int = 3  # Modbus exception 5/6 answers retried per step
    busy_backoff_s: float = 0.05  # pause before the first busy retry, doubled each time


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
    busy: int = 0  # exception 5/6 answers (also counted in exceptions)
    link_errors: int = 0
    last_latency_s: float = 0.0
    latency_sum_s: float = 0.0


@dataclass(slots=True)
class Reading:
    device: str
    ts_ms: int
    values: dict[str, float]
    complete: bool
    #: quantities whose raw value was the meter's "no value" sentinel → that raw value
    no_value: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class PartResult:
    """How one part of a device's turn went: when it held the line, what it put on the wire
    (request and answer bytes of its transactions that were answered), and whether every
    step gave a value."""

    started: float
    finished: float
    wire_bytes: int = 0
    transactions: int = 0
    complete: bool = True


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
        reading, _ = await self.poll_parts(dev, [dev.driver.steps])
        return reading

    async def poll_parts(self, dev: BusDevice, parts: Sequence[Sequence[Step]]
                         ) -> tuple[Reading, list[PartResult]]:
        """One turn of ``dev`` reading ``parts`` one after the other (see the module
        docstring): one reading, and per part what it cost. A timeout or link failure ends
        the whole turn, so a dead meter still costs the others one timeout per turn."""
        ts_ms = int(time.time() * 1000)
        started = time.monotonic()
        values: dict[str, float] = {}
        no_value: dict[str, str] = {}
        answered = False
        complete = True
        results: list[PartResult] = []
        async with self._lock:
            for steps in parts:
                part = PartResult(time.monotonic(), 0.0)
                results.append(part)
                for step in steps:
                    outcome = await self._run_step(dev, step, values, part, no_value)
                    if outcome == "link":  # timeout or link failure: this turn is over
                        part.finished, part.complete = time.monotonic(), False
                        return self._finish(dev, ts_ms, started, values, answered, False,
                                            no_value), results
                    answered = answered or outcome in ("ok", "refused")
                    if outcome != "ok":
                        complete = part.complete = False
                part.finished = time.monotonic()
        return self._finish(dev, ts_ms, started, values, answered, complete, no_value), results

    async def _run_step(self, dev: BusDevice, step: Step, values: dict[str, float],
                        part: PartResult | None = None,
                        no_value: dict[str, str] | None = None) -> Outcome:
        """One transaction with its two retry budgets.

        ``retries`` covers corrupt answers (fast to repeat). ``busy_retries`` covers the
        Modbus exceptions 5/6 (acknowledge / server busy: a meter still processing, or a
        gateway in front of a slow line) after a growing pause of ``busy_backoff_s``,
        ``2 ×``, ``4 ×`` …; once it is spent the step yields no value, logged as
        ``event=busy_gave_up``. Other exceptions are final at once (the request is wrong).
        """
        t = dev.timing
        st = dev.stats
        name = dev.driver.name
        attempt = busy = 0
        while True:
            try:
                request = step.request()
                frame = await self.link.transact(request, step.length, t.timeout_s,
                                                 quiet=step.quiet)
                if part is not None:
                    part.wire_bytes += len(request or b"") + len(frame)
                    part.transactions += 1
                got = step.parse(frame)
                values.update(got)
                for q, raw in getattr(got, "no_value", {}).items():
                    log.warning("event=value_dropped bus=%s device=%s quantity=%s raw=%s "
                                "reason=no_value", self.name, name, q, raw)
                    if no_value is not None:
                        no_value[q] = raw
                await asyncio.sleep(t.inter_frame_s)
                return "ok"
            except (LinkTimeout, LinkError) as exc:
                if isinstance(exc, LinkTimeout):
                    st.timeouts += 1
                    log.warning("event=timeout bus=%s device=%s step=%r detail=%r",
                                self.name, name, step.label, str(exc))
                else:
                    st.link_errors += 1
                    log.warning("event=link_error bus=%s device=%s detail=%r",
                                self.name, name, str(exc))
                await asyncio.sleep(t.inter_frame_s)
                return "link"
            except ModbusException as exc:
                st.exceptions += 1
                if exc.code in BUSY_CODES:
                    st.busy += 1
                    if busy < t.busy_retries:
                        pause = t.busy_backoff_s * 2**busy
                        busy += 1
                        log.info("event=busy bus=%s device=%s step=%r code=%d retry=%d "
                                 "pause_s=%.3f", self.name, name, step.label, exc.code, busy,
                                 pause)
                        await asyncio.sleep(max(pause, t.inter_frame_s))
                        continue
                    log.warning("event=busy_gave_up bus=%s device=%s step=%r code=%d "
                                "retries=%d", self.name, name, step.label, exc.code, busy)
                else:
                    log.warning("event=exception bus=%s device=%s step=%r detail=%r",
                                self.name, name, step.label, str(exc))
                await asyncio.sleep(t.inter_frame_s)
                return "refused"
            except _refusals() as exc:
                st.exceptions += 1
                log.warning("event=exception bus=%s device=%s step=%r detail=%r",
                            self.name, name, step.label, str(exc))
                await asyncio.sleep(t.inter_frame_s)
                return "refused"
            except (DriverError, ValueError) as exc:  # CRC, garbage, bad line
                st.frame_errors += 1
                attempt += 1
                log.warning("event=bad_frame bus=%s device=%s step=%r attempt=%d detail=%r",
                            self.name, name, step.label, attempt, str(exc)[:200])
                await asyncio.sleep(t.inter_frame_s)
                if attempt > t.retries:
                    return "failed"

    def _finish(self, dev: BusDevice, ts_ms: int, started: float, values: dict[str, float],
                answered: bool, complete: bool,
                no_value: dict[str, str] | None = None) -> Reading:
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
        return Reading(name, ts_ms, values, complete and bool(values), dict(no_value or {}))

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
