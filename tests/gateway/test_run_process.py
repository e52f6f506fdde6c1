"""``enmon gateway run`` as a Pi's systemd unit starts it (the console script's ``main``):
it polls and publishes with neither the CLI framework nor OpenSSL, package metadata or
urllib in memory when the config has no TLS (see gateway/service.py).

A real mosquitto and a simulated Modbus TCP meter; the process's own ``sys.modules`` is
written at exit. TLS through the same path: tests/gateway/test_mqtt_security.py; a broker
outage: test_outage.py; signed commands (HMAC with the built-in sha256): test_commands.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import Mosquitto
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from stack.cli import gateway_run_args
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
#: loaded for real (not a deferred placeholder) = kept in memory for the process's life
NOT_IN_A_PLAIN_GATEWAY = ["typer", "click", "rich", "ssl", "_ssl", "_hashlib", "email",
                          "http.client", "urllib.request", "importlib.metadata", "zipfile",
                          "stack.app", "firmware_sim.cli", "ingest.cli", "inspector.cli"]
#: the other protocols' codecs and the signed commands: not in a Modbus-only gateway whose
#: config enables no commands (each loads with a device, or the config, that uses it)
NOT_IN_A_MODBUS_ONLY_GATEWAY = ["gateway.mbus", "gateway.cjt188", "gateway.dlt645",
                                "gateway.serial_line", "gateway.commands"]

CONSOLE_SCRIPT = """
import atexit, json, sys
def dump(path):
    loaded = [n for n, m in sys.modules.items()
              if m is not None and type(m).__name__ != "_Deferred"]
    open(path, "w").write(json.dumps(loaded))
atexit.register(dump, sys.argv[1])
sys.argv = ["enmon", "gateway", "run", "-c", sys.argv[2]]
from stack.cli import main
sys.exit(main())
"""


def test_gateway_run_loads_no_cli_and_no_openssl(tmp_path: Path, mosquitto: Mosquitto) -> None:
    got: list[bytes] = []
    lock = threading.Lock()

    def on_message(c: paho.Client, u: object, m: paho.MQTTMessage) -> None:
        with lock:
            got.append(m.payload)

    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="run-sub", protocol=paho.MQTTv5)
    sub.on_connect = lambda c, *a: c.subscribe("enmon/v1/+/+/telemetry", qos=1)
    sub.on_message = on_message
    sub.connect(mosquitto.host, mosquitto.port)
    sub.loop_start()
    sdm = library.load("eastron-sdm630")
    sim = ModbusSlaveServer({1: Unit(sdm, {"voltage_l1_v": 230.0})},  # type: ignore[arg-type]
                            framing="tcp", link="tcp").start()
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(yaml.safe_dump({
        "site": "s", "gateway": "g", "state_dir": str(tmp_path / "state"),
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
        "poll": {"interval_s": 0.2},
        "devices": [{"name": "m", "profile": "eastron-sdm630", "quantities": ["voltage_l1_v"],
                     "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}}],
    }))
    modules = tmp_path / "modules.json"
    log = (tmp_path / "gw.log").open("wb")
    gw = subprocess.Popen([sys.executable, "-c", CONSOLE_SCRIPT, str(modules), str(cfg)],
                          cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: len(got) >= 2 or gw.poll() is not None, 30, "two batches published")
        assert gw.poll() is None, (tmp_path / "gw.log").read_text()
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(30) == 0, (tmp_path / "gw.log").read_text()
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(10)
        sim.stop()
        sub.loop_stop()
        sub.disconnect()
    assert b'"voltage_l1_v":230' in got[0]
    loaded = set(json.loads(modules.read_text()))
    assert "gateway.agent" in loaded
    assert [m for m in NOT_IN_A_PLAIN_GATEWAY if m in loaded] == []
    assert [m for m in NOT_IN_A_MODBUS_ONLY_GATEWAY if m in loaded] == []


@pytest.mark.parametrize(("argv", "expect"), [
    (["gateway", "run", "-c", "gw.yaml"], (None, "gw.yaml")),
    (["gateway", "run", "--config", "gw.yaml"], (None, "gw.yaml")),
    (["gateway", "run", "--config=gw.yaml"], (None, "gw.yaml")),
    (["gateway", "run", "-cgw.yaml"], (None, "gw.yaml")),
    (["--log-level", "DEBUG", "gateway", "run", "-c", "gw.yaml"], ("DEBUG", "gw.yaml")),
    (["--log-level=warning", "gateway", "run", "-c", "gw.yaml"], ("warning", "gw.yaml")),
    (["gateway", "run", "--help"], None),
    (["gateway", "run", "-c"], None),
    (["gateway", "run", "-c", "gw.yaml", "--help"], None),
    (["gateway", "run", "-c", "--help"], None),
    (["gateway", "check", "-c", "gw.yaml"], None),
    (["--log-level", "gateway", "run", "-c", "gw.yaml"], None),
    ([], None),
])
def test_only_a_plain_gateway_run_skips_typer(argv: list[str],
                                              expect: tuple[str | None, str] | None) -> None:
    """Anything but ``[--log-level L] gateway run -c FILE`` (help, a typo, another
    command) goes through typer, which answers it as before."""
    assert gateway_run_args(argv) == expect


def test_gateway_run_help_and_errors_still_come_from_typer(tmp_path: Path) -> None:
    def enmon(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "from stack.cli import main; main()",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=60)

    r = enmon("gateway", "run", "--help")
    assert r.returncode == 0 and "--config" in r.stdout, r.stderr
    r = enmon("gateway", "run", "-c", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and r.stderr.startswith("error: "), r.stderr
    assert "missing.yaml" in r.stderr and "fix:" in r.stderr
