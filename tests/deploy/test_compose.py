"""deploy/compose without a Docker engine: `docker compose config`, plus everything that can
be checked here — the broker config on the real mosquitto 2.0, the enmon service configs
against their schemas, the preflight script, the health check, the files the YAML mounts."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.credentials import make_credentials
from deploy.health import connected_to
from deploy.identity import SERVICES, gateway_principal
from deploy.identity import service_principal as svc
from enmon.localrun import InfluxDB1, Server, free_port
from tests.conftest import INFLUX_DB
from tests.deploy.mqttc import Probe, connected
from tests.support import influx_query, wait_until

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
LONG_RUNNING = {"mosquitto", "influxdb", "grafana", "ingest", "rules", "api"}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _compose_cli() -> list[str] | None:
    """`docker compose` (v2 plugin) where present, else Debian's docker-compose (v1)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


@pytest.mark.parametrize("env_file", [None, ".env.example"], ids=["no-env", "env-example"])
def test_docker_compose_config_is_valid(env_file: str | None) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    args = [*cli, "-f", str(COMPOSE.relative_to(ROOT))]
    if env_file:
        args += ["--env-file", str((COMPOSE_DIR / env_file).relative_to(ROOT))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "GRAFANA_"))}
    res = subprocess.run(
        [*args, "config"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    rendered = yaml.safe_load(res.stdout)
    # (compose v2 leaves profile-only services such as "api" out of `config`)
    assert set(rendered["services"]) >= LONG_RUNNING - {"api"}
    # the broker's TLS port is the only MQTT port published
    published = [str(p) for p in rendered["services"]["mosquitto"].get("ports", [])]
    assert len(published) == 1 and "8883" in published[0]


def test_every_service_has_restart_healthcheck_and_logging_limits() -> None:
    services = _compose()["services"]
    for name in LONG_RUNNING:
        s = services[name]
        assert s.get("restart") == "unless-stopped", name
        assert s.get("healthcheck", {}).get("test"), f"{name} has no health check"
        if name not in {"preflight"}:
            assert "preflight" in services["mosquitto"]["depends_on"]
    for name in ("ingest", "rules"):
        deps = services[name]["depends_on"]
        assert deps["mosquitto"]["condition"] == deps["influxdb"]["condition"] == "service_healthy"


def test_state_that_must_survive_lives_in_named_volumes() -> None:
    data = _compose()
    volumes = set(data["volumes"])
    mounts = {name: s.get("volumes", []) for name, s in data["services"].items()}

    def named(service: str, target: str) -> bool:
        return any(
            m.split(":")[0] in volumes and m.split(":")[1] == target for m in mounts[service]
        )

    assert named("mosquitto", "/mosquitto/data")  # persistent sessions: unacked telemetry
    assert named("influxdb", "/var/lib/influxdb2")
    assert named("grafana", "/var/lib/grafana")
    assert named("rules", "/var/lib/enmon")  # alert state
    conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
    assert "persistence_location /mosquitto/data/" in conf


def test_mounted_files_exist_and_variables_are_documented() -> None:
    data = _compose()
    text = "\n".join(
        ln for ln in COMPOSE.read_text().splitlines() if not ln.lstrip().startswith("#")
    )
    for s in data["services"].values():
        for m in s.get("volumes", []):
            src = m.split(":")[0]
            if src.startswith("./"):
                assert (COMPOSE_DIR / src).exists(), f"{src} is mounted but missing"
    documented = set(re.findall(r"^([A-Z_]+)=", (COMPOSE_DIR / ".env.example").read_text(), re.M))
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used - documented == set(), "variables used but not in .env.example"
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text().split()


def test_service_configs_match_their_schemas_and_identities() -> None:
    from ingest.config import load_config as load_ingest
    from rules.config import load_config as load_rules

    ingest = load_ingest(COMPOSE_DIR / "enmon" / "ingest.yaml")
    rules = load_rules(COMPOSE_DIR / "enmon" / "rules.yaml")
    for cfg, user in ((ingest, "ingest"), (rules, "rules")):
        assert cfg.mqtt.username == user and user in SERVICES
        assert cfg.mqtt.host == "mosquitto" and cfg.mqtt.port == 1883
        assert cfg.influx.api == "v2" and cfg.influx.bucket == "enmon"
        assert cfg.influx.token_env == "ENMON_INFLUX_TOKEN"
        assert cfg.mqtt.client_id  # a fixed id names the persistent session
    assert rules.state_dir == Path("/var/lib/enmon/rules-state")  # on the rules-state volume
    from inspector.config import load_config as load_inspector

    inspector = load_inspector(COMPOSE_DIR / "enmon" / "inspector.yaml")
    assert inspector.influx.token_env == "ENMON_INFLUX_TOKEN"
    api = _compose()["services"]["api"]
    assert "/etc/enmon/inspector.yaml" in api["command"] and "/healthz" in str(api["healthcheck"])
    env = _compose()["x-enmon"]["environment"]
    assert "ENMON_INFLUX_TOKEN" in env


def test_grafana_dashboards_run_on_real_influxql(influxdb: InfluxDB1) -> None:
    """Every panel's query is valid InfluxQL (run on influxd 1.6, the oldest read API we
    support) against the datasource that provisioning creates."""
    ds = yaml.safe_load((COMPOSE_DIR / "grafana/provisioning/datasources/enmon.yaml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["jsonData"]["dbName"] == INFLUX_DB
    dashboards = list((COMPOSE_DIR / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    for f in dashboards:
        dash = json.loads(f.read_text())
        for panel in dash["panels"]:
            assert panel["datasource"]["uid"] == uid, f"{f.name}: {panel['title']}"
            for t in panel["targets"]:
                assert "$timeFilter" in t["query"], f"{f.name}: unbounded query in {panel['title']}"
                q = t["query"].replace("$timeFilter", "time > now() - 1h")
                q = q.replace("$__interval", "1m")
                influx_query(influxdb.url, INFLUX_DB, q)  # raises on a syntax error


# --------------------------------------------------------------------------- the real broker


@dataclass(kw_only=True)
class ComposeMosquitto(Server):
    """deploy/compose's mosquitto.conf, run by the real mosquitto with paths and ports moved."""

    name: str = "mosquitto"
    secrets: Path
    internal_port: int
    tls_port: int
    health_port: int

    def command(self) -> list[str]:
        conf = (COMPOSE_DIR / "mosquitto" / "mosquitto.conf").read_text()
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        conf = (
            conf.replace("/mosquitto/secrets", str(self.secrets / "broker"))
            .replace("/mosquitto/config", str(COMPOSE_DIR / "mosquitto"))
            .replace("/mosquitto/data", str(self.workdir / "data"))
            .replace("listener 1883", f"listener {self.internal_port} 127.0.0.1")
            .replace("listener 8883", f"listener {self.tls_port} 127.0.0.1")
            .replace("listener 1880 127.0.0.1", f"listener {self.health_port} 127.0.0.1")
        )
        user = "user root\n" if os.geteuid() == 0 else ""
        path = self.workdir / "mosquitto.conf"
        path.write_text(user + conf)
        return ["mosquitto", "-c", str(path)]


def _open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


@pytest.mark.slow
def test_compose_broker_config_on_real_mosquitto(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    make_credentials(
        secrets, add=[gateway_principal("hosp-a", "gw-01"), svc("ingest"), svc("rules")], tls=True
    )
    broker = ComposeMosquitto(
        workdir=tmp_path / "m",
        secrets=secrets,
        internal_port=free_port(),
        tls_port=free_port(),
        health_port=free_port(),
    )
    broker.port = broker.internal_port
    broker.start()
    try:
        wait_until(lambda: _open(broker.tls_port) and _open(broker.health_port), what="listeners")
        healthcheck = _compose()["services"]["mosquitto"]["healthcheck"]["test"][1:]
        cmd = [a.replace("$$", "$") for a in healthcheck]
        cmd[cmd.index("-p") + 1] = str(broker.health_port)
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert res.returncode == 0 and res.stdout.strip(), res.stderr  # the health check passes

        clients = secrets / "clients"

        def as_(user: str, port: int, tls: bool) -> Probe:
            return Probe(
                port,
                username=user,
                password=(clients / user / "password").read_text().strip(),
                ca_file=clients / user / "ca.crt" if tls else None,
            )

        anon_internal = Probe(broker.internal_port)
        assert anon_internal.connect() != "ok"
        anon_internal.close()
        plain_on_tls = as_("hosp-a.gw-01", broker.tls_port, tls=False)
        assert plain_on_tls.connect() != "ok"
        plain_on_tls.close()
        with (
            connected(as_("ingest", broker.internal_port, tls=False)) as ingest,
            connected(as_("hosp-a.gw-01", broker.tls_port, tls=True)) as gw,
            connected(Probe(broker.health_port)) as anon_health,
        ):
            ingest.subscribe("$share/ingest/enmon/v1/+/+/telemetry")
            anon_health.publish("enmon/v1/hosp-a/gw-01/telemetry", b"anonymous forgery")
            # a SUBACK means the broker has handled the anonymous publish before it
            anon_health.subscribe("$SYS/broker/uptime")
            gw.publish("enmon/v1/hosp-a/gw-01/telemetry", b"gateway over TLS")
            ingest.wait_for(b"gateway over TLS")
            assert [p for _, p in ingest.received] == [b"gateway over TLS"]
    finally:
        broker.stop()


# --------------------------------------------------------------------------- preflight, health


def _preflight(secrets: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(COMPOSE_DIR / "preflight.sh")],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "SECRETS": str(secrets), **env},
        timeout=30,
    )


def test_preflight_refuses_missing_or_example_secrets(tmp_path: Path) -> None:
    res = _preflight(tmp_path / "nothing")
    assert res.returncode == 1
    assert "INFLUXDB_ADMIN_TOKEN is empty" in res.stderr and "missing" in res.stderr

    secrets = tmp_path / "secrets"
    make_credentials(secrets, add=[svc("ingest"), svc("rules")], tls=True)
    good = {
        "INFLUXDB_ADMIN_PASSWORD": "p" * 20,
        "INFLUXDB_ADMIN_TOKEN": "t" * 40,
        "GRAFANA_ADMIN_PASSWORD": "g" * 16,
    }
    wrong_owner = _preflight(secrets, **good)  # files still belong to whoever ran the tool
    if os.geteuid() == 0:
        assert wrong_owner.returncode == 1 and "--owner 1883:1883" in wrong_owner.stderr
        make_credentials(secrets, owner="1883:1883", service_owner="10001:10001")
    else:
        pytest.skip("chown needs root")
    ok = _preflight(secrets, **good)
    assert ok.returncode == 0, ok.stderr
    example = _preflight(
        secrets, **{**good, "INFLUXDB_ADMIN_TOKEN": "change-me-to-a-long-random-token"}
    )
    assert example.returncode == 1 and "example value" in example.stderr
    (secrets / "broker" / "passwd").chmod(0o644)
    loose = _preflight(secrets, **good)
    assert loose.returncode == 1 and "chmod 600" in loose.stderr


def test_health_sees_an_established_connection_and_its_loss() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert connected_to([port]) == {port: False}  # listening is not connected
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        peer, _ = listener.accept()
        try:
            assert connected_to([port]) == {port: True}
        finally:
            client.close()
            peer.close()
        wait_until(lambda: connected_to([port]) == {port: False}, what="connection gone")
