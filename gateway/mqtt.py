"""MQTT uplink on paho-mqtt 2.x: the disk queue's only reader.

Batches are never handed to paho straight from the poller. The poller appends
to the :class:`~gateway.diskqueue.DiskQueue`; :meth:`Uplink.pump` hands the
oldest un-sent batches to paho, at most ``window`` at a time and only while
connected, and ``on_publish`` (the broker's PUBACK) is the only thing that
removes a batch from disk. Consequences:

* a broker outage of hours costs no RAM: the backlog stays on disk (bounded,
  oldest-first drops counted) and paho never holds more than ``window``;
* after a reconnect paho itself re-sends the ≤ ``window`` batches it held
  (same order, DUP set) and the pump continues after them — nothing is sent twice
  by us, and order is kept because one connection carries everything in seq order;
* after a crash or ``kill -9`` paho's memory is gone, so a fresh process sends
  everything still on disk, oldest first, with the original ``seq`` and timestamps.

The one duplicate QoS 1 cannot rule out — the broker got a batch but its PUBACK
was lost with the connection — reaches ingest with a ``seq`` it has seen and
is discarded there (writes are idempotent anyway).

**End to end** (``mqtt.end_to_end``, the default): the PUBACK only says the broker has
the batch. A broker that crashes before it persists, restarts without its persistence
file or forgets a session would lose it, so the batch stays on disk until ingest says
it is *stored in the database*: ingest publishes the stored seqs on
``enmon/v1/{site}/{gateway}/ack`` and only that removes them. A batch the broker took
but nobody confirmed is sent again after ``ack_timeout_s`` (doubling up to an hour, so a
database outage of hours does not flood the broker); resends are harmless because
ingest's writes are idempotent. The queue stays bounded on disk as before.

Also here: retained birth ``{"state":"online"}`` / LWT ``{"state":"offline"}``
on the status topic, TLS (CA, client cert/key), username/password (the password
is passed to paho and never logged), reconnect with exponential backoff
(paho's ``reconnect_delay_set``), and QoS 0 ``health`` messages.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from enmon import wire
from gateway.config import MQTT
from gateway.diskqueue import DiskQueue

log = logging.getLogger("enmon.gateway.mqtt")


class Uplink:
    """Forwards the disk queue to the broker for one gateway."""

    def __init__(self, cfg: MQTT, site: str, gateway: str, queue: DiskQueue) -> None:
        self.cfg, self.site, self.gateway, self.queue = cfg, site, gateway, queue
        self._lock = threading.Lock()
        self._mid_to_seq: dict[int, int] = {}
        self._early: set[int] = set()  # PUBACKs that beat publish() returning the mid
        # mids of publishes that are not telemetry (status, health, command results) whose
        # on_publish has not come yet: paho reuses mids after 65535 publishes, so an
        # unclaimed one left in _early would later "acknowledge" a telemetry batch at once
        self._other: set[int] = set()
        self._handed: set[int] = set()  # seqs paho holds, not yet acknowledged
        self._last_handed = -1
        # end to end: PUBACKed, not yet confirmed stored → (due for a resend at, attempts)
        self._sent: dict[int, tuple[float, int]] = {}
        self._confirmed_early: set[int] = set()
        self._attempts: dict[int, int] = {}  # sends of a batch so far, once resent
        self.confirmed = 0
        self.resent = 0
        self.ack_topic = wire.ack_topic(site, gateway)
        self.acked = 0
        self.refused = 0
        self.connects = 0
        self.connect_failures = 0  # attempts in a row that did not reach the broker
        self.connected = threading.Event()
        self.status_topic = wire.status_topic(site, gateway)
        self.telemetry_topic = wire.telemetry_topic(site, gateway)
        self.health_topic = wire.health_topic(site, gateway)
        client_id = cfg.client_id or f"enmon-gw-{site}-{gateway}"
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password())
        if cfg.tls is not None:
            import ssl  # only with TLS: without it the gateway process never loads OpenSSL

            c.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            c.tls_insecure_set(cfg.tls.insecure)
        c.will_set(self.status_topic, wire.dumps({"state": "offline"}), qos=1, retain=True)
        c.reconnect_delay_set(min_delay=max(1, int(cfg.reconnect_min_s)),
                              max_delay=int(cfg.reconnect_max_s))
        # paho's own window must not be smaller than ours (+1 for status messages)
        c.max_inflight_messages_set(cfg.window + 2)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c

    # -- paho thread -------------------------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags,
                    rc: ReasonCode, props: Properties | None) -> None:
        if rc.is_failure:
            # bad credentials / not authorised: paho keeps retrying with backoff
            log.warning("event=mqtt_connect_refused reason=%r", str(rc))
            return
        self.connects += 1
        self.connect_failures = 0
        log.info("event=mqtt_connected host=%s port=%d tls=%s user=%s",
                 self.cfg.host, self.cfg.port, self.cfg.tls is not None, self.cfg.username or "-")
        if self.cfg.end_to_end:
            client.subscribe(self.ack_topic, qos=1)
        birth = {"state": "online", "ts": int(time.time() * 1000)}
        self.publish_other(self.status_topic, wire.dumps(birth), qos=1, retain=True)
        self.connected.set()

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        """The broker could not be reached (refused, no route, TLS): paho calls this once
        per attempt, i.e. once per backoff step, and retries on its own. paho does not pass
        the socket error on, so the line names where and how often instead."""
        self.connect_failures += 1
        delay = min(self.cfg.reconnect_max_s,
                    max(1.0, self.cfg.reconnect_min_s) * 2 ** (self.connect_failures - 1))
        log.warning("event=mqtt_connect_failed host=%s port=%d tls=%s attempt=%d "
                    "retry_in_s=%.0f", self.cfg.host, self.cfg.port, self.cfg.tls is not None,
                    self.connect_failures, delay)

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: paho.DisconnectFlags,
                       rc: ReasonCode, props: Properties | None) -> None:
        if self.connected.is_set():
            log.warning("event=mqtt_disconnected reason=%r in_flight=%d", str(rc),
                        len(self._handed))
        self.connected.clear()

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, rc: ReasonCode,
                    props: Properties | None) -> None:
        with self._lock:
            seq = self._mid_to_seq.pop(mid, None)
            if seq is None:
                if mid in self._other:
                    self._other.discard(mid)  # a status, health or command result: not ours
                else:
                    self._early.add(mid)
                return
        self._acked(seq, rc)

    def publish_other(self, topic: str, payload: bytes, *, qos: int = 1,
                      retain: bool = False) -> paho.MQTTMessageInfo:
        """Publish anything but telemetry (status, health, command results), claiming its mid
        so its PUBACK is never taken for a telemetry batch's (see ``_other``)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == paho.MQTT_ERR_SUCCESS or info.rc == paho.MQTT_ERR_NO_CONN:
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)  # its callback came first
                else:
                    self._other.add(info.mid)
        return info

    def _acked(self, seq: int, rc: ReasonCode | None) -> None:
        if rc is not None and rc.is_failure:
            # the broker refused it (e.g. not authorised): keep it on disk for the next start
            self.refused += 1
            log.error("event=publish_refused seq=%d reason=%r", seq, str(rc))
            with self._lock:
                self._handed.discard(seq)
            return
        with self._lock:
            self._handed.discard(seq)
            self.acked += 1
            if self.cfg.end_to_end:
                if seq not in self._confirmed_early:
                    n = self._attempts.get(seq, 1)
                    wait = min(self.cfg.ack_timeout_s * 2 ** (n - 1), 3600.0)
                    self._sent[seq] = (time.monotonic() + wait, n)
                    return
                self._confirmed_early.discard(seq)
                self._attempts.pop(seq, None)
        self.queue.ack(seq)

    def _on_message(self, client: paho.Client, userdata: object,
                    msg: paho.MQTTMessage) -> None:
        """Ingest's word that these batches are in the database: now they may go."""
        if msg.topic != self.ack_topic:
            return
        seqs = wire.decode_ack(bytes(msg.payload))
        n = 0
        with self._lock:
            for seq in seqs:
                self._attempts.pop(seq, None)
                if self._sent.pop(seq, None) is not None:
                    n += 1
                elif seq in self._handed:  # stored before its PUBACK came back
                    self._confirmed_early.add(seq)
                    n += 1
            self.confirmed += n
        for seq in seqs:
            self.queue.ack(seq)

    # -- asyncio thread ------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._handed)

    @property
    def unconfirmed(self) -> int:
        """Batches the broker took that ingest has not yet confirmed stored."""
        with self._lock:
            return len(self._sent)

    def _resend_due(self, room: int) -> int:
        """Send again what the broker took long ago but ingest never confirmed."""
        now = time.monotonic()
        with self._lock:
            due = sorted(s for s, (at, _) in self._sent.items() if at <= now)[:room]
        sent = 0
        for seq in due:
            item = self.queue.get(seq)
            with self._lock:
                _, attempts = self._sent.pop(seq, (0.0, 1))
            if item is None:  # confirmed (deleted) meanwhile
                continue
            if self._publish(item.seq, item.payload):
                self.resent += 1
                sent += 1
                log.warning("event=batch_resent seq=%d attempt=%d reason=not_confirmed_stored",
                            seq, attempts + 1)
                with self._lock:
                    self._attempts[seq] = attempts + 1
        return sent

    def _publish(self, seq: int, payload: bytes) -> bool:
        """Hand one batch to paho; False if paho's queue is full."""
        # never hold our lock across publish(): paho calls on_publish with its own
        # lock held, so the two threads could deadlock
        with self._lock:
            self._handed.add(seq)
        info = self.client.publish(self.telemetry_topic, payload, qos=1)
        if info.rc == paho.MQTT_ERR_QUEUE_SIZE:
            with self._lock:
                self._handed.discard(seq)
            return False
        with self._lock:
            early = info.mid in self._early
            self._early.discard(info.mid)
            if not early:
                self._mid_to_seq[info.mid] = seq
        if early:
            self._acked(seq, None)
        return True

    def pump(self) -> int:
        """Hand the next batches to paho while connected; returns how many."""
        if not self.connected.is_set():
            return 0
        room = self.cfg.window - self.in_flight
        if room <= 0:
            return 0
        sent = self._resend_due(room) if self.cfg.end_to_end else 0
        room -= sent
        for item in self.queue.peek(after=self._last_handed, limit=max(0, room)):
            if not self._publish(item.seq, item.payload):
                break
            self._last_handed = item.seq
            sent += 1
        return sent

    def publish_health(self, payload: dict[str, object]) -> None:
        if self.connected.is_set():
            self.publish_other(self.health_topic, wire.dumps(payload), qos=0)

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=True)
        self.client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say goodbye: retained offline status, then disconnect (no LWT on a clean stop)."""
        if self.connected.is_set():
            info = self.publish_other(self.status_topic, wire.dumps({"state": "offline"}),
                                      qos=1, retain=True)
            info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()
