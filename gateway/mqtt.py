"""MQTT uplink on paho-mqtt 2.x: QoS 1 telemetry, retained birth, LWT.

paho runs its network loop in its own thread; ``on_publish`` tells us when the
broker has acknowledged (PUBACK) a message, which is the only moment a batch
may be forgotten. A message not acknowledged before a disconnect is published
again after the reconnect by paho (``seq`` lets ingest spot the duplicate).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from enmon import wire
from gateway.config import MQTT

log = logging.getLogger("enmon.gateway.mqtt")


class Uplink:
    """Publishes telemetry and status for one gateway.

    ``on_acked(key)`` is called (from paho's thread) when the broker acknowledged
    the message published with ``publish_telemetry(key, payload)``.
    """

    def __init__(self, cfg: MQTT, site: str, gateway: str, on_acked: Callable[[int], None]) -> None:
        self.cfg, self.site, self.gateway = cfg, site, gateway
        self._on_acked = on_acked
        self._lock = threading.Lock()
        self._mid_to_key: dict[int, int] = {}
        self._unacked: dict[int, bytes] = {}  # key -> payload, in publish order
        self._early_acks: set[int] = set()
        self.connected = threading.Event()
        self.status_topic = wire.status_topic(site, gateway)
        self.telemetry_topic = wire.telemetry_topic(site, gateway)
        client_id = cfg.client_id or f"enmon-gw-{site}-{gateway}"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            c.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(cfg.tls.insecure)
        c.will_set(self.status_topic, wire.dumps({"state": "offline"}), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self.client = c

    # -- paho thread -------------------------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        if rc.is_failure:
            log.warning("event=mqtt_connect_refused reason=%s", rc)
            return
        log.info("event=mqtt_connected host=%s port=%d", self.cfg.host, self.cfg.port)
        birth = {"state": "online", "ts": int(time.time() * 1000)}
        client.publish(self.status_topic, wire.dumps(birth), qos=1, retain=True)
        # paho itself re-sends every unacknowledged QoS 1 message (same mid, DUP set)
        # after a reconnect, in order; we only track the acknowledgements.
        self.connected.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        self.connected.clear()
        log.warning("event=mqtt_disconnected reason=%s", rc)

    def _on_publish(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        rc: ReasonCode,
        props: Properties | None,
    ) -> None:
        with self._lock:
            key = self._mid_to_key.pop(mid, None)
            if key is None:
                # PUBACK raced ahead of _send recording the mid
                self._early_acks.add(mid)
                return
        self._acked(key)

    def _acked(self, key: int) -> None:
        with self._lock:
            if self._unacked.pop(key, None) is None:
                return  # a replayed copy was acknowledged already
        self._on_acked(key)

    # -- caller thread -------------------------------------------------------------------

    def _send(self, key: int, payload: bytes) -> None:
        # Never hold our lock across publish(): paho calls on_publish with its own
        # message lock held, so holding ours here could deadlock the two threads.
        info = self.client.publish(self.telemetry_topic, payload, qos=1)
        with self._lock:
            early = info.mid in self._early_acks
            self._early_acks.discard(info.mid)
            if not early:
                self._mid_to_key[info.mid] = key
        if early:
            self._acked(key)

    def publish_telemetry(self, key: int, payload: bytes) -> None:
        with self._lock:
            self._unacked[key] = payload
        self._send(key, payload)  # paho queues it while we are disconnected

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._unacked)

    def start(self) -> None:
        self.client.connect_async(
            self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s, clean_start=True
        )
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye: retained offline status, then disconnect (no LWT on a clean stop)."""
        if self.connected.is_set():
            info = self.client.publish(
                self.status_topic, wire.dumps({"state": "offline"}), qos=1, retain=True
            )
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
