"""The uplink to a broker that demands TLS and a password (real mosquitto, real certs).

The password comes from an environment variable and must never reach the log;
a wrong password is a logged, retried refusal, not a crash.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import Mosquitto, Part
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from tests.support import wait_until

pytestmark = pytest.mark.slow
SECRET = "s3cret-Pa55-never-logged"


def make_certs(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=enmon-test-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    for f in d.iterdir():
        f.chmod(0o644)
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


@pytest.fixture
def secure_broker(tmp_path: Path) -> Mosquitto:
    certs = make_certs(tmp_path / "certs")
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "gw-09", SECRET], check=True)
    pw.chmod(0o644)
    extra = (f"cafile {certs['ca']}\ncertfile {certs['cert']}\nkeyfile {certs['key']}\n"
             f"password_file {pw}\n")
    server = Mosquitto(workdir=tmp_path / "mosquitto", extra_conf=extra)
    conf_text = server.command  # keep the fixture's own config, minus anonymous access
    server.command = lambda: _no_anonymous(conf_text())  # type: ignore[method-assign]
    server.start()
    server.ca = certs["ca"]  # type: ignore[attr-defined]
    yield server  # type: ignore[misc]
    server.stop()


def _no_anonymous(cmd: list[str]) -> list[str]:
    conf = Path(cmd[-1])
    conf.write_text(conf.read_text().replace("allow_anonymous true", "allow_anonymous false"))
    return cmd


def test_tls_and_password_from_env(tmp_path: Path, secure_broker: Mosquitto) -> None:
    ca: Path = secure_broker.ca  # type: ignore[attr-defined]
    got: list[bytes] = []
    lock = threading.Lock()
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="sec-sub", protocol=paho.MQTTv5)
    sub.username_pw_set("gw-09", SECRET)
    sub.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    sub.on_connect = lambda c, *a: c.subscribe("enmon/v1/+/+/telemetry", qos=1)
    sub.on_message = lambda c, u, m: (lock.acquire(), got.append(m.payload), lock.release())
    sub.connect(secure_broker.host, secure_broker.port)
    sub.loop_start()

    sdm = library.load("eastron-sdm630")
    sim = ModbusSlaveServer({1: Unit(sdm, {"voltage_l1_v": 230.0})},  # type: ignore[arg-type]
                            framing="tcp", link="tcp").start()

    def config(name: str, password_env: str) -> Path:
        cfg = {
            "site": "hosp-a", "gateway": name, "state_dir": str(tmp_path / name),
            "mqtt": {"host": secure_broker.host, "port": secure_broker.port,
                     "username": "gw-09", "password_env": password_env,
                     "tls": {"ca_file": str(ca)}, "reconnect_max_s": 2},
            "poll": {"interval_s": 0.2},
            "devices": [{"name": "m", "profile": "eastron-sdm630", "quantities": ["voltage_l1_v"],
                         "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}}],
        }
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump(cfg))
        return p

    good = Part(name="good", args=["gateway", "run", "-c", str(config("gw-09", "GW_PASS"))],
                workdir=tmp_path, env={"GW_PASS": SECRET})
    bad = Part(name="bad", args=["gateway", "run", "-c", str(config("gw-10", "GW_PASS"))],
               workdir=tmp_path, env={"GW_PASS": "wrong"})
    try:
        good.start()
        bad.start()
        wait_until(lambda: len(got) >= 3, 30, "telemetry over TLS with a password")
        wait_until(lambda: bad.log_tail().count("event=mqtt_connect_refused") >= 2, 30,
                   "the wrong password refused, twice (retried with backoff)")
        assert bad.running, "a refused login must not stop the gateway"
        assert good.stop() == 0
    finally:
        good.kill()
        bad.kill()
        sim.stop()
        sub.loop_stop()
        sub.disconnect()
    for part in (good, bad):
        assert SECRET not in part.log_tail(10**6)
        assert "wrong" not in part.log_tail(10**6)
    assert b'"gateway":"gw-10"' not in b"".join(got)
