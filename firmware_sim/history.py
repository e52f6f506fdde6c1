"""History generation: a year-to-date of campus readings, delivered the way a gateway would.

A real gateway that was offline (or newly connected) replays its disk queue:
batches in ``seq`` order, original reading timestamps, through the broker,
ingest and into InfluxDB. History here takes the same road: the simulator is
stepped from 1 January to now, each gateway's readings are packed into
wire-contract batches (``enmon.wire``) and appended to *that gateway's own disk
queue* (:class:`gateway.diskqueue.DiskQueue`). Then either the real gateway,
started on that state directory, replays it before its first live poll, or
:func:`replay` forwards it with the gateway's own uplink code. Either way the
quota and budget rules get real history, and ingest sees ordinary traffic.

Counters are quantised through each device's register map (what the gateway
would have read off the wire), so the last history reading and the first live
one can never make a counter step backwards. Gauges keep full precision.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from enmon import wire
from enmon.quantities import is_counter
from firmware_sim.campus.sim import CampusSim

log = logging.getLogger("enmon.sim.history")

MAX_SAMPLES_PER_BATCH = 200
_F32 = struct.Struct(">f")


@dataclass(slots=True)
class HistoryStats:
    samples: int = 0
    values: int = 0
    batches: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0


def _quantisers(sim: CampusSim) -> dict[str, dict[str, Callable[[float], float]]]:
    """device → counter → value as the device's registers would carry it."""
    from gateway import library
    from gateway.profile import Field_, ModbusProfile, from_canonical, to_canonical

    def through(f: Field_) -> Callable[[float], float]:
        """Round a value the way its register type does (word order cannot change a value)."""
        if f.type == "f64":
            return float
        if f.type == "f32":
            return lambda v: (_F32.unpack(_F32.pack((v - f.offset) / f.scale))[0] * f.scale
                              + f.offset)
        if f.type in ("u16", "i16", "u32", "i32", "u64", "i64"):
            return lambda v: round((v - f.offset) / f.scale) * f.scale + f.offset
        return lambda v: to_canonical(f, from_canonical(f, v))

    out: dict[str, dict[str, Callable[[float], float]]] = {}
    for dev, info in sim.devices.items():
        p = library.load(info.profile)
        if not isinstance(p, ModbusProfile):
            continue
        for f in p.fields():
            if is_counter(f.quantity):
                out.setdefault(dev, {})[f.quantity] = through(f)
    return out


# What a lean history keeps: the counter that measures consumption of each energy type
# and the headline gauge of each device.
CONSUMPTION_COUNTERS = ("active_energy_import_kwh", "water_volume_m3", "gas_volume_m3",
                        "heat_energy_gj", "steam_mass_t")
ENERGY_GAUGES = ("active_power_kw", "gas_flow_m3_h", "steam_flow_t_h", "heat_power_kw",
                 "flue_o2_pct", "flue_temp_c", "water_flow_m3_h", "outdoor_temp_c")


def energy_quantities(sim: CampusSim, served: dict[str, list[str]] | None = None
                      ) -> dict[str, list[str]]:
    """device → counters + headline gauges (of what it serves, if ``served`` is given).

    A year of every voltage and phase current is ~5x the data and tells the quota
    and budget rules nothing; use this for demos and benchmarks that need the
    year-to-date fast (samples are then small: ~1000 fit in one batch).
    """
    out: dict[str, list[str]] = {}
    for dev in sim.devices:
        have = served[dev] if served is not None else list(sim.reading(dev))
        out[dev] = [q for q in have if q in CONSUMPTION_COUNTERS or q in ENERGY_GAUGES]
    return out


_FAST = {"active_energy_import_kwh", "active_power_kw"}


def sample_times(start: float, until: float, interval_s: float,
                 dense_from: float | None = None, dense_interval_s: float = 900.0
                 ) -> Iterator[float]:
    """Instants aligned to whole intervals: coarse until ``dense_from``, then dense."""
    step = interval_s
    t = (start // step + 1) * step
    while t <= until:
        if dense_from is not None and t >= dense_from and step != dense_interval_s:
            step = dense_interval_s
            t = (t // step) * step
            continue
        yield t
        t += step


def generate(sim: CampusSim, *, until: float, interval_s: float = 3600.0,
             dense_from: float | None = None, dense_interval_s: float = 900.0,
             quantities: dict[str, list[str]] | None = None,
             max_samples: int = MAX_SAMPLES_PER_BATCH,
             ) -> Iterator[tuple[str, list[wire.Sample]]]:
    """Step ``sim`` up to ``until`` and yield (gateway, samples) chunks in time order.

    Dead devices (scenario ``meter_dies``) produce no sample, as on a real bus.
    """
    quant = _quantisers(sim)
    fast = {dev: quantities is not None and set(quantities[dev]) <= _FAST for dev in sim.devices}
    pending: dict[str, list[wire.Sample]] = {gw: [] for gw in sim.gateways()}
    for t in sample_times(sim.t, until, interval_s, dense_from, dense_interval_s):
        sim.advance_to(t, max_step=interval_s if t < (dense_from or until) else dense_interval_s)
        ts = round(t * 1000)
        for dev, info in sim.devices.items():
            if not sim.answering(dev):
                continue
            if quantities is not None:
                keep = quantities[dev]
                values = sim.reading(dev, energy_only=fast[dev])
                values = {q: values[q] for q in keep if q in values}
            else:
                values = sim.reading(dev)
            for q, fn in quant.get(dev, {}).items():
                if q in values:
                    values[q] = fn(values[q])
            if not values:
                continue  # nothing of this device is kept: no empty sample to count or store
            bucket = pending[info.gateway]
            bucket.append(wire.Sample(dev, ts, values))
            if len(bucket) >= max_samples:
                yield info.gateway, bucket
                pending[info.gateway] = []
    for gw, bucket in pending.items():
        if bucket:
            yield gw, bucket


def device_meta(sim: CampusSim) -> dict[str, dict[str, wire.DeviceMeta]]:
    """gateway → device → the tags its batches carry."""
    out: dict[str, dict[str, wire.DeviceMeta]] = {}
    for dev, info in sim.devices.items():
        out.setdefault(info.gateway, {})[dev] = wire.DeviceMeta(
            info.building, info.category, info.energy_type, info.profile)
    return out


def fill_queues(sim: CampusSim, state_root: Path, *, until: float, interval_s: float = 3600.0,
                dense_from: float | None = None, dense_interval_s: float = 900.0,
                quantities: dict[str, list[str]] | None = None,
                max_samples: int = MAX_SAMPLES_PER_BATCH,
                max_queue_mb: float = 256.0) -> HistoryStats:
    """Write history into each gateway's disk queue at ``state_root/<gateway>/queue.db``.

    Start ``enmon gateway run`` on that state directory and it replays the
    history (with its own ``seq`` numbers, which then simply continue live).
    """
    from gateway.diskqueue import DiskQueue

    started = time.monotonic()
    meta = device_meta(sim)
    queues = {gw: DiskQueue(state_root / gw / "queue.db", max_bytes=int(max_queue_mb * 1e6))
              for gw in sim.gateways()}
    stats = HistoryStats()
    try:
        for gw, samples in generate(sim, until=until, interval_s=interval_s,
                                    dense_from=dense_from, dense_interval_s=dense_interval_s,
                                    quantities=quantities, max_samples=max_samples):
            devices = {s.device: meta[gw][s.device] for s in samples}

            def build(seq: int, gw: str = gw, samples: list[wire.Sample] = samples,
                      devices: dict[str, wire.DeviceMeta] = devices) -> tuple[bytes, int]:
                now_ms = int(time.time() * 1000)
                data = wire.encode_batch(wire.Batch(sim.model.site, gw, seq, now_ms, devices,
                                                    samples))
                stats.bytes += len(data)
                return data, len(samples)

            queues[gw].append(build, samples[-1].ts)
            stats.batches[gw] = stats.batches.get(gw, 0) + 1
            stats.samples += len(samples)
            stats.values += sum(len(s.values) for s in samples)
    finally:
        for q in queues.values():
            q.close()
    stats.seconds = time.monotonic() - started
    log.info("event=history_queued site=%s samples=%d batches=%d bytes=%d seconds=%.1f",
             sim.model.site, stats.samples, sum(stats.batches.values()), stats.bytes,
             stats.seconds)
    return stats


def replay(state_root: Path, site: str, gateways: list[str], *, host: str, port: int,
           timeout_s: float = 600.0) -> dict[str, int]:
    """Forward each gateway's queued history with the gateway's own uplink code.

    Returns gateway → batches acknowledged by the broker. Bounded by ``timeout_s``.
    """
    from gateway.config import MQTT
    from gateway.diskqueue import DiskQueue
    from gateway.mqtt import Uplink

    acked: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    for gw in gateways:
        queue = DiskQueue(state_root / gw / "queue.db")
        # a loader: done when the broker has it (the ingest behind it confirms nothing here)
        uplink = Uplink(MQTT(host=host, port=port, client_id=f"enmon-history-{gw}",
                             end_to_end=False), site, gw,
                        queue)
        uplink.start()
        try:
            while queue.stats().depth and time.monotonic() < deadline:
                uplink.pump()
                queue.flush_acks()
                time.sleep(0.02)
        finally:
            acked[gw] = uplink.acked
            uplink.stop()
            queue.close()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"history replay did not finish in {timeout_s:.0f} s")
    return acked
