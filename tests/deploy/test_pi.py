"""deploy/pi: the systemd unit, the install script and the example configs, checked with
the real tools (systemd-analyze, shellcheck, the gateway's own config check), and the
gateway run the way the unit runs it: credentials and TLS from `enmon deploy credentials`,
a notify socket, a watchdog period."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.localrun import Mosquitto, free_port
from gateway.config import check_profiles, load_config
from tests.deploy.mqttc import Probe
from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
PI = ROOT / "deploy" / "pi"
UNIT = PI / "systemd" / "enmon-gateway@.service"
ENMON = str(Path(sys.executable).with_name("enmon"))
EXAMPLES = sorted((PI / "examples").glob("*.yaml"))


def _unit_for_here(tmp_path: Path) -> Path:
    """The unit with its ExecStart pointing at this venv (verify checks the binary exists)."""
    text = UNIT.read_text().replace("/opt/enmon/venv/bin/enmon", ENMON)
    path = tmp_path / "enmon-gateway@gw-01.service"
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    res = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_for_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # unknown keys and bad values are only warnings (exit 0): any output is a failure
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_unit_hardening_exposure_stays_low(tmp_path: Path) -> None:
    res = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--no-pager",
            str(_unit_for_here(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout)
    assert m, res.stdout[-500:] + res.stderr
    assert float(m.group(1)) <= 2.0


def test_unit_contract() -> None:
    """What the README promises a deployer, read from the unit itself."""
    keys: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, _, v = line.partition("=")
            keys.setdefault(k.strip(), []).append(v.strip())
    assert keys["Type"] == ["notify"] and keys["WatchdogSec"] == ["120"]
    assert keys["Restart"] == ["always"] and keys["User"] == ["enmon"]
    assert keys["SupplementaryGroups"] == ["dialout"]
    assert keys["StateDirectory"] == ["enmon/%i"]
    assert any("gateway check" in v for v in keys["ExecStartPre"])


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_pass_shellcheck() -> None:
    scripts = [
        PI / "install.sh",
        ROOT / "deploy/compose/preflight.sh",
        ROOT / "deploy/compose/influxdb/init/10-enmon-dbrp.sh",
    ]
    res = subprocess.run(
        ["shellcheck", "-s", "sh", *map(str, scripts)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout


def test_install_dry_run_installs_only_the_gateway_extra_as_a_dialout_user() -> None:
    res = subprocess.run(
        [
            "sh",
            str(PI / "install.sh"),
            "--dry-run",
            "--source",
            "enmon==0.1.0",
            "--instance",
            "gw-01",
            "--config",
            str(EXAMPLES[0]),
            "--credentials",
            "/tmp/x/hosp-a.gw-01",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "usermod -a -G dialout enmon" in out
    assert "pip install --no-cache-dir --upgrade enmon[gateway]==0.1.0" in out
    assert f"{EXAMPLES[0]} /etc/enmon/gw-01.yaml" in out
    assert "gateway check -c /etc/enmon/gw-01.yaml" in out
    assert "systemctl enable --now enmon-gateway@gw-01" in out
    assert "-m 0600 -o enmon -g enmon /tmp/x/hosp-a.gw-01/password" not in out  # file absent
    bad = subprocess.run(
        ["sh", str(PI / "install.sh"), "--dry-run", "--source", "x", "--instance", "../etc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--instance must match" in bad.stderr


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_configs_pass_the_gateway_check(example: Path) -> None:
    cfg = load_config(example)
    check_profiles(cfg, str(example))
    assert cfg.state_dir == Path("/var/lib/enmon") / cfg.gateway  # the unit's StateDirectory
    user = gateway_principal(cfg.site, cfg.gateway).username
    assert cfg.mqtt.port == 8883 and cfg.mqtt.tls is not None
    if cfg.mqtt.username is not None:  # password identity: same name as the credentials tool
        assert cfg.mqtt.username == user
        assert str(cfg.mqtt.password_file).startswith(f"/etc/enmon/mqtt/{user}/")


# --------------------------------------------------------------------------- running


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@dataclass
class RunningGateway:
    ingest: Probe
    notify: socket.socket
    proc: subprocess.Popen[bytes]


def _meter(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [ENMON, "sim", "run", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.fixture
def running_gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RunningGateway]:
    """mosquitto with generated credentials (TLS; with param True, client certificates as
    the identity), a simulated SDM630, and `enmon gateway run` started with NOTIFY_SOCKET
    and WATCHDOG_USEC as systemd would. The gateway's mqtt block is the generated one."""
    secrets, tls_port, sim_port = tmp_path / "secrets", free_port(), free_port()
    make_credentials(
        secrets,
        add=[gateway_principal("hosp-a", "gw-01"), service_principal("ingest")],
        tls=True,
        client_certs=bool(getattr(request, "param", False)),
        port=tls_port,
        bind="127.0.0.1",
        broker_host="127.0.0.1",
    )
    broker = Mosquitto(
        workdir=tmp_path / "mq", extra_conf=(secrets / "broker/enmon-listener.conf").read_text()
    )
    broker.start()
    meter = _meter(sim_port)
    client_dir = secrets / "clients" / "hosp-a.gw-01"
    cfg = {
        "site": "hosp-a",
        "gateway": "gw-01",
        "state_dir": str(tmp_path / "state"),
        **yaml.safe_load((client_dir / "mqtt.yaml").read_text()),
        "poll": {"interval_s": 0.5},
        "devices": [
            {
                "name": "main",
                "profile": "eastron-sdm630",
                "unit_id": 1,
                "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim_port},
            }
        ],
    }
    cfg_path = tmp_path / "gw-01.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    ingest_dir = secrets / "clients" / "ingest"
    ingest = Probe(
        broker.port, username="ingest", password=(ingest_dir / "password").read_text().strip()
    )
    proc: subprocess.Popen[bytes] | None = None
    try:
        assert ingest.connect() == "ok"
        ingest.subscribe("enmon/v1/+/+/telemetry")
        wait_until(
            lambda: _tcp_open(sim_port),
            what="simulated meter",
        )
        log = (tmp_path / "gateway.log").open("wb")
        proc = subprocess.Popen(
            [ENMON, "gateway", "run", "-c", str(cfg_path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        yield RunningGateway(ingest, notify, proc)
    finally:
        for p in (proc, meter):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        ingest.close()
        notify.close()
        broker.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "running_gateway", [False, True], indirect=True, ids=["password", "client-cert"]
)
def test_gateway_publishes_with_generated_credentials_over_tls(
    running_gateway: RunningGateway,
) -> None:
    probe = running_gateway.ingest

    def got_batch() -> bool:
        return any(t == "enmon/v1/hosp-a/gw-01/telemetry" for t, _ in list(probe.received))

    wait_until(got_batch, timeout=60, what="a telemetry batch from the gateway over TLS")
    assert running_gateway.proc.poll() is None


@pytest.mark.slow
def test_gateway_tells_systemd_it_is_ready_and_alive(running_gateway: RunningGateway) -> None:
    """Under Type=notify the unit fails unless READY=1 arrives; under WatchdogSec the
    process is killed unless WATCHDOG=1 keeps arriving."""
    sock = running_gateway.notify
    sock.settimeout(10)  # READY comes after start-up; pets every WATCHDOG_USEC/2 = 1 s
    seen: list[bytes] = []
    while b"READY=1" not in b"\n".join(seen) or sum(b"WATCHDOG=1" in m for m in seen) < 2:
        seen.append(sock.recv(4096))  # socket.timeout fails the test
