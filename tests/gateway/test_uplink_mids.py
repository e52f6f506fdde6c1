"""A telemetry batch is acknowledged by the broker's PUBACK for *it*, never by a stale one.

paho numbers packets 1…65535 and starts again; the birth status, the health messages and
command results are PUBACKed (or, QoS 0, "published") under mids of their own. If such a
callback were remembered as a PUBACK that beat its publish, the telemetry batch that gets
the same mid ~65 000 publishes later would count as acknowledged the moment it is handed to
paho — and with hop-by-hop acks be deleted from the disk queue though the broker never had
it. Real mosquitto; the wrap-around is reached by setting paho's mid counter (waiting for
65 535 publishes is the only other way), and the broker is frozen (SIGSTOP) so that no
PUBACK can come for the batch.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from enmon.localrun import Mosquitto
from gateway.config import MQTT
from gateway.diskqueue import DiskQueue
from gateway.mqtt import Uplink
from tests.support import wait_until


def test_a_health_messages_mid_never_acknowledges_a_later_batch(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    q = DiskQueue(tmp_path / "q.db")
    up = Uplink(MQTT(host=mosquitto.host, port=mosquitto.port, end_to_end=False), "s1", "gw1",
                q)
    up.start()
    try:
        wait_until(up.connected.is_set, 20, "connected")
        up.publish_health({"ok": True})  # QoS 0: paho reports it published at once
        mid = up.client._last_mid
        q.append(lambda s: (b'{"v":1}', 1), int(time.time() * 1000))
        assert mosquitto.proc is not None
        os.kill(mosquitto.proc.pid, signal.SIGSTOP)  # no PUBACK can come now
        try:
            up.client._last_mid = mid - 1  # the next publish reuses the health message's mid
            assert up.pump() == 1
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert up.acked == 0, "a batch counted as PUBACKed by a frozen broker"
                time.sleep(0.02)
            assert q.stats().depth == 1
        finally:
            os.kill(mosquitto.proc.pid, signal.SIGCONT)
        wait_until(lambda: up.acked == 1, 20, "the batch's own PUBACK")
    finally:
        up.stop()
        q.close()
