"""Per-gateway credentials and TLS against a real mosquitto 2.0 (the product's promise:
a gateway can only speak for itself, and nobody gets in without a valid secret)."""

from __future__ import annotations

import signal

import pytest

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal
from enmon.wire import TELEMETRY_FILTER
from tests.deploy.conftest import SecuredBroker
from tests.deploy.mqttc import Probe, connected
from tests.support import wait_until

pytestmark = pytest.mark.slow

A, B = "hosp-a.gw-a", "hosp-a.gw-b"
A_TOPIC = "enmon/v1/hosp-a/gw-a/telemetry"
B_TOPIC = "enmon/v1/hosp-a/gw-b/telemetry"


def _as(
    broker: SecuredBroker, user: str, *, tls: bool = False, password: str | None = None
) -> Probe:
    cdir = broker.client_dir(user)
    return Probe(
        broker.tls_port if tls else broker.plain_port,
        username=user,
        password=broker.password(user) if password is None else password,
        ca_file=cdir / "ca.crt" if tls else None,
    )


def test_gateway_cannot_publish_as_another_gateway(secured: SecuredBroker) -> None:
    with connected(_as(secured, "ingest")) as ingest, connected(_as(secured, A)) as gw_a:
        ingest.subscribe(f"$share/ingest/{TELEMETRY_FILTER}")
        gw_a.publish(B_TOPIC, b"forged by A")
        gw_a.publish("enmon/v1/hosp-b/gw-a/telemetry", b"A under another site")
        gw_a.publish("enmon/v1/hosp-a/alerts/quota", b"A forging an alert")
        gw_a.publish(A_TOPIC, b"A's own reading")  # QoS 1 from one client arrives in order
        ingest.wait_for(b"A's own reading")
        payloads = [p for _, p in ingest.received]
        assert payloads == [b"A's own reading"]


def test_gateway_cannot_read_other_gateways(secured: SecuredBroker) -> None:
    with (
        connected(_as(secured, A)) as spy,
        connected(_as(secured, B)) as gw_b,
        connected(_as(secured, "rules")) as rules,
    ):
        spy.subscribe("enmon/v1/#")
        rules.subscribe(TELEMETRY_FILTER)
        gw_b.publish(B_TOPIC, b"B's reading")
        rules.wait_for(b"B's reading")  # delivered to a reader that may read...
        spy.subscribe("enmon/v1/hosp-a/gw-a/telemetry")  # round trip: flushes anything queued
        assert spy.received == []  # ...and never to another gateway


def test_rules_may_publish_alerts_but_not_telemetry(secured: SecuredBroker) -> None:
    with connected(_as(secured, "ingest")) as ingest, connected(_as(secured, "rules")) as rules:
        ingest.subscribe("enmon/v1/#")
        rules.publish(A_TOPIC, b"rules forging telemetry")
        rules.publish("enmon/v1/hosp-a/alerts/quota", b"alert")
        ingest.wait_for(b"alert")
        assert [p for _, p in ingest.received] == [b"alert"]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_wrong_password_unknown_user_and_anonymous_are_refused(
    secured: SecuredBroker, tls: bool
) -> None:
    port = secured.tls_port if tls else secured.plain_port
    ca = secured.client_dir(A) / "ca.crt" if tls else None
    wrong = Probe(port, username=A, password=secured.password(B), ca_file=ca)
    assert wrong.connect() in {"Bad user name or password", "Not authorized"}
    wrong.close()
    nobody = Probe(port, username="hosp-a.gw-z", password="guess", ca_file=ca)
    assert nobody.connect() in {"Bad user name or password", "Not authorized"}
    nobody.close()
    anonymous = Probe(port, ca_file=ca)
    assert anonymous.connect() in {"Bad user name or password", "Not authorized"}
    anonymous.close()
    with connected(_as(secured, A, tls=tls)):  # the right secret gets in on the same port
        pass


def test_plaintext_is_refused_on_the_tls_listener(secured: SecuredBroker) -> None:
    plain = Probe(secured.tls_port, username=A, password=secured.password(A))
    assert plain.connect() != "ok"  # the broker never answers a plaintext CONNECT there
    plain.close()
    with connected(_as(secured, A, tls=True)) as gw, connected(_as(secured, "ingest")) as ingest:
        ingest.subscribe(TELEMETRY_FILTER)
        gw.publish(A_TOPIC, b"over TLS")
        ingest.wait_for(b"over TLS")


def test_client_certificate_is_the_identity(secured_certs: SecuredBroker) -> None:
    broker = secured_certs

    def by_cert(user: str, *, cert_of: str | None = None) -> Probe:
        src = broker.client_dir(cert_of or user)
        return Probe(
            broker.tls_port,
            ca_file=src / "ca.crt",
            cert_file=src / "client.crt",
            key_file=src / "client.key",
        )

    no_cert = Probe(
        broker.tls_port,
        username=A,
        password=broker.password(A),
        ca_file=broker.client_dir(A) / "ca.crt",
    )
    assert no_cert.connect() != "ok"  # a password alone is not enough on this listener
    no_cert.close()
    with connected(by_cert("ingest")) as ingest, connected(by_cert(A)) as gw_a:
        ingest.subscribe(TELEMETRY_FILTER)
        gw_a.publish(B_TOPIC, b"forged with A's certificate")
        gw_a.publish(A_TOPIC, b"A by certificate")
        ingest.wait_for(b"A by certificate")
        assert [p for _, p in ingest.received] == [b"A by certificate"]


def test_adding_and_removing_a_gateway_needs_only_a_reload(secured: SecuredBroker) -> None:
    """The operator's flow: re-run the tool, SIGHUP mosquitto; sessions stay up."""
    b_password = secured.password(B)
    with connected(_as(secured, B)):  # B is in before the change
        pass
    with connected(_as(secured, "ingest")) as ingest:
        ingest.subscribe(TELEMETRY_FILTER)
        make_credentials(
            secured.secrets,
            add=[gateway_principal("hosp-a", "gw-c")],
            remove=[gateway_principal("hosp-a", "gw-b")],
            tls=True,
            port=secured.tls_port,
            bind="127.0.0.1",
        )
        assert secured.server.proc is not None
        secured.server.proc.send_signal(signal.SIGHUP)

        def new_gateway_in() -> bool:
            probe = _as(secured, "hosp-a.gw-c")
            try:
                return probe.connect() == "ok"
            finally:
                probe.close()

        wait_until(new_gateway_in, what="gw-c accepted after the reload")
        with connected(_as(secured, "hosp-a.gw-c")) as gw_c:
            gw_c.publish("enmon/v1/hosp-a/gw-c/telemetry", b"from the new gateway")
            ingest.wait_for(b"from the new gateway")  # ingest's session survived the reload
        removed = Probe(secured.plain_port, username=B, password=b_password)
        assert removed.connect() != "ok"
        removed.close()


def test_the_broker_refuses_a_packet_over_the_wire_limit(secured: SecuredBroker) -> None:
    """A payload beyond the contract's 256 KiB never reaches ingest (nor its memory)."""
    with connected(_as(secured, "ingest")) as ingest:
        ingest.subscribe(f"$share/ingest/{TELEMETRY_FILTER}")
        with connected(_as(secured, A)) as gw_a:
            gw_a.publish(A_TOPIC, b"x" * 400_000)  # the broker drops the client instead
        with connected(_as(secured, A)) as gw_a:
            gw_a.publish(A_TOPIC, b"after the big one")
        ingest.wait_for(b"after the big one")
        assert [len(p) for _, p in ingest.received] == [len(b"after the big one")]
