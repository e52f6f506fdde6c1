"""`enmon deploy credentials` as an operator uses it: files, permissions, re-runs, and
secrets that never show up on the terminal or in logs."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from deploy.cli import app
from deploy.identity import (
    CredentialsError,
    gateway_principal,
    mosquitto_hash,
    mosquitto_verify,
    parse_passwd,
)
from enmon.systemd import Watchdog, sd_notify

runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, ["credentials", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    """Cross-check with the real tool: our verifier accepts its hash, so both use one format."""
    pw = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), "u", "s3cret"], check=True)
    theirs = parse_passwd(pw.read_text())["u"]
    ours = mosquitto_hash("s3cret")
    assert theirs.split("$")[:3] == ours.split("$")[:3] == ["", "7", "101"]
    assert mosquitto_verify("s3cret", theirs) and not mosquitto_verify("s3creT", theirs)
    assert mosquitto_verify("s3cret", ours) and not mosquitto_verify("s3creT", ours)


def test_credentials_files_permissions_and_no_secret_in_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "secrets"
    caplog.set_level(logging.DEBUG)
    printed = _run(
        str(out),
        "-g",
        "hosp-a/gw-01",
        "-g",
        "hosp-a/gw-02",
        "-s",
        "ingest",
        "--tls",
        "--client-certs",
        "--install-dir",
        "/etc/enmon/mqtt/{user}",
    )
    users = ["hosp-a.gw-01", "hosp-a.gw-02", "ingest"]
    assert set(parse_passwd((out / "broker/passwd").read_text())) == set(users)
    secret_files = [out / "broker/passwd", out / "broker/server.key", out / "ca/ca.key"]
    for u in users:
        secret_files += [out / "clients" / u / "password", out / "clients" / u / "client.key"]
    for f in secret_files:
        assert _mode(f) == 0o600, f
    for u in users:
        password = (out / "clients" / u / "password").read_text().strip()
        assert len(password) >= 32
        assert password not in printed and password not in caplog.text
        key = (out / "clients" / u / "client.key").read_text()
        assert key.splitlines()[1] not in printed + caplog.text
    mqtt_yaml = (out / "clients/hosp-a.gw-01/mqtt.yaml").read_text()
    assert "/etc/enmon/mqtt/hosp-a.gw-01/client.key" in mqtt_yaml and "password:" not in mqtt_yaml
    acl = (out / "broker/acl").read_text()
    assert "user hosp-a.gw-01\ntopic write enmon/v1/hosp-a/gw-01/telemetry\n" in acl
    assert "topic write enmon/v1/hosp-a/gw-01/#" not in acl  # not its own command topic


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owners_for_the_broker_and_the_service_containers(tmp_path: Path) -> None:
    out = tmp_path / "s"
    _run(
        str(out),
        "-g",
        "hosp-a/gw-01",
        "-s",
        "ingest",
        "--tls",
        "--owner",
        "1883:1883",
        "--service-owner",
        "10001:10001",
    )
    assert (out / "broker/passwd").stat().st_uid == 1883
    assert (out / "broker/server.key").stat().st_uid == 1883
    assert (out / "clients/ingest/password").stat().st_uid == 10001
    assert (out / "clients/hosp-a.gw-01/password").stat().st_uid == 0  # gateways: copied by hand
    assert _mode(out / "broker/passwd") == _mode(out / "clients/ingest/password") == 0o600
    _run(str(out), "-g", "hosp-a/gw-02")  # a later run without the options keeps the owners
    assert (out / "broker/passwd").stat().st_uid == 1883
    assert (out / "clients/ingest/password").stat().st_uid == 10001


def test_later_runs_keep_the_first_runs_settings(tmp_path: Path) -> None:
    out = tmp_path / "s"
    _run(
        str(out),
        "-g",
        "hosp-a/gw-01",
        "--tls",
        "--port",
        "18883",
        "--server-name",
        "mqtt.hosp-a.example",
    )
    crt = (out / "broker/server.crt").read_bytes()
    _run(str(out), "-g", "hosp-a/gw-02")
    conf = (out / "broker/enmon-listener.conf").read_text()
    assert "listener 18883" in conf and "certfile" in conf  # TLS was not dropped
    block = yaml.safe_load((out / "clients/hosp-a.gw-02/mqtt.yaml").read_text())["mqtt"]
    assert block["host"] == "mqtt.hosp-a.example" and block["port"] == 18883
    assert (out / "clients/hosp-a.gw-02/ca.crt").exists() and "tls" in block
    assert (out / "broker/server.crt").read_bytes() == crt  # same names: same certificate
    _run(str(out), "--server-name", "mqtt2.hosp-a.example")
    assert (out / "broker/server.crt").read_bytes() != crt  # new name: reissued


def test_rerun_keeps_secrets_rotate_replaces_remove_revokes(tmp_path: Path) -> None:
    out = tmp_path / "s"
    _run(str(out), "-g", "hosp-a/gw-01", "-s", "ingest")
    pw1 = (out / "clients/hosp-a.gw-01/password").read_text()
    _run(str(out), "-g", "hosp-a/gw-02")  # adding a gateway later
    entries = parse_passwd((out / "broker/passwd").read_text())
    assert set(entries) == {"hosp-a.gw-01", "ingest", "hosp-a.gw-02"}
    assert (out / "clients/hosp-a.gw-01/password").read_text() == pw1
    assert mosquitto_verify(pw1.strip(), entries["hosp-a.gw-01"])

    _run(str(out), "--rotate", "hosp-a.gw-01")
    pw2 = (out / "clients/hosp-a.gw-01/password").read_text()
    entries = parse_passwd((out / "broker/passwd").read_text())
    assert pw2 != pw1 and mosquitto_verify(pw2.strip(), entries["hosp-a.gw-01"])
    assert not mosquitto_verify(pw1.strip(), entries["hosp-a.gw-01"])

    _run(str(out), "--remove", "hosp-a/gw-01")
    assert "hosp-a.gw-01" not in parse_passwd((out / "broker/passwd").read_text())
    assert "hosp-a.gw-01" not in (out / "broker/acl").read_text()
    assert not (out / "clients/hosp-a.gw-01/password").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-g", "hosp-a"], "SITE/GATEWAY"),
        (["-g", "hosp a/gw-01"], "must match"),
        (["-g", "hosp-a/alerts"], "reserved"),
        (["-s", "grafana"], "not one of"),
        (["--client-certs", "-g", "a/b"], "need TLS"),
        (["--rotate", "nobody"], "unknown user"),
    ],
)
def test_bad_requests_exit_2_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["credentials", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in result.output


def test_gateway_id_alerts_is_reserved() -> None:
    with pytest.raises(CredentialsError, match="alert topics"):
        gateway_principal("hosp-a", "alerts")


def test_sd_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    """A real AF_UNIX datagram socket plays systemd's notify socket."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        assert sd_notify("READY=1", environ={"NOTIFY_SOCKET": str(path)})
        assert sock.recv(100) == b"READY=1"
        now = [100.0]
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000"}
        dog = Watchdog(environ=env, clock=lambda: now[0])
        assert dog.interval == 10.0  # pets at half of WatchdogSec=20
        assert dog.alive() and sock.recv(100) == b"WATCHDOG=1"
        now[0] += 9.9
        assert not dog.alive()  # too early: no datagram
        now[0] += 0.2
        assert dog.alive() and sock.recv(100) == b"WATCHDOG=1"
    assert not sd_notify("READY=1", environ={})  # not under systemd: a no-op
    assert Watchdog(environ={"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}).interval is None
