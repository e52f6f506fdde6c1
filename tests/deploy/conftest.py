"""Fixtures for deploy tests: a real mosquitto locked down by `enmon deploy credentials`."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.localrun import Mosquitto, free_port
from tests.support import wait_until


@dataclass
class SecuredBroker:
    server: Mosquitto
    secrets: Path
    tls_port: int

    @property
    def plain_port(self) -> int:
        return self.server.port

    def password(self, user: str) -> str:
        return (self.secrets / "clients" / user / "password").read_text().strip()

    def client_dir(self, user: str) -> Path:
        return self.secrets / "clients" / user


def _tcp_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def start_secured(tmp_path: Path, *, client_certs: bool) -> SecuredBroker:
    secrets = tmp_path / "secrets"
    tls_port = free_port()
    make_credentials(
        secrets,
        add=[
            gateway_principal("hosp-a", "gw-a"),
            gateway_principal("hosp-a", "gw-b"),
            service_principal("ingest"),
            service_principal("rules"),
        ],
        tls=True,
        client_certs=client_certs,
        port=tls_port,
        bind="127.0.0.1",
    )
    conf = (secrets / "broker" / "enmon-listener.conf").read_text()
    # localrun's own plaintext listener stays: it plays the broker's internal port, under
    # the same password file and ACL (mosquitto's auth settings here are global).
    server = Mosquitto(workdir=tmp_path / "mosquitto", extra_conf=conf)
    server.start()
    wait_until(lambda: _tcp_open(tls_port), what=f"TLS listener on {tls_port}")
    return SecuredBroker(server, secrets, tls_port)


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[SecuredBroker]:
    """Password auth + ACL on both listeners; the second listener is TLS-only."""
    broker = start_secured(tmp_path, client_certs=False)
    yield broker
    broker.server.stop()


@pytest.fixture
def secured_certs(tmp_path: Path) -> Iterator[SecuredBroker]:
    """The TLS listener requires a client certificate whose CN is the user name."""
    broker = start_secured(tmp_path, client_certs=True)
    yield broker
    broker.server.stop()
