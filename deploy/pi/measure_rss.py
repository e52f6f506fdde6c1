"""Print the gateway's memory use (VmRSS / VmHWM) while it polls simulated meters.

    .venv/bin/python deploy/pi/measure_rss.py [--meters 4] [--seconds 30]

Sizes MemoryMax= in the systemd unit. Runs a real mosquitto and `enmon sim run` on free
loopback ports; bounded in time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import yaml

from enmon.localrun import Mosquitto, free_port, wait_for


def _open(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    enmon = str(Path(sys.executable).with_name("enmon"))
    work = Path(tempfile.mkdtemp(prefix="enmon-rss-"))
    mq = Mosquitto(workdir=work / "mq")
    mq.start()
    ports = [free_port() for _ in range(args.meters)]
    sims = [
        subprocess.Popen(
            [enmon, "sim", "run", "--port", str(p)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    gw = None
    try:
        for port in ports:
            wait_for(partial(_open, port), 30, f"sim on {port}")
        cfg = {
            "site": "bench",
            "gateway": "gw",
            "state_dir": str(work / "state"),
            "mqtt": {"host": "127.0.0.1", "port": mq.port},
            "poll": {"interval_s": 1},
            "devices": [
                {
                    "name": f"m{i}",
                    "profile": "eastron-sdm630",
                    "unit_id": 1,
                    "transport": {"type": "tcp", "host": "127.0.0.1", "port": p},
                }
                for i, p in enumerate(ports)
            ],
        }
        (work / "gw.yaml").write_text(yaml.safe_dump(cfg))
        gw = subprocess.Popen(
            [enmon, "gateway", "run", "-c", str(work / "gw.yaml")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline and gw.poll() is None:
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        status = Path(f"/proc/{gw.pid}/status").read_text().splitlines()
        mem = {
            k: v.split()[0]
            for k, v in (ln.split(":", 1) for ln in status)
            if k in ("VmRSS", "VmHWM")
        }
        print(
            f"gateway meters={args.meters} seconds={args.seconds:.0f} "
            f"rss_kb={mem['VmRSS']} peak_rss_kb={mem['VmHWM']}"
        )
    finally:
        for proc in [*sims, *([gw] if gw else [])]:
            proc.terminate()
            proc.wait(15)
        mq.stop()


if __name__ == "__main__":
    main()
