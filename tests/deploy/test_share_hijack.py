"""A gateway's credentials cannot swallow other gateways' telemetry through ingest's
shared subscription.

Real parts: a locked-down mosquitto (the product's ACL and listener config from
`enmon deploy credentials`), `enmon ingest run` as ``ingest-1``, `enmon gateway run` as
gateway B polling a simulated Modbus RTU meter on a pty, end-to-end acks on, and a spy
holding gateway A's credentials that joins ``$share/ingest/enmon/v1/+/+/telemetry``.

mosquitto 2.0 accepts the spy's subscription and counts it as a member of the group, then
refuses it every message by the read ACL at delivery: a share of B's batches is dropped at
the broker (PUBACKed to B, never delivered). What makes that harmless is the end-to-end
guarantee: B keeps each batch on disk until ingest says it is stored, and resends what is
not confirmed after its ack timeout. So: the spy receives nothing, and every batch B ever
committed is stored, once per reading time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from deploy.credentials import make_credentials
from deploy.identity import gateway_principal, service_principal
from enmon.localrun import InfluxDB1, Mosquitto, Part
from firmware_sim.faults import Faults
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from tests.conftest import INFLUX_DB
from tests.deploy.mqttc import Probe
from tests.gateway.test_outage import committed, queued
from tests.support import influx_rows, record_fault, samples_sent, wait_until

pytestmark = pytest.mark.slow
SITE = "hosp-a"
SHARED = "$share/ingest/enmon/v1/+/+/telemetry"
QS = ["active_energy_import_kwh", "voltage_l1_v"]


def stored(influx: InfluxDB1) -> tuple[set[int], int, int]:
    """B's stored batch seqs, its points and its distinct reading times."""
    rows = influx_rows(influx.url, INFLUX_DB,
                       "SELECT seq, voltage_l1_v FROM meter WHERE gateway='gw-b'")
    return ({int(r["seq"]) for r in rows if r.get("seq") is not None}, len(rows),
            len({r["time"] for r in rows}))


@pytest.fixture
def locked(tmp_path: Path, influxdb: InfluxDB1) -> Iterator[tuple[Mosquitto, Part, Part, Path,
                                                                   Path, Faults]]:
    secrets = tmp_path / "secrets"
    make_credentials(secrets, add=[gateway_principal(SITE, "gw-a"),
                                   gateway_principal(SITE, "gw-b"),
                                   service_principal("ingest-1")])
    broker = Mosquitto(workdir=tmp_path / "mq",
                       extra_conf=(secrets / "broker/enmon-listener.conf").read_text())
    broker.start()
    reads = itertools.count()
    meter = Faults()  # set dead to stop new readings (the gateway still resends)
    sim = ModbusSlaveServer({1: Unit(library.load("eastron-sdm630"), lambda: {  # type: ignore[arg-type]
        "active_energy_import_kwh": 1000.0 + next(reads) * 0.01, "voltage_l1_v": 230.0},
        faults=meter)}).start()
    state = tmp_path / "gw-state"
    gw_cfg = tmp_path / "gateway.yaml"
    gw_cfg.write_text(yaml.safe_dump({
        "site": SITE, "gateway": "gw-b", "state_dir": str(state),
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": f"{SITE}.gw-b",
                 "client_id": f"{SITE}.gw-b",
                 "password_file": str(secrets / "clients" / f"{SITE}.gw-b" / "password"),
                 "window": 5, "end_to_end": True, "ack_timeout_s": 1},
        "poll": {"interval_s": 0.2, "health_interval_s": 5},
        "devices": [{"name": "m1", "profile": "eastron-sdm630", "unit_id": 1, "quantities": QS,
                     "transport": {"type": "serial", "port": sim.device, "timeout_s": 0.5}}],
    }))
    ing_cfg = tmp_path / "ingest.yaml"
    ing_cfg.write_text(yaml.safe_dump({
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "username": "ingest-1",
                 "client_id": "ingest-1", "password_env": "ENMON_MQTT_PASSWORD"},
        "influx": {"api": "v1", "url": influxdb.url, "database": INFLUX_DB},
        "group": "ingest"}))
    ing_pw = (secrets / "clients" / "ingest-1" / "password").read_text().strip()
    gw = Part(name="gateway", args=["gateway", "run", "-c", str(gw_cfg)], workdir=tmp_path)
    ing = Part(name="ingest", args=["ingest", "run", "-c", str(ing_cfg)], workdir=tmp_path,
               env={"ENMON_MQTT_PASSWORD": ing_pw})
    try:
        yield broker, gw, ing, secrets, state / "queue.db", meter
    finally:
        gw.kill()
        ing.kill()
        sim.stop()
        broker.stop()


def test_a_gateway_in_ingests_share_group_receives_nothing_and_loses_nothing(
        locked: tuple[Mosquitto, Part, Part, Path, Path, Faults], influxdb: InfluxDB1) -> None:
    broker, gw, ing, secrets, db, meter = locked
    ing.start()
    wait_until(lambda: "event=subscribed" in ing.log_tail(50_000), 30, "ingest subscribed")
    spy_user = f"{SITE}.gw-a"
    spy = Probe(broker.port, username=spy_user, client_id=spy_user,
                password=(secrets / "clients" / spy_user / "password").read_text().strip())
    assert spy.connect() == "ok"
    try:
        granted = [str(g) for g in spy.subscribe(SHARED)]  # either way: it must get nothing
        gw.start()
        wait_until(lambda: committed(db) >= 30, 150, "30 batches committed by gateway B")
        meter.dead = True  # no more readings: what is left to do is B's resending
        wait_until(lambda: queued(db) == 0 and stored(influxdb)[0] >= set(range(committed(db))),
                   150, "every committed batch stored and B's queue empty")
        assert gw.stop() == 0, gw.log_tail()
        n = committed(db)
        spy.subscribe("enmon/v1/hosp-a/gw-a/ack")  # a round trip: flushes anything queued
        assert spy.received == []
    finally:
        spy.client.loop_stop()
        spy.client.disconnect()
    seqs, points, times = stored(influxdb)
    sent = samples_sent(gw.log_tail(5_000_000))
    assert seqs == set(range(n))
    assert points == times == sent  # every reading once
    resent = gw.log_tail(5_000_000).count("event=batch_resent")
    record_fault("a gateway's credentials join ingest's $share group", sent=sent,
                 stored=times, lost=sent - times, duplicated=points - times,
                 note=f"{n} batches of gateway B, {resent} resent after the ack timeout; "
                      f"the spy (SUBACK {granted}) received {len(spy.received)}")
