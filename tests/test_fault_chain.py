"""The whole chain under the worst faults, every part a real process.

``enmon gateway run`` polls a simulated Modbus RTU meter on a pty; a real mosquitto, a
real ``enmon ingest run`` and a real influxd carry its batches to storage. Two faults
the hop-by-hop design lost data to:

- **gateway, broker and ingest killed at the same instant** (a power cut), and the broker
  comes back without its persistence file: what it held is gone, what the gateway was
  sending in that instant is unconfirmed;
- **ingest away longer than its session expiry**: the broker drops the session and every
  batch queued for it (PUBACKed long ago).

The gateway keeps every batch on disk until ingest says it is stored (end-to-end acks),
so after both faults every batch it ever committed — every ``seq`` from 0 to its last — is
in InfluxDB, counted batch by batch, and its disk queue is empty.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
import yaml

from enmon.localrun import InfluxDB1, Mosquitto, Part
from firmware_sim.rtu import ModbusSlaveServer, Unit
from gateway import library
from tests.conftest import INFLUX_DB
from tests.gateway.test_outage import committed, queued
from tests.support import influx_rows, record_fault, samples_sent, wait_until

pytestmark = pytest.mark.slow
SITE, GW = "hosp-a", "gw-chain"
QS = ["active_energy_import_kwh", "voltage_l1_v"]


def stored_seqs(influx: InfluxDB1) -> set[int]:
    rows = influx_rows(influx.url, INFLUX_DB,
                       f"SELECT seq FROM meter WHERE gateway='{GW}'")
    return {int(r["seq"]) for r in rows if r.get("seq") is not None}


@pytest.fixture
def chain(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB1):  # type: ignore[no-untyped-def]
    reads = itertools.count()
    sdm = library.load("eastron-sdm630")
    sim = ModbusSlaveServer({1: Unit(sdm, lambda: {  # type: ignore[arg-type]
        "active_energy_import_kwh": 1000.0 + next(reads) * 0.01, "voltage_l1_v": 230.0})}
    ).start()
    state = tmp_path / "gw-state"
    gw_cfg = tmp_path / "gateway.yaml"
    gw_cfg.write_text(yaml.safe_dump({
        "site": SITE, "gateway": GW, "state_dir": str(state),
        # resend what ingest has not confirmed after 1 s (300 s in the field)
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "window": 5,
                 "end_to_end": True, "ack_timeout_s": 1},
        "poll": {"interval_s": 0.2, "health_interval_s": 5},
        "devices": [{"name": "m1", "profile": "eastron-sdm630", "unit_id": 1, "quantities": QS,
                     "transport": {"type": "serial", "port": sim.device, "timeout_s": 0.5}}],
    }))
    ing_cfg = tmp_path / "ingest.yaml"
    ing_cfg.write_text(yaml.safe_dump({
        # a short session expiry: the broker forgets ingest's queue 2 s after it goes away
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "ingest-chain",
                 "session_expiry_s": 2},
        "influx": {"api": "v1", "url": influxdb.url, "database": INFLUX_DB},
    }))
    gw = Part(name="gateway", args=["gateway", "run", "-c", str(gw_cfg)], workdir=tmp_path)
    ing = Part(name="ingest", args=["ingest", "run", "-c", str(ing_cfg)], workdir=tmp_path)
    try:
        yield gw, ing, state / "queue.db"
    finally:
        gw.kill()
        ing.kill()
        sim.stop()


def _record(fault: str, gw: Part, influx: InfluxDB1, n: int) -> None:
    """The fault table's row: samples the gateway committed vs points stored."""
    times = influx_rows(influx.url, INFLUX_DB,
                        f"SELECT voltage_l1_v FROM meter WHERE gateway='{GW}'")
    distinct = len({r["time"] for r in times})
    # the gateway logs a batch right after committing it, so a kill -9 in between can leave
    # one committed batch unlogged: what it logged is a lower bound of what it committed
    sent = samples_sent(gw.log_tail(10_000_000))
    assert distinct >= sent, (distinct, sent)
    record_fault(fault, sent=sent, stored=distinct, lost=max(0, sent - distinct),
                 duplicated=len(times) - distinct, note=f"{n} batches, every seq stored")


def _settled(influx: InfluxDB1, db: Path) -> bool:
    """Every committed batch stored and the disk queue trimmed to nothing."""
    n = committed(db)
    return n > 0 and stored_seqs(influx) >= set(range(n)) and queued(db) == 0


def test_power_cut_of_gateway_broker_and_ingest_loses_no_committed_batch(
        chain: tuple[Part, Part, Path], mosquitto: Mosquitto, influxdb: InfluxDB1) -> None:
    gw, ing, db = chain
    ing.start()
    wait_until(lambda: "event=subscribed" in ing.log_tail(50_000), 30, "ingest subscribed")
    gw.start()
    wait_until(lambda: len(stored_seqs(influxdb)) >= 5, 60, "5 batches stored")
    # power cut: all three at once; the broker loses what it persisted too
    gw.kill()
    mosquitto.kill()
    ing.kill()
    before = committed(db)
    shutil.rmtree(mosquitto.workdir / "persist", ignore_errors=True)
    mosquitto.start()
    ing.start()
    gw.start()
    wait_until(lambda: committed(db) >= before + 5, 60, "5 more batches after the restart")
    assert gw.stop() == 0, gw.log_tail()
    wait_until(lambda: _settled(influxdb, db), 60,
               "every committed batch stored and the queue empty")
    n = committed(db)
    assert stored_seqs(influxdb) == set(range(n)), "a committed batch is missing"
    # nothing stored twice: one point per reading time
    rows = influx_rows(influxdb.url, INFLUX_DB,
                       f"SELECT count(voltage_l1_v) FROM meter WHERE gateway='{GW}'")
    times = influx_rows(influxdb.url, INFLUX_DB,
                        f"SELECT voltage_l1_v FROM meter WHERE gateway='{GW}'")
    assert int(rows[0]["count"]) == len({r["time"] for r in times})
    _record("power cut: gateway, broker and ingest kill -9 at once, broker persistence "
            "deleted", gw, influxdb, n)


def test_ingest_away_beyond_its_session_expiry_loses_nothing(
        chain: tuple[Part, Part, Path], influxdb: InfluxDB1) -> None:
    gw, ing, db = chain
    ing.start()
    wait_until(lambda: "event=subscribed" in ing.log_tail(50_000), 30, "ingest subscribed")
    gw.start()
    wait_until(lambda: len(stored_seqs(influxdb)) >= 3, 60, "3 batches stored")
    ing.stop()
    # the broker takes (PUBACKs) batches for ingest's session, then drops it at expiry
    start = committed(db)
    wait_until(lambda: committed(db) >= start + 20, 60, "20 batches while ingest is away")
    ing.start()
    # the fault happened: the broker had no session for ingest any more (its second start
    # without one; the first was the fresh install)
    wait_until(lambda: ing.log_tail(500_000).count("session_present=False") >= 2, 30,
               "ingest back on a broker that forgot its session")
    assert gw.stop() == 0, gw.log_tail()
    wait_until(lambda: _settled(influxdb, db), 90,
               "every committed batch stored and the queue empty")
    assert stored_seqs(influxdb) == set(range(committed(db)))
    _record("ingest away beyond its session expiry (broker drops its queue)", gw, influxdb,
            committed(db))
