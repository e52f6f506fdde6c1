"""A client's id is its identity: a gateway's credentials cannot take over ingest's
persistent session or another gateway's connection.

Without the binding, one clean-start connect with a gateway's password and ingest's
client id wiped ingest's session (every batch queued for it lost), and a connect with
another gateway's id kicked that gateway off and fired its "offline" will. The broker
config from ``enmon deploy credentials`` sets ``use_username_as_clientid``: whatever id a
client asks for, the broker uses its user name.
"""

from __future__ import annotations

import pytest

from tests.deploy.conftest import SecuredBroker
from tests.deploy.mqttc import Probe
from tests.support import record_fault

pytestmark = pytest.mark.slow

A, B = "hosp-a.gw-a", "hosp-a.gw-b"
SHARED = "$share/ingest/enmon/v1/+/+/telemetry"


def _probe(secured: SecuredBroker, user: str, client_id: str) -> Probe:
    return Probe(secured.plain_port, username=user, password=secured.password(user),
                 client_id=client_id)


def test_a_gateway_cannot_wipe_ingests_persistent_session(secured: SecuredBroker) -> None:
    ingest = _probe(secured, "ingest", "ingest")
    assert ingest.connect(clean_start=False, session_expiry_s=3600) == "ok"
    ingest.subscribe(SHARED)
    ingest.close()  # ingest is away (restarting, database down): the broker queues for it

    gw = _probe(secured, A, A)
    assert gw.connect() == "ok"
    payloads = [f"batch-{i}".encode() for i in range(20)]
    for p in payloads:
        gw.publish("enmon/v1/hosp-a/gw-a/telemetry", p)
    gw.close()

    # an attacker with gateway B's password asks for ingest's id with a clean start
    thief = _probe(secured, B, "ingest")
    assert thief.connect(clean_start=True) == "ok"
    thief.close()

    back = _probe(secured, "ingest", "ingest")
    assert back.connect(clean_start=False, session_expiry_s=3600) == "ok"
    try:
        for p in payloads:
            back.wait_for(p)
        assert len({p for _, p in back.received}) == len(payloads)
        got = [p for _, p in back.received]
        record_fault("a gateway connects with ingest's client id and a clean start",
                     sent=len(payloads), stored=len(set(got)),
                     lost=len(payloads) - len(set(got)), duplicated=len(got) - len(set(got)),
                     note="batches queued in ingest's session (broker level), kept")
    finally:
        back.close()


def test_a_gateway_cannot_kick_another_gateway_off(secured: SecuredBroker) -> None:
    victim = _probe(secured, A, A)
    assert victim.connect() == "ok"
    watcher = _probe(secured, "rules", "rules")
    assert watcher.connect() == "ok"
    try:
        watcher.subscribe("enmon/v1/hosp-a/gw-a/status")
        thief = _probe(secured, B, A)  # B's password, A's client id
        assert thief.connect() == "ok"
        # a takeover happens while the broker handles the thief's CONNECT, before its
        # CONNACK: a publish of A's that makes the round trip afterwards proves A is still on
        thief.publish("enmon/v1/hosp-a/gw-b/health", b"{}")
        victim.publish("enmon/v1/hosp-a/gw-a/status", b"still-here")
        watcher.wait_for(b"still-here")
        assert not victim.disconnected.is_set(), "gateway A was kicked off by B's connect"
        thief.close()
    finally:
        watcher.close()
        victim.close()
