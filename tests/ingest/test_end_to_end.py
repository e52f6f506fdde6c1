"""End to end, not hop by hop: a gateway keeps a batch until ingest says it is stored.

The gateway side is the gateway's own code (its disk queue and MQTT uplink) in this
process; the broker, ingest (a real worker) and influxd are real. The broker takes the
batches (PUBACK) while ingest is down, then dies with SIGKILL and loses its persistence
file — everything it held is gone. Nothing may be lost: the gateway still has every
batch on disk, sends the unconfirmed ones again, and ingest's acknowledgements are what
finally empty the queue. Counted reading by reading.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enmon.localrun import InfluxDB1, Mosquitto
from gateway.config import MQTT
from gateway.diskqueue import DiskQueue
from gateway.mqtt import Uplink
from tests.ingest.conftest import (
    SITE,
    ThreadWorker,
    count,
    expected_rows,
    influx_cfg,
    make_batch,
    mqtt_cfg,
    stored,
)
from tests.support import record_fault, wait_until

pytestmark = pytest.mark.slow
GW = "gw-e2e"
N = 200  # batches of 10 readings


class Gateway:
    """The gateway's queue and uplink, pumped as its forwarder does."""

    def __init__(self, state: Path, mq: Mosquitto) -> None:
        self.queue = DiskQueue(state / "queue.db")
        self.uplink = Uplink(MQTT(host=mq.host, port=mq.port, client_id=f"enmon-gw-{GW}",
                                  ack_timeout_s=2.0, reconnect_min_s=0.2,
                                  reconnect_max_s=1.0), SITE, GW, self.queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def _pump(self) -> None:
        while not self._stop.is_set():
            self.uplink.pump()
            self.queue.flush_acks()
            time.sleep(0.02)

    def __enter__(self) -> Gateway:
        self.uplink.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.uplink.stop()
        self.queue.close()


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Gateway]:
    with Gateway(tmp_path / "gw", mosquitto) as g:
        yield g


def test_broker_sigkill_without_persistence_loses_nothing(
        mosquitto: Mosquitto, influxdb: InfluxDB1, gateway: Gateway) -> None:
    # ingest has a persistent session on the broker, then goes down
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-e2e"), influx_cfg(influxdb)):
        pass
    for _ in range(N):
        gateway.queue.append(lambda s: (make_batch(GW, s), 10), int(time.time() * 1000))
    # the broker takes every batch for ingest's session (PUBACK) ...
    wait_until(lambda: gateway.uplink.acked >= N, 60, "every batch PUBACKed by the broker")
    # ... but a PUBACK is not storage: all of them are still on the gateway's disk
    assert gateway.queue.stats().depth == N
    # the broker dies and comes back without its persistence file: what it held is gone
    mosquitto.kill()
    shutil.rmtree(mosquitto.workdir / "persist")
    mosquitto.start()
    with ThreadWorker(mqtt_cfg(mosquitto, "ingest-e2e"), influx_cfg(influxdb)) as w:
        want = expected_rows(GW, range(N))
        wait_until(lambda: stored(influxdb, GW) == want, 120, "every reading stored")
        # ingest's acks, not the broker's, empty the gateway's queue
        wait_until(lambda: gateway.queue.stats().depth == 0, 60, "queue emptied by acks")
        assert gateway.uplink.confirmed >= N and gateway.uplink.resent >= N
        assert w.stats.e2e_acks >= N
    got = stored(influxdb, GW)
    assert got == want  # 0 lost; writes are idempotent: 0 duplicated
    points = count(influxdb, f"SELECT count(active_power_kw) FROM meter WHERE gateway='{GW}'")
    record_fault("broker kill -9 with a backlog (ingest down), persistence deleted",
                 sent=len(want), stored=len(got), lost=len(want) - len(got),
                 duplicated=points - len(got), note=f"{N} batches, all PUBACKed before the kill")
