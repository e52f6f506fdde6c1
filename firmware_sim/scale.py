"""Scale mode: thousands of simulated meters behind many simulated gateways, on one box.

For benchmarks of the server side (broker, ingest, InfluxDB, rules): each
simulated gateway publishes wire-contract batches (``enmon.wire``) for its meters
on its own telemetry topic with its own ``seq``, QoS 1, as ``enmon gateway run``
would after polling. The meters are campus buildings (mains + four sub-item
meters each, types cycling office/hospital/school/mall) stepped by one
:class:`~firmware_sim.campus.sim.CampusSim`, so the load has the shape of real
days and the counters integrate the power they report.

Polling thousands of real Modbus endpoints is the gateway's benchmark, not this
one: here the gateways themselves are simulated. Everything is bounded: counts
(:data:`LIMITS`), the run time, and the messages in flight per connection.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from enmon import wire
from firmware_sim.campus.config import CampusModel
from firmware_sim.campus.sim import CampusSim

log = logging.getLogger("enmon.sim.scale")

LIMITS: dict[str, float] = {"gateways": 5000, "meters": 100_000, "duration_s": 3600.0,
                             "connections": 500}
_TYPES = ("office", "hospital", "school", "mall")
_ITEMS = ("mains", "lighting_sockets", "hvac", "power", "special")


def scale_campus(*, gateways: int, meters_per_gateway: int, site: str = "scale",
                 seed: int = 1) -> CampusModel:
    """A generated campus: each gateway fronts buildings of five meters each."""
    if not 1 <= gateways <= LIMITS["gateways"]:
        raise ValueError(f"gateways must be 1..{LIMITS['gateways']}")
    if not 1 <= gateways * meters_per_gateway <= LIMITS["meters"]:
        raise ValueError(f"gateways × meters_per_gateway must be 1..{LIMITS['meters']}")
    buildings: list[dict[str, Any]] = []
    n = 0
    for g in range(gateways):
        left = meters_per_gateway
        b = 0
        while left > 0:
            k = min(5, left)
            bid = f"b{g:04d}-{b}"
            buildings.append({
                "id": bid, "type": _TYPES[n % len(_TYPES)],
                "floor_area_m2": 5000 + (n * 7919) % 40_000, "gateway": f"gw{g:04d}",
                "meters": [{"device": f"{bid}-{_ITEMS[i]}", "measures": _ITEMS[i],
                            "profile": "eastron-sdm630"} for i in range(k)],
            })
            left -= k
            b += 1
            n += 1
    return CampusModel.model_validate({"site": site, "seed": seed, "buildings": buildings})


@dataclass
class ScaleStats:
    gateways: int = 0
    meters: int = 0
    rounds: int = 0
    batches: int = 0
    acked: int = 0
    readings: int = 0
    values: int = 0
    bytes: int = 0
    overruns: int = 0
    sim_s: float = 0.0
    encode_s: float = 0.0
    wall_s: float = 0.0
    waits: int = 0

    def summary(self) -> dict[str, float]:
        w = max(self.wall_s, 1e-9)
        return {
            "gateways": self.gateways, "meters": self.meters, "rounds": self.rounds,
            "batches": self.batches, "acked": self.acked, "readings": self.readings,
            "values": self.values, "mb": round(self.bytes / 1e6, 2),
            "readings_per_s": round(self.readings / w, 1),
            "batches_per_s": round(self.batches / w, 1),
            "sim_us_per_reading": round(1e6 * self.sim_s / max(self.readings, 1), 2),
            "encode_us_per_reading": round(1e6 * self.encode_s / max(self.readings, 1), 2),
            "overruns": self.overruns, "wall_s": round(self.wall_s, 2),
        }


@dataclass
class _Conn:
    """One MQTT connection carrying several simulated gateways (bounded in flight)."""

    client: Any
    window: int
    in_flight: int = 0
    acked: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    room: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.room = threading.Condition(self.lock)

    def on_publish(self, *_: object) -> None:
        with self.room:
            self.in_flight -= 1
            self.acked += 1
            self.room.notify()


def run_scale(*, host: str, port: int, gateways: int = 100, meters_per_gateway: int = 10,
              interval_s: float = 5.0, duration_s: float = 30.0, connections: int = 20,
              lean: bool = True, window: int = 50, site: str = "scale", seed: int = 1,
              ) -> ScaleStats:
    """Publish for ``duration_s``: every ``interval_s`` each gateway sends one batch.

    Args:
        lean: the import counter and total power only (2 values a reading) instead of
            every quantity an SDM630 has (16).
        window: QoS 1 messages in flight per connection; publishing waits beyond it.
    """
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    if not 0 < duration_s <= LIMITS["duration_s"]:
        raise ValueError(f"duration_s must be in (0, {LIMITS['duration_s']:g}]")
    connections = max(1, min(connections, gateways, int(LIMITS["connections"])))
    model = scale_campus(gateways=gateways, meters_per_gateway=meters_per_gateway, site=site,
                         seed=seed)
    start = time.time()
    sim = CampusSim(model, start=start)
    by_gw: dict[str, list[str]] = {}
    for dev, info in sim.devices.items():
        by_gw.setdefault(info.gateway, []).append(dev)
    meta = {dev: wire.DeviceMeta(info.building, info.category, info.energy_type, info.profile)
            for dev, info in sim.devices.items()}
    keep = ("active_energy_import_kwh", "active_power_kw")
    conns: list[_Conn] = []
    for i in range(connections):
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"enmon-scale-{site}-{i}",
                             protocol=paho.MQTTv5)
        client.max_inflight_messages_set(window)
        conn = _Conn(client, window)
        client.on_publish = conn.on_publish
        client.connect(host, port, keepalive=60)
        client.loop_start()
        conns.append(conn)
    gws = sorted(by_gw)
    seq = dict.fromkeys(gws, 0)
    st = ScaleStats(gateways=len(gws), meters=len(sim.devices))
    t0 = time.monotonic()
    next_round = t0
    try:
        while time.monotonic() - t0 < duration_s:
            now = time.time()
            for gi, gw in enumerate(gws):
                s0 = time.perf_counter()
                sim.advance_to(now, max_step=max(interval_s, 60.0))
                ts = int(now * 1000)
                samples = []
                for dev in by_gw[gw]:
                    values = sim.reading(dev, energy_only=lean)
                    if lean:
                        values = {q: values[q] for q in keep}
                    samples.append(wire.Sample(dev, ts, values))
                s1 = time.perf_counter()
                batch = wire.Batch(site, gw, seq[gw], int(time.time() * 1000),
                                   {d: meta[d] for d in by_gw[gw]}, samples)
                payload = wire.encode_batch(batch)
                s2 = time.perf_counter()
                st.sim_s += s1 - s0
                st.encode_s += s2 - s1
                conn = conns[gi % len(conns)]
                with conn.room:
                    while conn.in_flight >= conn.window:
                        st.waits += 1
                        if not conn.room.wait(30.0):
                            raise TimeoutError("broker stopped acknowledging for 30 s")
                    conn.in_flight += 1
                conn.client.publish(wire.telemetry_topic(site, gw), payload, qos=1)
                seq[gw] += 1
                st.batches += 1
                st.readings += len(samples)
                st.values += sum(len(s.values) for s in samples)
                st.bytes += len(payload)
            st.rounds += 1
            next_round += interval_s
            delay = next_round - time.monotonic()
            if delay < 0:
                st.overruns += 1
                next_round = time.monotonic()
            elif time.monotonic() - t0 + delay < duration_s:
                time.sleep(delay)
            else:
                break
        # let the last acknowledgements arrive (bounded)
        deadline = time.monotonic() + 30.0
        while any(c.in_flight for c in conns) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        st.wall_s = time.monotonic() - t0
        st.acked = sum(c.acked for c in conns)
        for c in conns:
            c.client.disconnect()
            c.client.loop_stop()
    log.info("event=scale_done %s", " ".join(f"{k}={v}" for k, v in st.summary().items()))
    return st
