"""What the simulated campus costs: physics per reading, history generation, scale mode.

Three figures, each with a baseline measured in the same run:

1. physics — µs per device reading (stepping every building and boiler, then the
   reading), full and energy-only; baseline: building the same dict from constants.
2. history — readings/s into the gateways' disk queues for the demo campus (lean,
   hourly); baseline: the same number of samples with constant values through the
   same encode + disk queue path (the I/O share).
3. scale mode — readings/s acknowledged by a real mosquitto for G gateways × M meters;
   baseline: the same batch count pre-encoded and published raw with paho (the
   broker + client share). Bounded: a few seconds each.

    python bench/sim_campus.py [--gateways 200 --meters 25 --seconds 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def physics(rounds: int = 2000) -> None:
    from firmware_sim.campus import CampusSim, load_campus

    campus = load_campus()
    t0 = time.time()
    sim = CampusSim(campus, start=t0)
    devs = list(sim.devices)
    elec = [d for d in devs if sim.devices[d].measures in
            ("mains", "lighting_sockets", "hvac", "power", "special")]

    def run(energy_only: bool) -> float:
        start = time.perf_counter()
        t = sim.t
        for _ in range(rounds):
            t += 60.0
            sim.advance_to(t, max_step=60.0)
            for d in devs:
                sim.reading(d, energy_only=energy_only and d in elec)
        return (time.perf_counter() - start) / (rounds * len(devs)) * 1e6

    full = statistics.median(run(False) for _ in range(3))
    lean = statistics.median(run(True) for _ in range(3))
    const = {q: 1.0 for q in sim.reading(devs[0])}
    start = time.perf_counter()
    for _ in range(rounds):
        for _d in devs:
            dict(const)
    base = (time.perf_counter() - start) / (rounds * len(devs)) * 1e6
    print(f"physics  {len(devs)} devices, {rounds} one-minute steps: full reading "
          f"{full:.1f} µs, energy-only {lean:.1f} µs per device reading "
          f"(baseline dict of constants {base:.2f} µs; full/baseline {full / base:.0f}x)")


def history(days: float = 60.0) -> None:
    from enmon import wire
    from firmware_sim.campus import CampusSim, load_campus
    from firmware_sim.campus_live import served_quantities
    from firmware_sim.history import energy_quantities, fill_queues
    from gateway.diskqueue import DiskQueue

    campus = load_campus()
    end = time.time()
    sim = CampusSim(campus, start=end - days * 86_400, run_start=end)
    q = energy_quantities(sim, served_quantities(sim))
    with tempfile.TemporaryDirectory() as d:
        st = fill_queues(sim, Path(d), until=end, quantities=q, max_samples=1000)
    rate = st.samples / st.seconds
    # baseline: the same samples (constant values) through encode + the same disk queue
    sample = {"active_energy_import_kwh": 1.0, "active_power_kw": 1.0}
    n_batches = sum(st.batches.values())
    per_batch = st.samples // max(n_batches, 1)
    with tempfile.TemporaryDirectory() as d:
        dq = DiskQueue(Path(d) / "q.db", max_bytes=10**9)
        meta = {"m": wire.DeviceMeta("b", "01000", "electricity", "p")}
        start = time.perf_counter()
        for i in range(n_batches):
            samples = [wire.Sample("m", 1_700_000_000_000 + j * 1000, dict(sample))
                       for j in range(per_batch)]

            def build(seq: int, samples: list[wire.Sample] = samples) -> tuple[bytes, int]:
                b = wire.Batch(campus.site, "gw", seq, 0, meta, samples)
                return wire.encode_batch(b), len(samples)

            dq.append(build, i)
        base_s = time.perf_counter() - start
        dq.close()
    base_rate = n_batches * per_batch / base_s
    print(f"history  {days:g} days of the demo campus, hourly, lean: {st.samples:,} readings in "
          f"{st.seconds:.2f} s = {rate:,.0f} readings/s (baseline encode + disk queue only "
          f"{base_rate:,.0f} readings/s; physics share {1 - rate / base_rate:.0%})")


def scale(gateways: int, meters: int, seconds: float) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from enmon import wire
    from enmon.localrun import Mosquitto
    from firmware_sim.scale import run_scale

    with tempfile.TemporaryDirectory() as d:
        mq = Mosquitto(workdir=Path(d) / "mq")
        mq.start()
        try:
            st = run_scale(host=mq.host, port=mq.port, gateways=gateways,
                           meters_per_gateway=meters, interval_s=1.0, duration_s=seconds,
                           connections=20)
            s = st.summary()
            # baseline: the same number of batches of the same size, pre-encoded, raw paho
            payload = b"x" * max(1, st.bytes // max(st.batches, 1))
            acked = [0]
            c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw",
                            protocol=paho.MQTTv5)
            c.max_inflight_messages_set(50)
            c.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
            c.connect(mq.host, mq.port)
            c.loop_start()
            topic = wire.telemetry_topic("bench", "gw")
            start = time.perf_counter()
            for sent in range(st.batches):
                while sent - acked[0] >= 50:  # the same in-flight window as scale mode
                    time.sleep(0.0005)
                c.publish(topic, payload, qos=1)
            deadline = time.monotonic() + 30
            while acked[0] < st.batches and time.monotonic() < deadline:
                time.sleep(0.001)
            raw_s = time.perf_counter() - start
            c.disconnect()
            c.loop_stop()
        finally:
            mq.stop()
    busy = st.sim_s + st.encode_s
    print(f"scale    {gateways} gateways × {meters} meters, 1 s interval, {seconds:g} s: "
          f"{s['readings_per_s']:,} readings/s offered, {st.acked}/{st.batches} batches acked, "
          f"{st.overruns} overruns; sim {s['sim_us_per_reading']} µs + encode "
          f"{s['encode_us_per_reading']} µs per reading ({busy:.2f} s busy of {st.wall_s:.1f} s)")
    raw_rate = st.batches * (st.readings / max(st.batches, 1)) / raw_s
    capacity = st.readings / max(busy, 1e-9)
    print(f"         baseline raw paho, same {st.batches} batches of {len(payload)} B: "
          f"{st.batches / raw_s:,.0f} batches/s = {raw_rate:,.0f} readings/s; the simulator's "
          f"own capacity (sim + encode) is {capacity:,.0f} readings/s per core = "
          f"{capacity / raw_rate:.2f}x the raw publish rate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gateways", type=int, default=200)
    ap.add_argument("--meters", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    physics()
    history()
    scale(args.gateways, args.meters, args.seconds)


if __name__ == "__main__":
    main()
