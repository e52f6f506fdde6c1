"""Ingest's memory under a flood of large payloads while InfluxDB is down.

    .venv/bin/python bench/ingest_flood_rss.py [--big 40 --big-mb 10 --max 400]

Starts a real mosquitto (no message size limit, the worst case: a broker configured by
someone else) and ``enmon ingest run`` as its own process, pointed at an InfluxDB that is
down, so nothing can be written or acknowledged. Then publishes ``--big`` payloads of
``--big-mb`` MB (over the wire contract's 256 KiB: refused, only their hash is kept) and
``--max`` payloads of exactly the largest valid size. Samples the worker's peak RSS
(VmHWM) and prints it beside its idle RSS measured in the same run, and the bound the
settings imply (``max_queued_bytes`` + receive maximum × 256 KiB held by the pipeline).
Asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import Mosquitto, free_port
from enmon.wire import MAX_PAYLOAD_BYTES


def hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_log(path: Path, marker: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while marker not in path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise SystemExit(f"no {marker!r} in {path} after {timeout} s")
        time.sleep(0.1)


def valid_max_payload(seq: int) -> bytes:
    """A syntactically valid batch padded to just under the limit (a long profile field
    would be refused; padding goes into JSON whitespace, which the contract allows)."""
    body = (b'{"v":1,"site":"s1","gateway":"gw-1","seq":%d,"sent_at":1763726405123,'
            b'"devices":{"main":{"energy_type":"electricity"}},"samples":[]}' % seq)
    return body[:-1] + b" " * (MAX_PAYLOAD_BYTES - len(body)) + b"}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--big", type=int, default=40, help="oversized payloads to send")
    ap.add_argument("--big-mb", type=float, default=10.0)
    ap.add_argument("--max", type=int, default=400, help="maximum-size valid payloads")
    ap.add_argument("--receive-maximum", type=int, default=100)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        mq = Mosquitto(workdir=work / "mosquitto")
        mq.start()
        cfg = work / "ingest.yaml"
        cfg.write_text(yaml.safe_dump({
            "mqtt": {"host": mq.host, "port": mq.port, "client_id": "flood-ingest"},
            "influx": {"url": f"http://127.0.0.1:{free_port()}", "database": "enmon"},
            "batch": {"receive_maximum": a.receive_maximum},
            "metrics": {"completeness_interval_s": 0}}))
        log = work / "ingest.log"
        with log.open("wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "enmon", "ingest", "run", "-c",
                                     str(cfg)], stdout=f, stderr=subprocess.STDOUT)
        try:
            wait_log(log, "event=subscribed", 30)
            time.sleep(1.0)  # settle: the idle figure
            idle = hwm_mb(proc.pid)
            pub = paho.Client(CallbackAPIVersion.VERSION2, client_id="flood",
                              protocol=paho.MQTTv5)
            pub.max_inflight_messages_set(20)
            pub.connect(mq.host, mq.port)
            pub.loop_start()
            t0 = time.monotonic()
            big = b"x" * int(a.big_mb * 1e6)
            infos = [pub.publish("enmon/v1/s1/gw-1/telemetry", big, qos=1)
                     for _ in range(a.big)]
            infos += [pub.publish("enmon/v1/s1/gw-1/telemetry", valid_max_payload(i), qos=1)
                      for i in range(a.max)]
            deadline = time.monotonic() + 300
            for i in infos:
                i.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            sent_s = time.monotonic() - t0
            time.sleep(3.0)  # let the worker take what the broker may send it
            peak = hwm_mb(proc.pid)
            pub.loop_stop()
            pub.disconnect()
        finally:
            proc.terminate()
            proc.wait(20)
            mq.stop()
    flood_mb = (a.big * a.big_mb * 1e6 + a.max * MAX_PAYLOAD_BYTES) / 1e6
    bound = 32 + a.receive_maximum * MAX_PAYLOAD_BYTES / 1e6
    print(f"flood: {a.big} × {a.big_mb:g} MB + {a.max} × {MAX_PAYLOAD_BYTES / 1024:.0f} KiB "
          f"= {flood_mb:,.0f} MB published in {sent_s:.1f} s, InfluxDB down")
    print(f"ingest RSS: idle {idle:.0f} MB, peak {peak:.0f} MB "
          f"(+{peak - idle:.0f} MB; ratio peak/idle {peak / idle:.2f})")
    print(f"bound from the settings: max_queued_bytes 32 MB + receive_maximum "
          f"{a.receive_maximum} × 256 KiB = {bound:.0f} MB above idle")


if __name__ == "__main__":
    main()
