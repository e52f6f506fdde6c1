"""Ingest throughput: sustained readings/s of one and of two workers, against the raw
line-protocol write rate of the same influxd measured in the same run; peak RSS.

    .venv/bin/python bench/ingest_throughput.py [--messages 4000] [--samples 10] [--profile]
                                                [--gzip] [--rounds 1]

``--profile`` also runs one worker under cProfile (a ``sitecustomize`` on its
PYTHONPATH starts the profiler and writes the stats at exit) and prints where the
worker's CPU went during the drain; that run's rate is not a figure (the profiler
slows it). ``--rounds K`` repeats the phases K times and prints the median and
range of every figure (the box is shared: single runs scatter). Each worker phase is
compared with the mean of the raw rate measured just before it and just after it.
``--gzip`` also posts the raw lines gzip-compressed. Each phase prints the CPU seconds
influxd, mosquitto and the workers spent per million readings: on a small box they share the cores,
which bounds what any worker can reach.

Method. A backlog of telemetry batches (4 KB-ish, like a gateway's) is published
into each worker's persistent session while it is offline, then the worker is
started and timed until the last message is acknowledged (== durably written, by
the ingest guarantee): the end is the last acknowledgement's time as the workers
report it (``enmon_ingest_last_ack_timestamp_seconds``), so ``/metrics`` is polled only
4 times a second — at 50 polls/s the polling itself took ~7 % of a worker's CPU.
Draining a backlog measures the worker, not the Python publisher (paho publishes
~11 k msg/s, facts.md). The baseline posts the very lines ingest would write for the
same batches, 5000 lines per request, one writer, into a fresh database of the same
influxd. Figures are machine-dependent: read the ratios. Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import os
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enmon.localrun import InfluxDB1, Mosquitto, Part, free_port
from enmon.quantities import QUANTITIES
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch
from ingest.pipeline import Processor, TimeLimits

DEADLINE_S = 300
DRAIN_POLL_S = 0.25
QTY = [q for q in QUANTITIES if q.endswith(("_v", "_a", "_kw"))][:8]


def batches(gw: str, n: int, samples: int) -> list[bytes]:
    base = int(time.time() * 1000) - 86_400_000
    out = []
    for seq in range(n):
        out.append(encode_batch(Batch(
            site="bench", gateway=gw, seq=seq, sent_at=base + seq * 1000,
            devices={f"d{j}": DeviceMeta("b1", "01A00", "electricity", "x")
                     for j in range(samples)},
            samples=[Sample(f"d{j}", base + seq * 1000, {q: seq + j + k / 10
                                                          for k, q in enumerate(QTY)})
                     for j in range(samples)])))
    return out


def query(url: str, db: str, q: str) -> dict[str, Any]:
    import json

    data = urllib.parse.urlencode({"db": db, "q": q}).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=30) as r:
        return dict(json.load(r))


def raw_rate(influx: InfluxDB1, payloads: list[bytes], db: str, *, compress: bool = False
             ) -> tuple[float, int, Cpu]:
    """Readings/s of posting ingest's own lines straight to /write (one writer); with
    ``compress``, gzip-compressed bodies (compression timed too: a writer pays for it)."""
    query(influx.url, db, f'CREATE DATABASE "{db}"')
    proc = Processor(worker="bench", limits=TimeLimits(past_flag_s=1e9))
    lines: list[str] = []
    readings = 0
    for p in payloads:
        r = proc.process(p, "enmon/v1/bench/gw-b/telemetry", int(time.time() * 1000))
        lines.extend(r.lines)
        readings += r.readings
    params = urllib.parse.urlencode({"db": db, "precision": "ms"})
    chunks = ["\n".join(lines[i:i + 5000]).encode() for i in range(0, len(lines), 5000)]
    headers = {"Content-Encoding": "gzip"} if compress else {}
    with Cpu(influxd=influx.pid, bench=os.getpid()) as cpu:
        t0 = time.perf_counter()
        for body in chunks:
            data = gzip.compress(body, compresslevel=1) if compress else body
            req = urllib.request.Request(f"{influx.url}/write?{params}", data=data,
                                         method="POST", headers=headers)
            with urllib.request.urlopen(req, timeout=60) as resp:
                assert resp.status == 204
        dt = time.perf_counter() - t0
    return readings / dt, readings, cpu


def publish_backlog(mq: Mosquitto, payloads: list[bytes]) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{uuid.uuid4().hex[:6]}",
                    protocol=paho.MQTTv5)
    c.max_inflight_messages_set(500)
    c.connect(mq.host, mq.port)
    c.loop_start()
    infos = [c.publish("enmon/v1/bench/gw-b/telemetry", p, qos=1) for p in payloads]
    deadline = time.monotonic() + DEADLINE_S
    for i in infos:
        i.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
    c.loop_stop()
    c.disconnect()


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    m = re.search(rf"^{name}{{[^}}]*}} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0 if it is gone)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds of named processes over a block (who pays for each reading)."""

    def __init__(self, **pids: int | None) -> None:
        self.pids = pids
        self.used: dict[str, float] = {}

    def __enter__(self) -> Cpu:
        self._t0 = {k: cpu_s(p) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.used = {k: cpu_s(p) - self._t0[k] for k, p in self.pids.items()}

    def per_million(self, readings: float) -> str:
        return ", ".join(f"{k} {v / readings * 1e6:.2f} s" for k, v in self.used.items())


def peak_rss_mb(pid: int) -> float:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1]) / 1024
    return 0.0


_SITECUSTOMIZE = """
import atexit, cProfile, os
_p = cProfile.Profile()
_p.enable()
atexit.register(lambda: (_p.disable(), _p.dump_stats(os.environ["ENMON_BENCH_PROFILE"])))
"""


def profile_env(tmp: Path, out: Path) -> dict[str, str]:
    """Env that makes a worker process profile itself into ``out`` until it exits."""
    d = tmp / "profhook"
    d.mkdir(exist_ok=True)
    (d / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return {"PYTHONPATH": str(d), "ENMON_BENCH_PROFILE": str(out)}


def print_profile(path: Path, top: int = 14) -> None:
    """Cumulative share of the worker's stages, then the functions with most own time."""
    import pstats

    st = pstats.Stats(str(path))
    stats = st.stats  # type: ignore[attr-defined]
    total = st.total_tt  # type: ignore[attr-defined]
    stages = {"process": "decode+validate+lines (Processor.process)",
              "decode_strict": "  typed decode + checks", "meter_lines": "  line building",
              "_process_lenient": "  lenient path", "write": "database write (all writers)",
              "data_received": "MQTT receive (socket reads parsed)",
              "_publish_received": "  PUBLISH packets to deliveries",
              "ack_many": "PUBACKs", "select": "idle in select/epoll"}
    print(f"worker profile: {total:.2f} s in Python frames (start-up included); stages:")
    for name, label in stages.items():
        ct = sum(v[3] for k, v in stats.items() if k[2] == name)
        print(f"  {ct / total * 100:5.1f} %  {label}")
    print("  most own time:")
    rows = [(v[2], f"{Path(k[0]).name}:{k[2]}") for k, v in stats.items()]
    for tt, where in sorted(rows, reverse=True)[:top]:
        print(f"  {tt / total * 100:5.1f} %  {where}")


def worker_rate(tmp: Path, mq: Mosquitto, influx: InfluxDB1, payloads: list[bytes],
                n_workers: int, db: str, raw_readings: int,
                extra_env: dict[str, str] | None = None) -> tuple[float, float, list[float]]:
    query(influx.url, db, f'CREATE DATABASE "{db}"')
    cfg = tmp / f"ingest-{db}.yaml"
    cfg.write_text(yaml.safe_dump({
        "mqtt": {"host": mq.host, "port": mq.port, "client_id": "x"},
        "influx": {"api": "v1", "url": influx.url, "database": db},
        "group": db,
        "metrics": {"stats_interval_s": 5, "completeness_interval_s": 0},
    }))
    ports = [free_port() for _ in range(n_workers)]
    parts = [Part(name=f"{db}-{i}", workdir=tmp,
                  env={"ENMON_LOG_LEVEL": "INFO", **(extra_env or {})},
                  args=["--log-level", "INFO", "ingest", "run", "-c", str(cfg),
                        "--client-id", f"{db}-{i}", "--metrics-port", str(ports[i])])
             for i in range(n_workers)]

    def acked() -> float:
        return sum(metric(p, "enmon_ingest_acked_total") for p in ports)

    def wait(cond: Callable[[], bool], what: str, poll_s: float = 0.02) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while not cond():
            if time.monotonic() > deadline:
                for p in parts:
                    print(f"--- {p.name} log tail:\n{p.log_tail(3000)}", file=sys.stderr)
                raise SystemExit(f"timed out waiting for {what} (acked {acked():.0f})")
            time.sleep(poll_s)

    try:
        return _drain(parts, ports, mq, influx, payloads, db, acked, wait, raw_readings)
    finally:
        for p in parts:
            p.stop()


def _drain(parts: list[Part], ports: list[int], mq: Mosquitto, influx: InfluxDB1,
           payloads: list[bytes], db: str, acked: Callable[[], float],
           wait: Callable[..., None],
           raw_readings: int) -> tuple[float, float, list[float]]:
    # 1. create the sessions (subscribed), then take the workers away
    for p in parts:
        p.start()
        wait(functools.partial(_subscribed, p), f"{p.name} subscribed")
    for p in parts:
        p.stop()
    # 2. the backlog waits in their sessions (mosquitto splits it among the group)
    publish_backlog(mq, payloads)
    # 3. start and time the drain
    for p in parts:
        p.start()
    # the clock starts when the workers' /metrics answer (interpreter start-up excluded;
    # the MQTT connection and the drain are inside the measurement)
    wait(lambda: all(_up(port) for port in ports), "workers up")
    cpu = Cpu(influxd=influx.pid, mosquitto=mq.pid,
              **{f"worker{i + 1}": p.proc.pid if p.proc else None for i, p in enumerate(parts)})
    with cpu:
        t0 = time.time()
        # polled slowly (each poll costs the worker an HTTP request): the drain ends at the
        # last acknowledgement, which every worker reports as a unix time
        wait(lambda: acked() >= len(payloads), "the backlog to drain", DRAIN_POLL_S)
        dt = max(metric(p, "enmon_ingest_last_ack_timestamp_seconds") for p in ports) - t0
    rss = [peak_rss_mb(p.proc.pid) for p in parts if p.proc is not None]
    # count(*) answers one count per field: the readings are the quantity fields' counts
    series = query(influx.url, db, "SELECT count(*) FROM meter")["results"][0]["series"][0]
    readings = float(sum(v for c, v in zip(series["columns"], series["values"][0], strict=True)
                         if c.removeprefix("count_") in QUANTITIES))
    if readings != raw_readings:
        raise SystemExit(f"{db}: {readings:.0f} readings stored, {raw_readings} sent")
    cpus[db] = cpu
    return len(payloads) / dt, readings / dt, rss


cpus: dict[str, Cpu] = {}


def _subscribed(p: Part) -> bool:
    return "event=subscribed" in p.log_tail(10**6)


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1):
            return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--samples", type=int, default=10, help="samples per batch")
    ap.add_argument("--profile", action="store_true",
                    help="also profile one worker's drain (cProfile) and print the split")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat raw / 1 worker / 2 workers this many times; print medians")
    ap.add_argument("--gzip", action="store_true",
                    help="also post the raw lines gzip-compressed (is compression worth it?)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        mq, influx = Mosquitto(workdir=tmp / "mq"), InfluxDB1(workdir=tmp / "influx")
        mq.start()
        influx.start()
        try:
            payloads = batches("gw-b", a.messages, a.samples)
            size = sum(map(len, payloads)) / len(payloads)
            per_msg = a.samples * len(QTY)
            print(f"batches: {a.messages} x {a.samples} samples x {len(QTY)} quantities "
                  f"= {per_msg} readings/message, {size:.0f} B/message")
            figures: dict[str, list[float]] = {"raw": [], "w1": [], "w2": [], "r1": [],
                                               "r2": [], "rss": []}
            n = 0
            for rnd in range(1, a.rounds + 1):
                if a.rounds > 1:
                    print(f"-- round {rnd}/{a.rounds}")
                raw, n, cpu = raw_rate(influx, payloads, f"bench_raw{rnd}")
                print(f"raw line-protocol /write, same influxd, 1 writer: {raw:,.0f} "
                      f"readings/s ({n} readings); CPU per 1 M readings: {cpu.per_million(n)}")
                if a.gzip:
                    gz, _, gcpu = raw_rate(influx, payloads, f"bench_raw_gzip{rnd}",
                                           compress=True)
                    print(f"  the same gzip-compressed (level 1): {gz:,.0f} readings/s, ratio "
                          f"to plain {gz / raw:.2f}; CPU per 1 M readings: "
                          f"{gcpu.per_million(n)}")
                figures["raw"].append(raw)
                for workers in (1, 2):
                    db = f"bench_w{workers}r{rnd}"
                    msgs, rps, rss = worker_rate(tmp, mq, influx, payloads, workers, db, n)
                    # the baseline of this phase: the raw rate measured just before it and
                    # again just after (the box is shared: its load drifts between phases)
                    after, _, acpu = raw_rate(influx, payloads, f"bench_raw{rnd}_{workers}")
                    figures["raw"].append(after)
                    base = (raw + after) / 2
                    print(f"ingest, {workers} worker{'s' if workers > 1 else ''}: {rps:,.0f} "
                          f"readings/s ({msgs:,.0f} msg/s), ratio to raw {rps / base:.2f} "
                          f"(raw before {raw:,.0f}, after {after:,.0f}), "
                          f"peak RSS {', '.join(f'{r:.0f} MB' for r in rss)}")
                    print(f"  CPU per 1 M readings: {cpus[db].per_million(n)}; raw after: "
                          f"{acpu.per_million(n)}")
                    figures[f"w{workers}"].append(rps)
                    figures[f"r{workers}"].append(rps / base)
                    figures["rss"].extend(rss)
                    raw = after
            if a.rounds > 1:
                print(f"-- {a.rounds} rounds, median (min–max); every reading verified stored")
                for key, label, fmt in (("raw", "raw readings/s", ",.0f"),
                                        ("w1", "1 worker readings/s", ",.0f"),
                                        ("r1", "1 worker ratio to raw", ".2f"),
                                        ("w2", "2 workers readings/s", ",.0f"),
                                        ("r2", "2 workers ratio to raw", ".2f"),
                                        ("rss", "peak RSS per worker, MB", ".0f")):
                    v = figures[key]
                    print(f"  {label}: {statistics.median(v):{fmt}} "
                          f"({min(v):{fmt}}–{max(v):{fmt}})")
            if a.profile:
                out = tmp / "worker.prof"
                worker_rate(tmp, mq, influx, payloads, 1, "bench_prof", n,
                            extra_env=profile_env(tmp, out))
                print_profile(out)
        finally:
            mq.stop()
            influx.stop()


if __name__ == "__main__":
    main()
