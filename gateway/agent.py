"""The gateway's run loop: poll every bus, validate, queue on disk, forward.

I/O lives here and in :mod:`gateway.bus` / :mod:`gateway.mqtt`; everything it
decides with is pure and lives elsewhere (profiles and framing decode, the
planner coalesces, :mod:`gateway.validation` flags, :mod:`enmon.wire` builds
the batch). One cycle: all buses are polled concurrently (devices on one bus
strictly in turn), the readings become one batch, the batch is committed to the
disk queue with the next ``seq``, and the uplink forwards the queue.

Poll intervals: a device's quantities are grouped by their effective interval (the
device's ``intervals_s``, the profile's, the device's ``poll_interval_s``, the gateway's
``poll.interval_s``; see ``planner.interval_groups``). Each group is planned on its own
and is a key of its bus's earliest-deadline-first schedule (``planner.PollSchedule``).
The groups of one device that are due together are read in one turn: one reading, one
timestamp, carrying only what was read then. Per bus and interval the schedule's figures
(line budget at the wire minimum, measured cycle time and load, polls, skipped and late
ticks) go into the health message.

Before validation, the quantities a profile marks as secondary-side (``ratio``) are
multiplied by the device's ``ct_ratio`` / ``pt_ratio``, so the counter checks (and
everything downstream) see primary values; a counter's configured ``capacity`` is its
register's, so it is scaled likewise, while ``max_rate_per_h`` is a primary rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from enmon import wire
from enmon.systemd import Watchdog, sd_notify
from gateway import modbus_frames as mf
from gateway.bus import Bus, BusDevice, PartResult, Reading, Timing
from gateway.config import (
    Device,
    GatewayConfig,
    RtuOverTcpTransport,
    SerialTransport,
    TcpTransport,
    bus_key,
    check_profiles,
)
from gateway.diskqueue import DiskQueue
from gateway.drivers import (
    Cjt188Driver,
    Dlt645Driver,
    Driver,
    Framing,
    LineDriver,
    MbusDriver,
    ModbusDriver,
    Step,
)
from gateway.mqtt import Uplink
from gateway.planner import PollSchedule, breakeven_gap, interval_groups
from gateway.profile import ModbusProfile
from gateway.transport import Link, SerialLink, TcpLink
from gateway.validation import NO_VALUE, CounterLimits, EdgeValidator

if TYPE_CHECKING:
    # loaded when used: the signed commands when enabled, each protocol's codec with its
    # devices (a gateway with Modbus meters only holds neither; gateway/service.py)
    from gateway.commands import AnyTarget, CommandService
    from gateway.library import AnyProfile

log = logging.getLogger("enmon.gateway")

#: gap fill on Modbus TCP when the device config does not say: any hole that fits in one
#: read (bytes are cheap on Ethernet, round trips are not)
DEFAULT_GAP = mf.MAX_READ
#: baud assumed for RTU over a TCP serial server, whose line speed we cannot see
SERVER_BAUD = 9600


def default_gap(t: TcpTransport | RtuOverTcpTransport | SerialTransport) -> int:
    """Gap fill that minimises line time (see ``planner.breakeven_gap``)."""
    if isinstance(t, TcpTransport):
        return DEFAULT_GAP
    return breakeven_gap(t.baud if isinstance(t, SerialTransport) else SERVER_BAUD)


def make_link(t: TcpTransport | RtuOverTcpTransport | SerialTransport) -> Link:
    if isinstance(t, SerialTransport):
        return SerialLink(t.port, baud=t.baud, parity=t.parity, stopbits=t.stopbits,
                          bytesize=t.bytesize)
    return TcpLink(t.host, t.port)


def make_driver(d: Device, profile: AnyProfile, quantities: list[str] | None = None) -> Driver:
    """The device's driver for ``quantities`` (default: the device's ``quantities``, else
    all the profile's)."""
    qs = d.quantities if quantities is None else quantities
    if isinstance(profile, ModbusProfile):
        framing: Framing = ("tcp" if isinstance(d.transport, TcpTransport)
                            else d.transport.framing)
        gap = default_gap(d.transport) if d.gap is None else d.gap
        return ModbusDriver(d.name, profile, d.unit_id, framing=framing, gap=gap,
                            quantities=qs)
    if profile.protocol == "dlt645":
        assert d.address is not None  # check_profiles guarantees it
        return Dlt645Driver(d.name, profile, d.address, quantities=qs)
    if profile.protocol == "cjt188":
        assert d.address is not None  # the config requires a CJ/T 188 meter's address
        return Cjt188Driver(d.name, profile, d.address, quantities=qs)
    if profile.protocol == "mbus":
        return MbusDriver(d.name, profile, d.unit_id, d.address, quantities=qs)
    assert profile.protocol == "serial_line"
    return LineDriver(d.name, profile, quantities=qs)


@dataclass(frozen=True, slots=True)
class PollPart:
    """One interval group of a device: its quantities, planned on their own."""

    device: str
    interval_s: float
    quantities: tuple[str, ...]
    driver: Driver


#: a part of a bus's schedule: (device, interval)
PartKey = tuple[str, float]
#: per transaction, the 3.5-character silences before the request and before the answer
SILENCE_CHARS = 7


def poll_parts(d: Device, profile: AnyProfile, default_s: float,
               whole: Driver) -> list[PollPart]:
    """The device's interval groups (``planner.interval_groups``); a device with one group
    keeps its whole driver."""
    qs = d.quantities if d.quantities is not None else list(profile.quantities)
    groups = interval_groups(qs, device=d.intervals_s, profile=profile.intervals_s,
                             default=d.poll_interval_s or default_s)
    if len(groups) == 1:
        ((iv, members),) = groups.items()
        return [PollPart(d.name, iv, tuple(members), whole)]
    return [PollPart(d.name, iv, tuple(members), make_driver(d, profile, members))
            for iv, members in groups.items()]


def ratio_factors(d: Device, profile: AnyProfile) -> dict[str, float]:
    """quantity → the factor that turns the meter's secondary-side value into the primary
    one (only the quantities the profile marks, and only where the ratio is not 1)."""
    by = {"ct": d.ct_ratio, "pt": d.pt_ratio, "ctpt": d.ct_ratio * d.pt_ratio}
    return {q: by[kind] for q, kind in profile.ratio.items() if by[kind] != 1.0}


def to_primary(value: float, factor: float) -> float:
    """``value × factor``, exact for an integer reading and an integral ratio (a 64-bit
    counter keeps its last digit)."""
    if isinstance(value, int) and factor.is_integer():
        return value * int(factor)
    return value * factor


def make_timing(t: TcpTransport | RtuOverTcpTransport | SerialTransport) -> Timing:
    if t.inter_frame_s is not None:
        gap = t.inter_frame_s
    elif isinstance(t, SerialTransport):
        gap = mf.silent_interval(t.baud)
    else:
        gap = 0.0
    return Timing(timeout_s=t.timeout_s, retries=t.retries, inter_frame_s=gap,
                  offline_after=t.offline_after, backoff_max_cycles=t.backoff_max_cycles,
                  busy_retries=t.busy_retries, busy_backoff_s=t.busy_backoff_s)


def build_buses(cfg: GatewayConfig, profiles: list[AnyProfile]) -> list[Bus]:
    grouped: dict[str, list[tuple[Device, AnyProfile]]] = defaultdict(list)
    for d, p in zip(cfg.devices, profiles, strict=True):
        grouped[bus_key(d.transport)].append((d, p))
    buses = []
    for key, members in grouped.items():
        link = make_link(members[0][0].transport)
        devs = [BusDevice(make_driver(d, p), make_timing(d.transport)) for d, p in members]
        buses.append(Bus(key, link, devs))
    return buses


def bus_baud(t: TcpTransport | RtuOverTcpTransport | SerialTransport) -> int | None:
    """The line speed the wire minimum is counted at: known only for a local serial port
    (behind a TCP serial server we cannot see it; Modbus TCP has no line)."""
    return t.baud if isinstance(t, SerialTransport) else None


#: no time sync this close (minutes) to local midnight, when meters freeze the day's readings
MIDNIGHT_GUARD_MIN = 5
#: line speed assumed for a DL/T 645 line behind a TCP serial server (its usual 2400 baud)
DLT645_SERVER_BAUD = 2400


def time_sync_allowed(local: dt.datetime) -> bool:
    """May a broadcast time sync go out at local wall-clock time ``local``? Not within
    ``MIDNIGHT_GUARD_MIN`` minutes of midnight: a step across it could make a meter skip or
    repeat its daily freeze."""
    minutes = local.hour * 60 + local.minute + local.second / 60
    return MIDNIGHT_GUARD_MIN <= minutes <= 24 * 60 - MIDNIGHT_GUARD_MIN


class _Broadcast(Driver):
    """One frame that nobody answers, held on the bus for its time on the wire, so the
    next poll cannot talk over it."""

    def __init__(self, name: str, frame: bytes, wire_s: float) -> None:
        self.name, self.profile_name = name, "broadcast"
        state = {"until": 0.0}

        def request() -> bytes:
            state["until"] = time.monotonic() + wire_s
            return frame

        def length(buf: bytes) -> int | None:
            return 0 if time.monotonic() >= state["until"] else None

        self.steps = [Step("DL/T 645 broadcast time sync", request, length, lambda b: {},
                           quiet=False)]


def legacy_seq(state_dir: Path) -> int:
    """The next seq after a ``state_dir/seq`` file left by a gateway of version 0.0, if any.

    Gateways that ran before the disk queue kept their last seq in that file; restarting
    at 0 would make ingest count every new batch as a duplicate.
    """
    try:
        return int((state_dir / "seq").read_text().strip() or "-1") + 1
    except (FileNotFoundError, ValueError):
        return 0


class Gateway:
    def __init__(self, cfg: GatewayConfig, *, config_file: str = "<config>") -> None:
        self.cfg = cfg
        profiles = check_profiles(cfg, config_file)
        self.buses = build_buses(cfg, profiles)
        self.queue = DiskQueue(cfg.state_dir / "queue.db", max_bytes=int(cfg.queue.max_mb * 1e6),
                               first_seq=legacy_seq(cfg.state_dir))
        self.meta: dict[str, wire.DeviceMeta] = {}
        self.validators: dict[str, EdgeValidator] = {}
        saved = self.queue.get_state("baselines") or {}
        #: device → {quantity: secondary-to-primary factor}
        self.ratios: dict[str, dict[str, float]] = {}
        for d, p in zip(cfg.devices, profiles, strict=True):
            self.meta[d.name] = wire.DeviceMeta(
                building=d.building, category=d.category,
                energy_type=d.energy_type or p.energy_type, profile=p.model)
            self.ratios[d.name] = factors = ratio_factors(d, p)
            # the register wraps at its capacity on the secondary side
            limits = {q: CounterLimits(None if c.capacity is None
                                       else c.capacity * factors.get(q, 1.0),
                                       c.max_rate_per_h) for q, c in d.counters.items()}
            base = {q: (float(v), int(t)) for q, (v, t) in saved.get(d.name, {}).items()}
            self.validators[d.name] = EdgeValidator(limits=limits, baselines=base)
        self.uplink = Uplink(cfg.mqtt, cfg.site, cfg.gateway, self.queue)
        self.commands = self._command_service(profiles) if cfg.commands.enabled else None
        baud = {bus_key(d.transport): (d.transport.baud if isinstance(d.transport, SerialTransport)
                                       else DLT645_SERVER_BAUD) for d in cfg.devices}
        #: buses with a DL/T 645 meter (the broadcast time sync goes there), and their baud
        self.dlt645_buses = [(b, baud[b.name]) for b in self.buses
                             if any(isinstance(dev.driver, Dlt645Driver) for dev in b.devices)]
        self.time_syncs = 0
        self.cycle = 0
        self.started = time.monotonic()
        whole = {dev.driver.name: dev.driver for b in self.buses for dev in b.devices}
        by_name = {d.name: (d, p) for d, p in zip(cfg.devices, profiles, strict=True)}
        #: per bus: its parts (device × interval group) in config order, and their schedule
        self.parts: dict[str, dict[PartKey, PollPart]] = {}
        self.schedules: dict[str, PollSchedule[PartKey]] = {}
        self.baud: dict[str, int | None] = {}
        for b in self.buses:
            parts: dict[PartKey, PollPart] = {}
            for dev in b.devices:
                d, p = by_name[dev.driver.name]
                for part in poll_parts(d, p, cfg.poll.interval_s, whole[d.name]):
                    parts[(part.device, part.interval_s)] = part
            self.parts[b.name] = parts
            self.schedules[b.name] = PollSchedule({k: k[1] for k in parts}, self.started)
            self.baud[b.name] = bus_baud(by_name[b.devices[0].driver.name][0].transport)

    def _command_service(self, profiles: list[AnyProfile]) -> CommandService:
        """Signed device writes (gateway.commands), for the devices that allow some."""
        from gateway.commands import CommandService, Dlt645Target, NonceStore, Target, read_secret

        c = self.cfg.commands
        keys = {k.id: read_secret(k.file, k.env, what=f"commands.keys {k.id}")
                for k in c.keys}
        bus_of = {dev.driver.name: b for b in self.buses for dev in b.devices}
        targets: dict[str, AnyTarget] = {}
        for d, p in zip(self.cfg.devices, profiles, strict=True):
            if not d.writable:
                continue
            if isinstance(p, ModbusProfile):
                framing: Framing = ("tcp" if isinstance(d.transport, TcpTransport)
                                    else d.transport.framing)
                targets[d.name] = Target(bus_of[d.name], d.name, p, d.unit_id, framing,
                                         make_timing(d.transport), frozenset(d.writable))
            elif p.protocol == "dlt645" and d.address is not None:
                # a time_sync command: the broadcast on this meter's bus, its clock read back
                targets[d.name] = Dlt645Target(
                    bus_of[d.name], d.name, p, d.address, make_timing(d.transport),
                    frozenset(d.writable), baud=bus_baud(d.transport) or DLT645_SERVER_BAUD,
                    timezone=self.cfg.time_sync.timezone)
        uplink = self.uplink

        def publish(topic: str, payload: bytes) -> None:
            uplink.publish_other(topic, payload, qos=1)  # queued by paho while disconnected

        return CommandService(
            self.cfg.site, self.cfg.gateway, keys, targets,
            NonceStore(self.cfg.state_dir / "commands.db", max_entries=c.max_nonces),
            publish=publish,
            max_skew_s=c.max_skew_s, max_lifetime_s=c.max_lifetime_s)

    # ------------------------------------------------------------------ time sync

    async def sync_time(self, when: dt.datetime | None = None) -> int:
        """Broadcast a DL/T 645 time sync on every bus with a DL/T 645 meter; returns how
        many buses it went to. ``when``: the meters' local time (default: now)."""
        from gateway.dlt645 import time_sync_request

        tz = ZoneInfo(self.cfg.time_sync.timezone)
        sent = 0
        for bus, baud in self.dlt645_buses:
            local = when or dt.datetime.now(tz).replace(tzinfo=None)
            frame = time_sync_request(local)
            wire_s = (len(frame) + 3.5) * mf.char_time(baud)
            # the frame's own line time, then the silence; nobody answers a broadcast
            timing = Timing(timeout_s=1.5 * wire_s + 0.01, retries=0,
                            inter_frame_s=mf.silent_interval(baud))
            dev = BusDevice(_Broadcast("time-sync", frame, wire_s), timing)
            await bus.poll_device(dev)
            if dev.stats.link_errors:
                log.warning("event=time_sync_failed bus=%s reason=link_error", bus.name)
                continue
            sent += 1
            self.time_syncs += 1
            log.info("event=time_sync_sent bus=%s time=%s tz=%s", bus.name,
                     local.isoformat(timespec="seconds"), self.cfg.time_sync.timezone)
        return sent

    async def _time_sync_loop(self, stop: asyncio.Event) -> None:
        """At start, then every ``time_sync.interval_s``; near midnight it waits a minute."""
        tz = ZoneInfo(self.cfg.time_sync.timezone)
        while not stop.is_set():
            delay = self.cfg.time_sync.interval_s
            if time_sync_allowed(dt.datetime.now(tz)):
                try:
                    await self.sync_time()
                except Exception:  # a bug must not stop the gateway; try again next time
                    log.exception("event=time_sync_error")
            else:
                delay = min(delay, 60.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)

    # ------------------------------------------------------------------ poll

    async def poll_once(self) -> list[wire.Sample]:
        results = await asyncio.gather(*(b.poll_cycle(self.cycle) for b in self.buses))
        self.cycle += 1
        return self._samples(results)

    async def _poll_bus_due(self, bus: Bus, now: float) -> list[Reading]:
        """One pass over the bus's parts due at ``now``, earliest deadline first; a
        device's parts that are due together are read in one turn (one reading, one
        timestamp). The pass is one batch; it ends early when a part released meanwhile
        has an earlier deadline than those left (a 1 s part behind eight slow meters), and
        the next pass starts with that one."""
        sched = self.schedules[bus.name]
        parts = self.parts[bus.name]
        by_name = {dev.driver.name: dev for dev in bus.devices}
        left = sched.due(now)
        out: list[Reading] = []
        while left:
            name = left[0][0]
            keys = [k for k in left if k[0] == name]
            dev = by_name[name]
            results: Sequence[PartResult] = ()
            started = time.monotonic()
            try:
                reading, results = await bus.poll_parts(dev, [parts[k].driver.steps
                                                              for k in keys])
                out.append(reading)
            except Exception:  # a bug or an unforeseen OS error must not stop the gateway
                log.exception("event=poll_error bus=%s device=%s", bus.name, name)
                with contextlib.suppress(Exception):
                    await bus.link.close()
            baud = self.baud[bus.name]
            for i, key in enumerate(keys):
                if i < len(results):
                    r = results[i]
                    wire_s = ((r.wire_bytes + SILENCE_CHARS * r.transactions)
                              * mf.char_time(baud) if baud and r.complete else None)
                    sched.done(key, r.started, r.finished, wire_s=wire_s)
                else:  # the turn ended before this part (a timeout): its tick is skipped
                    sched.skip(key, max(started, time.monotonic()))
            st = dev.stats
            if not st.online:  # offline: tried every 2, 4, 8 … of its intervals
                for key in keys:
                    sched.next_due[key] += sched.intervals[key] * (st.backoff - 1)
                st.backoff = min(st.backoff * 2, dev.timing.backoff_max_cycles)
            left = [k for k in left if k[0] != name]
            fresh = sched.due(time.monotonic()) if left else []
            if fresh and fresh[0] not in left:
                break  # a more urgent part came due: it goes first, in the next pass
        return out

    async def poll_due(self, now: float) -> list[wire.Sample]:
        """Poll the devices whose own interval is due at ``now`` (monotonic clock)."""
        results = await asyncio.gather(*(self._poll_bus_due(b, now) for b in self.buses))
        self.cycle += 1
        return self._samples(results)

    def next_due(self) -> float:
        return min(s.next_wake() for s in self.schedules.values())

    def _samples(self, results: list[list[Reading]]) -> list[wire.Sample]:
        samples: list[wire.Sample] = []
        for readings in results:
            for r in readings:
                if not r.values and not r.no_value:
                    continue
                factors = self.ratios.get(r.device)
                raw = ({q: to_primary(v, factors[q]) if q in factors else v
                        for q, v in r.values.items()} if factors else r.values)
                validator = self.validators[r.device]
                values, flags = validator.check(r.ts_ms, raw)
                for q, f in flags.items():
                    log.warning("event=flagged device=%s quantity=%s flag=%s", r.device, q, f)
                for q in r.no_value:  # no figure; the flag says the meter had none
                    flags[q] = NO_VALUE
                    validator.note(NO_VALUE)
                if values or flags:
                    samples.append(wire.Sample(r.device, r.ts_ms, values, flags))
        return samples

    def enqueue(self, samples: list[wire.Sample]) -> int:
        devices = {s.device: self.meta[s.device] for s in samples}

        def build(seq: int) -> tuple[bytes, int]:
            batch = wire.Batch(self.cfg.site, self.cfg.gateway, seq, int(time.time() * 1000),
                               devices, samples)
            return wire.encode_batch(batch), len(samples)

        seq = self.queue.append(build, int(time.time() * 1000))
        log.info("event=batch_queued seq=%d samples=%d", seq, len(samples))
        return seq

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        devices: dict[str, Any] = {}
        ok = failed = 0
        lat = 0.0
        for b in self.buses:
            for dev in b.devices:
                s = dev.stats
                ok += s.ok
                failed += s.failed
                lat += s.latency_sum_s
                devices[dev.driver.name] = {
                    "online": s.online, "ok": s.ok, "failed": s.failed,
                    "timeouts": s.timeouts, "frame_errors": s.frame_errors,
                    "exceptions": s.exceptions, "busy": s.busy,
                    "latency_ms": round(s.last_latency_s * 1000, 1),
                }
        q = self.queue.stats()
        flags: dict[str, int] = defaultdict(int)
        for v in self.validators.values():
            for k, n in v.counts.items():
                flags[k] += n
        polls = ok + failed
        return {
            "ts": int(time.time() * 1000),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "cycles": self.cycle,
            "poll_success_rate": round(ok / polls, 4) if polls else None,
            "poll_latency_ms": round(lat / polls * 1000, 1) if polls else None,
            "queue": {"depth": q.depth, "bytes": q.bytes, "dropped_batches": q.dropped_batches,
                      "dropped_samples": q.dropped_samples, "next_seq": q.next_seq},
            "mqtt": {"connected": self.uplink.connected.is_set(), "acked": self.uplink.acked,
                     "in_flight": self.uplink.in_flight, "connects": self.uplink.connects,
                     "confirmed_stored": self.uplink.confirmed,
                     "unconfirmed": self.uplink.unconfirmed, "resent": self.uplink.resent},
            "flags": dict(flags),
            "devices": devices,
            **({"commands": self.commands.stats()} if self.commands is not None else {}),
            **({"time_syncs": self.time_syncs} if self.cfg.time_sync.enabled else {}),
            "schedule": {name: self.schedule_figures(name) for name in self.schedules},
        }

    def schedule_figures(self, bus: str) -> dict[str, Any]:
        """One bus's schedule for the health message: the line budget (the intervals' wire
        minimum over the intervals: the share of the line they ask for, > 1 cannot be kept),
        the measured load, and per interval and per device part the cycle figures (see
        ``PollSchedule.by_interval`` / ``figures``). Intervals are keyed by their seconds."""
        sc = self.schedules[bus]
        budget = sc.line_budget()
        devices: dict[str, dict[str, Any]] = {}
        split = Counter(device for device, _ in sc.intervals)
        for (device, iv), figs in sc.figures().items():
            # which quantities go at which interval, where a device has more than one
            names = ({"quantities": list(self.parts[bus][(device, iv)].quantities)}
                     if split[device] > 1 else {})
            devices.setdefault(device, {})[f"{iv:g}"] = {**figs, **names}
        return {
            "baud": self.baud[bus],
            "line_budget": None if budget is None else round(budget, 4),
            "line_load": round(sc.line_load(), 4),
            "intervals": {f"{iv:g}": figs for iv, figs in sc.by_interval().items()},
            "devices": devices,
        }

    def _save_baselines(self) -> None:
        self.queue.set_state("baselines", {
            name: {q: list(vt) for q, vt in v.baselines.items()}
            for name, v in self.validators.items()})

    # ------------------------------------------------------------------ run

    async def _forward(self, stop: asyncio.Event) -> None:
        last_flush = time.monotonic()
        while not stop.is_set():
            self.uplink.pump()
            if time.monotonic() - last_flush >= 1.0:
                await asyncio.to_thread(self.queue.flush_acks)
                last_flush = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)

    async def run(self, stop: asyncio.Event) -> None:
        q = self.queue.stats()
        log.info("event=gateway_start site=%s gateway=%s buses=%d devices=%d queued=%d "
                 "next_seq=%d", self.cfg.site, self.cfg.gateway, len(self.buses),
                 len(self.cfg.devices), q.depth, q.next_seq)
        commands = None
        if self.commands is not None:
            self.commands.attach(self.uplink.client, asyncio.get_running_loop())
            commands = asyncio.create_task(self.commands.run(stop))
            log.info("event=commands_enabled topic=%s devices=%d keys=%s", self.commands.topic,
                     len(self.commands.targets), ",".join(self.commands.keys))
        self.uplink.start()
        forward = asyncio.create_task(self._forward(stop))
        syncing = None
        if self.cfg.time_sync.enabled and self.dlt645_buses:
            syncing = asyncio.create_task(self._time_sync_loop(stop))
        # systemd (Type=notify, WatchdogSec): ready once config, profiles and queue are open;
        # pets come from the poll loop, so a wedged bus or a deadlock gets us restarted
        watchdog = Watchdog()
        sd_notify("READY=1")
        next_health = time.monotonic() + min(self.cfg.poll.health_interval_s, 5.0)
        try:
            while not stop.is_set():
                samples = await self.poll_due(time.monotonic())
                watchdog.alive()
                if samples:
                    await asyncio.to_thread(self.enqueue, samples)
                    self.uplink.pump()
                if time.monotonic() >= next_health:
                    h = self.health()
                    self.uplink.publish_health(h)
                    log.info("event=health cycles=%d success_rate=%s queue_depth=%d dropped=%d "
                             "acked=%d", h["cycles"], h["poll_success_rate"], h["queue"]["depth"],
                             h["queue"]["dropped_batches"], h["mqtt"]["acked"])
                    await asyncio.to_thread(self._save_baselines)
                    next_health = time.monotonic() + self.cfg.poll.health_interval_s
                # the schedule skips missed ticks rather than burst
                delay = max(0.0, self.next_due() - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            stop.set()
            await forward
            if commands is not None:
                await commands
            if syncing is not None:
                await syncing
            # a clean stop forwards what it can for a few seconds; the rest waits on disk
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and self.uplink.connected.is_set():
                self.uplink.pump()
                if self.queue.stats().depth == 0:
                    break
                await asyncio.sleep(0.05)
            depth = self.queue.stats().depth
            if depth:
                log.warning("event=shutdown_queued batches=%d", depth)
            self._save_baselines()
            self.uplink.stop()
            self.queue.close()
            if self.commands is not None:
                self.commands.store.close()
            for b in self.buses:
                await b.close()
