"""History replay and scale mode speak the wire contract through a real mosquitto.

A subscriber parses every message with ``enmon.wire.parse_batch`` — what ingest
does — so a batch the simulator gets wrong fails here, not in a benchmark.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from enmon import wire
from enmon.localrun import Mosquitto
from firmware_sim.campus import CampusSim, load_campus
from firmware_sim.campus_live import served_quantities
from firmware_sim.history import energy_quantities, fill_queues, replay
from firmware_sim.scale import run_scale
from tests.support import wait_until

CAMPUS = Path(__file__).parent / "e2e-campus.yaml"
CST = timezone(timedelta(hours=8))


class Collector:
    """Subscribes to all telemetry and keeps the parsed batches."""

    def __init__(self, mq: Mosquitto) -> None:
        self.batches: list[wire.Batch] = []
        self.dropped = 0
        self.lock = threading.Lock()
        self.ready = threading.Event()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="collector",
                        protocol=paho.MQTTv5)
        c.on_connect = lambda cl, *_: cl.subscribe(wire.TELEMETRY_FILTER, qos=1)
        c.on_subscribe = lambda *_: self.ready.set()
        c.on_message = self._on_message
        c.connect(mq.host, mq.port)
        c.loop_start()
        self.client = c
        assert self.ready.wait(10)

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        parsed = wire.parse_batch(bytes(msg.payload), topic=msg.topic)
        with self.lock:
            self.batches.append(parsed.batch)
            self.dropped += len(parsed.dropped)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_history_replays_in_seq_order_with_monotonic_counters(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    campus = load_campus(CAMPUS)
    end = datetime(2026, 3, 4, 12, 0, tzinfo=CST).timestamp()
    sim = CampusSim(campus, start=end - 5 * 86_400, run_start=end)
    served = served_quantities(sim)
    stats = fill_queues(sim, tmp_path, until=end, dense_from=end - 86_400,
                        quantities=energy_quantities(sim, served), max_samples=150)
    # 4 days hourly + 1 day at 15 minutes, for every device
    assert stats.samples == len(sim.devices) * (4 * 24 + 96)
    col = Collector(mosquitto)
    try:
        acked = replay(tmp_path, campus.site, sim.gateways(), host=mosquitto.host,
                       port=mosquitto.port, timeout_s=60)
        assert sum(acked.values()) == sum(stats.batches.values())
        wait_until(lambda: len(col.batches) == sum(stats.batches.values()), 20,
                   "every history batch at the subscriber")
    finally:
        col.close()
    assert col.dropped == 0
    by_gw: dict[str, list[wire.Batch]] = defaultdict(list)
    for b in col.batches:
        by_gw[b.gateway].append(b)
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for gw, batches in by_gw.items():
        assert [b.seq for b in batches] == list(range(len(batches))), gw  # in order, no gaps
        for b in batches:
            for s in b.samples:
                assert b.devices[s.device].building == sim.devices[s.device].building
                for q, v in s.values.items():
                    if q.endswith(("_kwh", "_m3", "_gj", "_t")):
                        series[(s.device, q)].append((s.ts, v))
    assert {d for d, _ in series} == set(sim.devices) - {"steam1-flue", "campus-weather"}
    for key, pts in series.items():
        ts = [t for t, _ in pts]
        assert ts == sorted(ts) and len(set(ts)) == len(ts), key
        values = [v for _, v in pts]
        assert all(b >= a for a, b in itertools.pairwise(values)), key
        assert values[-1] > values[0], key  # the campus used energy


def test_scale_mode_publishes_every_gateway_in_order(mosquitto: Mosquitto) -> None:
    col = Collector(mosquitto)
    try:
        t0 = time.monotonic()
        st = run_scale(host=mosquitto.host, port=mosquitto.port, gateways=40,
                       meters_per_gateway=12, interval_s=1.0, duration_s=3.0, connections=4)
        assert time.monotonic() - t0 < 40  # bounded in time (plus the ack drain)
        assert st.meters == 480 and st.acked == st.batches == 40 * st.rounds
        wait_until(lambda: len(col.batches) == st.batches, 20, "all scale batches")
    finally:
        col.close()
    assert col.dropped == 0
    seqs: dict[str, list[int]] = defaultdict(list)
    for b in col.batches:
        seqs[b.gateway].append(b.seq)
        assert len(b.samples) == 12 and b.site == "scale"
    assert len(seqs) == 40
    assert all(v == list(range(st.rounds)) for v in seqs.values())
