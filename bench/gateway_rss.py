"""RSS and CPU of ``enmon gateway run`` polling 32 simulated meters every 10 s.

Starts a real mosquitto (free loopback port, temp dir), 32 simulated Eastron SDM630
meters on one pty RS-485 bus with 9600-baud line timing, and the gateway as its own
process started as a Pi starts it: the ``ExecStart=`` and ``Environment=`` of
``deploy/pi/systemd/enmon-gateway@.service`` (the ``enmon`` console script of this venv,
``gateway run -c FILE``). Samples the gateway's VmRSS every second and
its CPU time (utime + stime from /proc) over the run; prints peak RSS, mean RSS after
the first cycle and CPU as a percentage of one core, and what the resident memory is at
the end (``/proc/PID/smaps``: Python's heap — objects and code — and each shared
library). For the baseline, the same figures
for a bare ``python -c 'import time; time.sleep(…)'`` started the same way.

    python bench/gateway_rss.py [--seconds 60] [--meters 32] [--interval 10] [--tls]

``--tls``: the broker demands TLS (a throw-away CA made with the ``openssl`` command) and
the gateway's config names its CA in ``mqtt.tls``, so the gateway loads OpenSSL.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from enmon.localrun import Mosquitto
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from gateway.profile import ModbusProfile

TICK = os.sysconf("SC_CLK_TCK")
UNIT = Path(__file__).resolve().parents[1] / "deploy/pi/systemd/enmon-gateway@.service"


def deployed_command(config: Path) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart (with this venv's ``enmon`` and ``config``) and Environment."""
    text = UNIT.read_text()
    (start,) = re.findall(r"^ExecStart=(.+)$", text, re.M)
    argv = shlex.split(start)
    argv[0] = str(Path(sys.executable).with_name(Path(argv[0]).name))
    argv = [str(config) if a.startswith("/etc/enmon/") else a for a in argv]
    env: dict[str, str] = {}
    for line in re.findall(r"^Environment=(.+)$", text, re.M):
        env.update(kv.split("=", 1) for kv in shlex.split(line))
    return argv, env


def contributors(pid: int, top: int = 5) -> str:
    """Where the resident memory is: anonymous memory (Python's objects and code, malloc)
    and the largest shared libraries, from /proc/PID/smaps."""
    by: dict[str, int] = {}
    name = "anon"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            path = head[5] if len(head) > 5 else ""
            name = Path(path).name.split(".cpython")[0] if path.startswith("/") else "anon"
        elif head[0] == "Rss:":
            by[name] = by.get(name, 0) + int(head[1])
    parts = sorted(by.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{n} {kb / 1024:.1f}" for n, kb in parts)


def rss_kb(pid: int) -> tuple[int, int]:
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
    return rss, hwm


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def watch(proc: subprocess.Popen[bytes], seconds: float) -> tuple[float, float, float]:
    """(peak RSS MB, mean RSS MB after 10 s, CPU % of one core) over ``seconds``."""
    t0 = time.monotonic()
    c0 = cpu_s(proc.pid)
    samples: list[tuple[float, int]] = []
    peak = 0
    while time.monotonic() - t0 < seconds:
        if proc.poll() is not None:
            raise SystemExit(f"process exited early with {proc.returncode}")
        rss, hwm = rss_kb(proc.pid)
        peak = max(peak, hwm)
        samples.append((time.monotonic() - t0, rss))
        time.sleep(1.0)
    cpu = (cpu_s(proc.pid) - c0) / (time.monotonic() - t0) * 100
    late = [r for t, r in samples if t >= 10] or [r for _, r in samples]
    return peak / 1024, sum(late) / len(late) / 1024, cpu


def make_certs(d: Path) -> tuple[str, Path]:
    """(mosquitto TLS lines, the CA file) for a broker on 127.0.0.1."""
    d.mkdir(parents=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return (f"cafile {d / 'ca.pem'}\ncertfile {d / 'server.pem'}\nkeyfile {d / 'server.key'}\n",
            d / "ca.pem")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--meters", type=int, default=32)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--tls", action="store_true", help="MQTT over TLS (mqtt.tls in the config)")
    args = ap.parse_args()
    seconds = min(args.seconds, 600)  # bounded
    p = library.load("eastron-sdm630")
    assert isinstance(p, ModbusProfile)
    values = {q: 1.0 for q in p.quantities} | {"frequency_hz": 50.0, "voltage_l1_v": 230.0,
                                               "voltage_l2_v": 230.0, "voltage_l3_v": 230.0}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        tls_conf, ca = make_certs(tmp / "certs") if args.tls else ("", None)
        mq = Mosquitto(workdir=tmp / "mosquitto", extra_conf=tls_conf)
        mq.start()
        sim = ModbusSlaveServer({u: Unit(p, values) for u in range(1, args.meters + 1)},
                                link="pty", baud=9600).start()
        cfg = {
            "site": "bench", "gateway": "gw-rss", "state_dir": str(tmp / "state"),
            "mqtt": {"host": mq.host, "port": mq.port,
                     **({"tls": {"ca_file": str(ca)}} if ca else {})},
            "poll": {"interval_s": args.interval, "health_interval_s": 60},
            "devices": [{"name": f"m{u}", "profile": "eastron-sdm630", "unit_id": u,
                         "transport": {"type": "serial", "port": sim.device}}
                        for u in range(1, args.meters + 1)],
        }
        (tmp / "gw.yaml").write_text(yaml.safe_dump(cfg))
        log = (tmp / "gw.log").open("wb")
        argv, unit_env = deployed_command(tmp / "gw.yaml")
        env = dict(os.environ, **unit_env, ENMON_LOG_LEVEL="WARNING")
        gw = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        base = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds + 5})"],
                                env=env)
        try:
            peak, mean, cpu = watch(gw, seconds)
            where = contributors(gw.pid)
            b_peak, b_mean = rss_kb(base.pid)[1] / 1024, rss_kb(base.pid)[0] / 1024
        finally:
            gw.terminate()
            base.terminate()
            gw.wait(20)
            base.wait(5)
            sim.stop()
            mq.stop()
        con = sqlite3.connect(tmp / "state" / "queue.db")
        batches = int(con.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0])
        con.close()
        errors = (tmp / "gw.log").read_text(errors="replace").count("event=timeout")
    print(f"{' '.join(Path(a).name if a in (argv[0], argv[-1]) else a for a in argv)} "
          f"({' '.join(f'{k}={v}' for k, v in unit_env.items())})")
    print(f"enmon gateway run: {args.meters} RTU meters (9600 baud, pty), "
          f"MQTT {'over TLS' if args.tls else 'without TLS'}, poll every "
          f"{args.interval:g} s, {seconds:g} s run, {batches} batches committed and sent, "
          f"{errors} timeouts")
    print(f"  RSS peak {peak:.1f} MB, mean after 10 s {mean:.1f} MB (target <= 40 MB); "
          f"CPU {cpu:.2f} % of one core")
    print(f"  baseline: bare python interpreter RSS {b_mean:.1f} MB (peak {b_peak:.1f} MB) "
          f"-> gateway adds {mean - b_mean:.1f} MB")
    print(f"  resident at the end, MB: {where}")


if __name__ == "__main__":
    main()
