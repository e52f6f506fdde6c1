"""Scale-out as deployed: three `enmon ingest run` worker processes share one
subscription ($share/ingest/…) on a locked-down mosquitto (one ingest identity per
worker, ingest-1 … ingest-3, with ingest's ACL; client ids bound to user names), six
gateways publish with their own credentials, and every reading is stored once in
influxd. One worker is SIGKILLed mid-stream and restarted with the same client id — what
systemd or compose do — and still nothing is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.localrun import InfluxDB1, Mosquitto, free_port
from enmon.wire import Batch, DeviceMeta, Sample, encode_batch, telemetry_topic
from tests.conftest import INFLUX_DB
from tests.deploy.mqttc import Probe
from tests.support import influx_rows, wait_until

pytestmark = pytest.mark.slow

ENMON = str(Path(sys.executable).with_name("enmon"))
SITE = "campus"
GATEWAYS = [f"gw-{i}" for i in range(1, 7)]
BATCHES, SAMPLES = 40, 5  # per gateway: 6 x 40 x 5 = 1200 readings of 2 values each
T0 = 1_763_726_400_000


def _batch(gw: str, seq: int) -> bytes:
    samples = [
        Sample(
            "main",
            T0 + (seq * SAMPLES + j) * 1000,
            {"active_power_kw": seq + j / 10, "active_energy_import_kwh": 1000.0 + seq},
        )
        for j in range(SAMPLES)
    ]
    return encode_batch(
        Batch(
            SITE,
            gw,
            seq,
            T0 + seq * 5000,
            {"main": DeviceMeta("hall", "01A00", "electricity", "eastron-sdm630")},
            samples,
        )
    )


class Worker:
    def __init__(self, name: str, cfg: Path, password: str, log_dir: Path) -> None:
        self.name, self.cfg, self.password, self.log_dir = name, cfg, password, log_dir
        self.metrics_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.log_dir / f"{self.name}.log").open("ab")
        env = {**os.environ, "ENMON_MQTT_PASSWORD": self.password}
        self.proc = subprocess.Popen(
            [
                ENMON,
                "ingest",
                "run",
                "-c",
                str(self.cfg),
                "--client-id",
                self.name,
                "--metrics-port",
                str(self.metrics_port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def messages(self) -> int:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        m = re.search(r"^enmon_ingest_messages_total\{[^}]*\} (\d+)", text, re.M)
        return int(m.group(1)) if m else 0

    def subscribed(self) -> bool:
        """The worker logged its SUBACK (its own log line, one per connection)."""
        log = self.log_dir / f"{self.name}.log"
        return log.exists() and "event=subscribed" in log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def workers(tmp_path: Path, influxdb: InfluxDB1) -> Iterator[tuple[list[Worker], Path, Mosquitto]]:
    secrets = tmp_path / "secrets"
    # one identity per worker (ingest-1 …): the broker binds a client id to its user name
    names = [f"ingest-{i}" for i in (1, 2, 3)]
    make_credentials(
        secrets,
        add=[*(gateway_principal(SITE, g) for g in GATEWAYS),
             *(service_principal(n) for n in names)],
    )
    broker = Mosquitto(
        workdir=tmp_path / "mq", extra_conf=(secrets / "broker/enmon-listener.conf").read_text()
    )
    broker.start()
    ws = []
    for name in names:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(
            yaml.safe_dump(
                {
                    "mqtt": {
                        "host": "127.0.0.1",
                        "port": broker.port,
                        "username": name,
                        "password_env": "ENMON_MQTT_PASSWORD",
                    },
                    "influx": {"api": "v1", "url": influxdb.url, "database": INFLUX_DB},
                    "group": "ingest",
                }
            )
        )
        password = (secrets / "clients" / name / "password").read_text().strip()
        ws.append(Worker(name, cfg, password, tmp_path))
    try:
        for w in ws:
            w.start()
        yield ws, secrets, broker
    finally:
        for w in ws:
            w.stop()
        broker.stop()


def test_three_workers_store_every_reading_once(
    workers: tuple[list[Worker], Path, Mosquitto], influxdb: InfluxDB1
) -> None:
    ws, secrets, _broker = workers
    # a message published while no member has joined the group has nowhere to go
    wait_until(lambda: all(w.subscribed() for w in ws), timeout=60, what="three workers subscribed")
    probes = []
    for g in GATEWAYS:
        user = f"{SITE}.{g}"
        p = Probe(
            _broker.port,
            username=user,
            password=(secrets / "clients" / user / "password").read_text().strip(),
        )
        assert p.connect() == "ok"
        probes.append((g, p))
    try:
        half = BATCHES // 2
        for seq in range(half):
            for g, p in probes:
                p.publish(telemetry_topic(SITE, g), _batch(g, seq))
        # a worker dies mid-stream (power cut, OOM); its session keeps its share
        ws[1].stop(signal.SIGKILL)
        for seq in range(half, BATCHES):
            for g, p in probes:
                p.publish(telemetry_topic(SITE, g), _batch(g, seq))
        ws[1].start()  # restarted with the same --client-id, as Restart=always would
        expected = len(GATEWAYS) * BATCHES * SAMPLES

        def stored() -> int:
            rows = influx_rows(
                influxdb.url, INFLUX_DB, 'SELECT count("active_power_kw") FROM "meter"'
            )
            return int(rows[0]["count"]) if rows else 0

        wait_until(lambda: stored() >= expected, timeout=120, what=f"{expected} readings stored")
    finally:
        for _, p in probes:
            p.close()

    rows = influx_rows(
        influxdb.url,
        INFLUX_DB,
        'SELECT "active_power_kw", "active_energy_import_kwh" FROM "meter" GROUP BY "gateway"',
    )
    got: dict[tuple[str, int], tuple[float, float]] = {}
    for r in rows:
        key = (r["gateway"], r["time"])
        assert key not in got, f"{key} stored twice"
        got[key] = (r["active_power_kw"], r["active_energy_import_kwh"])
    want = {
        (g, T0 + (seq * SAMPLES + j) * 1000): (seq + j / 10, 1000.0 + seq)
        for g in GATEWAYS
        for seq in range(BATCHES)
        for j in range(SAMPLES)
    }
    assert got == want
    # every worker took a share of the stream (mosquitto spreads a $share group)
    shares = [w.messages() for w in ws]
    assert all(n > 0 for n in (shares[0], shares[2])), shares
