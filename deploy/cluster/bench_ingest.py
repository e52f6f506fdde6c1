"""How many readings per second N ingest workers store, end to end, on this machine.

    .venv/bin/python deploy/cluster/bench_ingest.py [--workers 1,2,3] [--batches 1500]

Real parts only: mosquitto, influxd 1.6 and `enmon ingest run` processes on a shared
subscription, fed by one paho publisher. A batch is one gateway poll of 10 meters with 10
quantities each (100 readings). The clock runs from the first publish until influxd holds
every reading, so the figure includes MQTT, parsing, line protocol and the durable write.
Prints readings/s per run and the ratio to the first run (the baseline, same machine,
same minute): on a 2-core box shared by broker, database and publisher, read the ratio,
not the absolute number. Bounded: a fixed number of batches, a deadline per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import InfluxDB1, Mosquitto, wait_for
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch, telemetry_topic

METERS, QUANTITIES = 10, 10
QNAMES = [
    "active_power_kw",
    "active_energy_import_kwh",
    "voltage_l1_v",
    "voltage_l2_v",
    "voltage_l3_v",
    "current_l1_a",
    "current_l2_a",
    "current_l3_a",
    "power_factor",
    "frequency_hz",
][:QUANTITIES]


def _query(url: str, q: str) -> dict[str, Any]:
    import json

    data = urllib.parse.urlencode({"db": "enmon", "q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as r:
        body: dict[str, Any] = json.load(r)
    return body


def _stored(url: str) -> int:
    res = _query(url, 'SELECT count("active_power_kw") FROM "meter"')["results"][0]
    series = res.get("series")
    return int(series[0]["values"][0][1]) if series else 0


def _payloads(batches: int, gateways: int) -> list[tuple[str, bytes]]:
    now = int(time.time() * 1000) - batches * 1000
    devices = {
        f"m{i}": DeviceMeta("b1", "01A00", "electricity", "eastron-sdm630") for i in range(METERS)
    }
    out = []
    for seq in range(batches):
        gw = f"gw-{seq % gateways}"
        ts = now + seq * 1000
        samples = [
            Sample(f"m{i}", ts, {q: float(seq + i + k) for k, q in enumerate(QNAMES)})
            for i in range(METERS)
        ]
        out.append(
            (
                telemetry_topic("bench", gw),
                encode_batch(Batch("bench", gw, seq // gateways, ts, devices, samples)),
            )
        )
    return out


def run_once(workers: int, batches: int, work: Path) -> float:
    enmon = str(Path(sys.executable).with_name("enmon"))
    mq, db = Mosquitto(workdir=work / "mq"), InfluxDB1(workdir=work / "db")
    mq.start()
    db.start()
    _query(db.url, 'CREATE DATABASE "enmon"')
    cfg = work / "ingest.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": mq.port},
                "influx": {"api": "v1", "url": db.url, "database": "enmon"},
                "metrics": {"stats_interval_s": 3600, "completeness_interval_s": 0},
            }
        )
    )
    procs, logs = [], []
    try:
        for i in range(workers):
            log = work / f"w{i}.log"
            logs.append(log)
            with log.open("wb") as f:
                procs.append(
                    subprocess.Popen(
                        [enmon, "ingest", "run", "-c", str(cfg), "--client-id", f"bench-{i}"],
                        stdout=f,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, "ENMON_LOG_LEVEL": "INFO"},
                    )
                )
        wait_for(
            lambda: all("event=subscribed" in p.read_text() for p in logs), 60, "workers subscribed"
        )
        items = _payloads(batches, gateways=20)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv5)
        pub.max_inflight_messages_set(100)
        pub.max_queued_messages_set(0)
        pub.connect("127.0.0.1", mq.port)
        pub.loop_start()
        expected = batches * METERS
        t0 = time.perf_counter()
        infos = [pub.publish(t, p, qos=1) for t, p in items]
        for info in infos:
            info.wait_for_publish(120)
        deadline = time.monotonic() + 300
        while _stored(db.url) < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers={workers}: not all stored after 300 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        pub.loop_stop()
        pub.disconnect()
        return expected * QUANTITIES / elapsed
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        mq.stop()
        db.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", default="1,2,3")
    ap.add_argument("--batches", type=int, default=1500)
    ap.add_argument("--repeat", type=int, default=2, help="rounds, interleaved (median kept)")
    args = ap.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    readings = args.batches * METERS * QUANTITIES
    rates: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(args.repeat):
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="enmon-bench-") as d:
                rate = run_once(n, args.batches, Path(d))
            rates[n].append(rate)
            print(f"round={r} ingest workers={n} readings={readings} readings_per_s={rate:,.0f}")
    base = statistics.median(rates[counts[0]])
    for n in counts:
        med = statistics.median(rates[n])
        print(
            f"median ingest workers={n} readings_per_s={med:,.0f} "
            f"ratio_vs_{counts[0]}={med / base:.2f} cores={os.cpu_count()}"
        )


if __name__ == "__main__":
    main()
