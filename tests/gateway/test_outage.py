"""The store-and-forward promise, with every part real.

``enmon gateway run`` (a real process) polls two simulated meters on a pty
RS-485 bus and a DL/T 645 meter on another; a real mosquitto carries the
batches to a subscriber. The broker is stopped for a while, the gateway is
``kill -9``-ed during the outage, the broker comes back, the gateway restarts:
every batch the gateway ever committed must reach the subscriber exactly once
and in order, with its original ``seq`` and reading timestamps, and each
meter's counter must never go backwards across the whole run.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from enmon import wire
from enmon.localrun import Mosquitto, Part
from firmware_sim.dlt645_meter import Dlt645Server, Meter
from firmware_sim.rtu import LineServer, ModbusSlaveServer, Unit
from gateway import library
from tests.support import record_fault, samples_sent, wait_until

pytestmark = pytest.mark.slow
QS = ["active_energy_import_kwh", "voltage_l1_v"]


class Subscriber:
    """A persistent-session MQTT 5 subscriber that records every telemetry payload."""

    def __init__(self, mq: Mosquitto) -> None:
        self.batches: list[wire.Batch] = []
        self.health: list[dict[str, Any]] = []
        self.status: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.connects = 0
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id="outage-test-sub",
                        protocol=paho.MQTTv5)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 2)
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect(mq.host, mq.port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe("enmon/v1/+/+/#", qos=1)
        self.connects += 1

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        with self.lock:
            if kind == "telemetry":
                self.batches.append(wire.parse_batch(msg.payload, topic=msg.topic).batch)
            elif kind == "health":
                self.health.append(json.loads(msg.payload))
            elif kind == "status":
                self.status.append(json.loads(msg.payload))

    def seqs(self) -> list[int]:
        with self.lock:
            return [b.seq for b in self.batches]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def committed(db: Path) -> int:
    """next_seq as committed by the gateway (read-only look into its queue)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def queued(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT COUNT(*) FROM batch").fetchone()[0])
    finally:
        con.close()


def test_outage_and_kill_9_deliver_every_batch_exactly_once_in_order(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    reads = itertools.count()

    def counter(base: float) -> dict[str, float]:
        # energy grows on every read: a reading taken twice or lost shows up as a gap or repeat
        return {"active_energy_import_kwh": base + next(reads) * 0.01, "voltage_l1_v": 230.0}

    sdm = library.load("eastron-sdm630")
    dlt = library.load("chint-dtsu666-dlt645")
    sims: list[LineServer] = [
        ModbusSlaveServer({1: Unit(sdm, lambda: counter(1000.0)),  # type: ignore[arg-type]
                           2: Unit(sdm, lambda: counter(5000.0))}).start(),  # type: ignore[arg-type]
        Dlt645Server({"000000000007": Meter(dlt, lambda: counter(70.0))}).start(),  # type: ignore[arg-type]
    ]
    state = tmp_path / "gw-state"
    cfg = {
        "site": "hosp-a", "gateway": "gw-07", "state_dir": str(state),
        # the broker hop on its own (no ingest here to confirm storage): PUBACK mode, where
        # the promise is exactly once to the broker; end-to-end mode, where ingest's
        # confirmation trims the queue, is tests/ingest/test_end_to_end.py
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "window": 5,
                 "end_to_end": False},
        "poll": {"interval_s": 0.2, "health_interval_s": 0.5},
        "devices": [
            {"name": "m1", "profile": "eastron-sdm630", "unit_id": 1, "quantities": QS,
             "transport": {"type": "serial", "port": sims[0].device, "timeout_s": 0.5}},
            {"name": "m2", "profile": "eastron-sdm630", "unit_id": 2, "quantities": QS,
             "transport": {"type": "serial", "port": sims[0].device, "timeout_s": 0.5}},
            {"name": "d7", "profile": "chint-dtsu666-dlt645", "address": "000000000007",
             "quantities": QS,
             # 2400 baud as DL/T 645 meters use; parity N because Linux ptys refuse
             # re-applying even parity (termios EINVAL on the second open)
             "transport": {"type": "serial", "port": sims[1].device, "baud": 2400,
                           "timeout_s": 0.5}},
        ],
    }
    cfg_path = tmp_path / "gateway.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    db = state / "queue.db"
    sub = Subscriber(mosquitto)
    gw = Part(name="gateway", args=["gateway", "run", "-c", str(cfg_path)], workdir=tmp_path)
    try:
        gw.start()
        wait_until(lambda: len(sub.seqs()) >= 3, 30, "3 batches before the outage")
        mosquitto.stop()
        # the gateway keeps polling into its disk queue during the outage
        wait_until(lambda: queued(db) >= 6, 30, "6 batches queued during the outage")
        gw.kill()  # kill -9 in the middle of the outage
        total = committed(db)
        assert queued(db) >= 6
        mosquitto.start()
        wait_until(lambda: sub.connects >= 2, 30, "the subscriber back on the broker")
        n_health = len(sub.health)
        gw.start()
        wait_until(lambda: len(sub.seqs()) >= total + 3, 60,
                   f"all {total} committed batches and 3 more after restart")
        wait_until(lambda: len(sub.health) > n_health, 30, "a health message after restart")
        assert gw.stop() == 0, gw.log_tail()
        final = committed(db)
        wait_until(lambda: len(sub.seqs()) >= final, 20, "the batches of the clean stop")
    finally:
        gw.kill()
        sub.close()
        for s in sims:
            s.stop()

    seqs = sub.seqs()
    assert seqs == list(range(final)), "every committed batch exactly once, in seq order"
    last_ts: dict[str, int] = {}
    last_energy: dict[str, float] = {}
    for b in sub.batches:
        for s in b.samples:
            assert s.ts > last_ts.get(s.device, 0), f"{s.device}: timestamps out of order"
            last_ts[s.device] = s.ts
            e = s.values["active_energy_import_kwh"]
            assert e > last_energy.get(s.device, -1), f"{s.device}: counter went backwards"
            last_energy[s.device] = e
            assert s.flags == {}
    assert set(last_ts) == {"m1", "m2", "d7"}
    # health messages report the queue, the drop counters and the poll success rate
    h = sub.health[-1]
    assert h["queue"]["dropped_batches"] == 0 and h["poll_success_rate"] == 1.0
    assert h["devices"]["d7"]["online"] is True
    assert any(s["state"] == "online" for s in sub.status)
    log = gw.log_tail(200_000)
    assert "event=mqtt_disconnected" in log and "event=gateway_start" in log
    received = sum(len(b.samples) for b in sub.batches)
    times = len({(b.gateway, s.device, s.ts) for b in sub.batches for s in b.samples})
    record_fault("broker down, gateway kill -9 during the outage (gateway → broker)",
                 sent=samples_sent(gw.log_tail(5_000_000)), stored=times,
                 lost=max(0, samples_sent(gw.log_tail(5_000_000)) - times),
                 duplicated=received - times, note=f"{final} batches, received by a subscriber")


def test_kill_9_publishes_the_last_will(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sdm = library.load("eastron-sdm630")
    sim = ModbusSlaveServer({1: Unit(sdm, {"voltage_l1_v": 230.0})},  # type: ignore[arg-type]
                            framing="tcp", link="tcp").start()
    cfg = {"site": "hosp-a", "gateway": "gw-lwt", "state_dir": str(tmp_path / "st"),
           "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
           "poll": {"interval_s": 0.5},
           "devices": [{"name": "m", "profile": "eastron-sdm630", "quantities": QS,
                        "transport": {"type": "tcp", "host": "127.0.0.1", "port": sim.port}}]}
    (tmp_path / "gw.yaml").write_text(yaml.safe_dump(cfg))
    sub = Subscriber(mosquitto)
    gw = Part(name="gw-lwt", args=["gateway", "run", "-c", str(tmp_path / "gw.yaml")],
              workdir=tmp_path)
    try:
        gw.start()
        wait_until(lambda: any(s["state"] == "online" for s in sub.status), 30, "birth")
        gw.kill()
        wait_until(lambda: sub.status[-1]["state"] == "offline", 30, "LWT after kill -9")
    finally:
        gw.kill()
        sub.close()
        sim.stop()
