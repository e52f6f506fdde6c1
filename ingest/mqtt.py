"""An asyncio MQTT 5 subscriber whose messages are acknowledged only when the caller says so.

Why not aiomqtt: aiomqtt 2.5 acknowledges every QoS 1 message as soon as paho hands
it over (its manual-ack API is still a draft, aiomqtt #345/#346). Ingest must ack
only after the readings are durably in InfluxDB, otherwise a crash between "acked"
and "written" loses them. paho-mqtt 2.x has exactly that (``manual_ack=True`` and
``Client.ack(mid, qos)``), so this module is a small typed bridge from paho's
network thread to asyncio, in the style of aiomqtt: one conversion point from
paho's message, ``call_soon_threadsafe`` for every crossing, futures for the
connect/subscribe handshakes.

Three rules keep the guarantee honest:

* **Persistent session.** Fixed client id, ``clean_start=False`` and a session
  expiry, so what was not acked when a worker dies stays with the broker and is
  redelivered to the same client id when it comes back.
* **Flow control by the broker, and by us.** MQTT 5 ``Receive Maximum`` caps how
  many unacked QoS 1 messages the broker sends us. mosquitto 2.0.11 was seen to
  exceed it when a large backlog is handed over on reconnect, so the local queue
  also has a hard capacity: when it is full, paho's network thread waits for room
  (TCP backpressure) instead of dropping anything. Memory is bounded either way.
* **Acks never cross connections.** Packet ids are per connection. A message
  received before a reconnect is redelivered by the broker after it, so acking
  the old copy on the new connection could ack an unrelated message that reuses
  the id. Each delivery remembers its connection ``generation``; an ack for an
  older generation is skipped (the redelivered copy is written again, which is
  harmless because writes are idempotent, and acked then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from enmon.errors import EnmonError
from enmon.lineproto import payload_hash
from enmon.wire import MAX_PAYLOAD_BYTES

log = logging.getLogger("enmon.ingest.mqtt")

SHARE_GROUP = "ingest"


class MqttError(EnmonError):
    """The broker refused us or could not be reached in time."""


def shared(topic_filter: str, group: str = SHARE_GROUP) -> str:
    """``$share/{group}/{filter}``: the broker splits the filter's messages among the group."""
    return f"$share/{group}/{topic_filter}"


@dataclass(frozen=True, kw_only=True, slots=True)
class MqttSettings:
    """How to reach the broker and what session to keep there.

    Args:
        host: broker address.
        port: broker port.
        client_id: must be fixed per worker and unique among workers: it names the
            persistent session that holds this worker's unacked messages.
        session_expiry: seconds the broker keeps the session while we are away;
            it must outlast the longest outage (restart, InfluxDB down) to lose nothing.
        receive_maximum: unacked messages the broker may have in flight to us (1..65535).
        max_queued_bytes: payload bytes received and not yet taken by the pipeline; above
            it paho's thread stops reading the socket (TCP backpressure to the broker).
        keepalive: seconds between pings.
        username: broker user, if the broker requires one.
        password: broker password (never logged).
        tls: use TLS with the system trust store (or ``ca_file``).
        ca_file: CA bundle for a private broker certificate.
        cert_file: client certificate (brokers that identify clients by certificate).
        key_file: its private key.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str
    session_expiry: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    max_queued_bytes: int = 32 * 1024 * 1024
    keepalive: int = 30
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One received message and the handle that acknowledges it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int
    received_at: float  # time.time() when paho handed it over
    _owner: AckingSubscriber = field(repr=False)
    # a payload over the wire contract's limit is not kept: only its size and SHA-256,
    # which is all its ``rejected`` record needs (memory stays bounded in bytes)
    oversize: tuple[int, str] | None = None

    def ack(self) -> bool:
        """Tell the broker this message is done. False if its connection is gone."""
        return self._owner.ack(self)


class AckingSubscriber:
    """Subscribe over MQTT 5 with a persistent session; ack each message explicitly.

    Use as ``async with AckingSubscriber(settings, topics=[...]) as sub:`` then
    ``async for d in sub.deliveries(): ...; d.ack()``. Reusable, not reentrant.
    """

    def __init__(self, settings: MqttSettings, *, topics: Sequence[str]) -> None:
        if not 1 <= settings.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be 1..65535")
        self.settings = settings
        self.topics = list(topics)
        self._loop: asyncio.AbstractEventLoop | None = None
        # Room for receive_maximum messages plus as many stale copies from before a
        # reconnect; paho's thread blocks on _room when the queue holds that many.
        self.capacity = 2 * settings.receive_maximum
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self._room = threading.Semaphore(self.capacity)
        self._bytes = 0  # payload bytes in _queue
        self._bytes_free = threading.Condition()
        self._closing = threading.Event()
        self._lock = threading.Lock()  # guards _generation/_connected against ack()
        self._generation = 0
        self._connected = False
        self._ready = asyncio.Event()  # connected and subscribed
        self._client: paho.Client | None = None
        self._entered = False
        self.reconnects = 0
        self.overflows = 0
        self.stale_acks = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AckingSubscriber:
        if self._entered:
            raise RuntimeError("AckingSubscriber is not reentrant")
        self._entered = True
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._closing.clear()
        s = self.settings
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=paho.MQTTv5,
            manual_ack=True,
        )
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            ctx = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                ctx.load_cert_chain(s.cert_file, s.key_file)
            client.tls_set_context(ctx)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry
        props.ReceiveMaximum = s.receive_maximum
        # connect_async + loop_start: paho's thread keeps reconnecting on its own,
        # including when the broker is not up yet at start.
        client.connect_async(s.host, s.port, keepalive=s.keepalive, clean_start=False,
                             properties=props)
        client.loop_start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        self._closing.set()  # unblocks paho's thread if it waits for room
        if client is not None:
            with self._lock:
                self._connected = False
                self._generation += 1
            await asyncio.get_running_loop().run_in_executor(None, self._shutdown, client)
        self._entered = False

    @staticmethod
    def _shutdown(client: paho.Client) -> None:
        # A normal DISCONNECT keeps the session (expiry > 0): unacked messages stay queued.
        with contextlib.suppress(Exception):
            client.disconnect()
        client.loop_stop()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until connected and subscribed (``math.inf``: forever)."""
        try:
            await asyncio.wait_for(self._ready.wait(), None if math.isinf(timeout) else timeout)
        except TimeoutError:
            raise MqttError(
                f"not connected to {self.settings.host}:{self.settings.port} "
                f"after {timeout:.0f}s") from None

    @property
    def connected(self) -> bool:
        return self._connected

    # ------------------------------------------------------------------ consuming

    async def get(self) -> Delivery:
        d = await self._queue.get()
        self._taken(d)
        return d

    def get_nowait(self) -> Delivery | None:
        try:
            d = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        self._taken(d)
        return d

    def _taken(self, d: Delivery) -> None:
        self._room.release()
        with self._bytes_free:
            self._bytes -= len(d.payload)
            self._bytes_free.notify_all()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            yield await self.get()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def publish(self, topic: str, payload: bytes) -> bool:
        """QoS 1 publish on this connection (ingest's end-to-end acks); False if offline.

        A lost ack costs a resend from the gateway after its timeout, never data.
        """
        with self._lock:
            if not self._connected or self._client is None:
                return False
            client = self._client
        return client.publish(topic, payload, qos=1).rc == paho.MQTT_ERR_SUCCESS

    def ack(self, d: Delivery) -> bool:
        if d.qos == 0:
            return True
        with self._lock:
            if d.generation != self._generation or not self._connected or self._client is None:
                self.stale_acks += 1
                return False
            self._client.ack(d.mid, d.qos)
            return True

    # ------------------------------------------------------------------ paho thread

    def _call(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: paho.Client, _userdata: Any, flags: Any,
                    reason: ReasonCode, _props: Properties | None) -> None:
        if reason.is_failure:
            log.warning("event=mqtt_connect_refused client_id=%s reason=%s",
                        self.settings.client_id, reason)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
        log.info("event=mqtt_connected client_id=%s session_present=%s generation=%d",
                 self.settings.client_id, flags.session_present, self._generation)
        if self._generation > 1 and not flags.session_present:
            # the broker forgot us (expired, restarted without persistence, or another
            # worker took this client id): what it held for us is gone; say so loudly
            log.error("event=mqtt_session_lost client_id=%s", self.settings.client_id)
        # Subscribing again on a resumed session is harmless and repairs a session
        # the broker lost (e.g. a broker restart without persistence).
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int,
                      reasons: list[ReasonCode], _props: Properties | None) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            log.error("event=mqtt_subscribe_refused topics=%s reasons=%s", self.topics, bad)
            return
        log.info("event=subscribed client_id=%s topics=%s", self.settings.client_id,
                 ",".join(self.topics))
        self._call(self._ready.set)

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any,
                       reason: ReasonCode, _props: Properties | None) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            self._generation += 1
        if was:
            self.reconnects += 1
            log.warning("event=mqtt_disconnected client_id=%s reason=%s",
                        self.settings.client_id, reason)
        self._call(self._ready.clear)
        self._call(self._purge_stale)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        payload, oversize = bytes(msg.payload), None
        if len(payload) > MAX_PAYLOAD_BYTES:
            oversize = (len(payload), payload_hash(payload))
            payload = b""
        d = Delivery(msg.topic, payload, msg.mid, msg.qos, bool(msg.dup),
                     self._generation, time.time(), self, oversize)
        with self._bytes_free:
            # a byte budget beside the count: a flood of maximum-size payloads while the
            # database is down must not grow memory past it (one message always fits)
            while (self._bytes and self._bytes + len(payload) > self.settings.max_queued_bytes
                   and not self._closing.is_set()):
                self._bytes_free.wait(0.5)
            self._bytes += len(payload)
        waited = False
        while self._closing.is_set() or not self._room.acquire(timeout=0.5):
            if self._closing.is_set():
                with self._bytes_free:
                    self._bytes -= len(payload)
                return  # shutting down; not acked, so the broker redelivers it
            if not waited:
                waited = True
                self.overflows += 1
                log.warning("event=mqtt_queue_full capacity=%d action=backpressure",
                            self.capacity)
        self._call(self._queue.put_nowait, d)

    # ------------------------------------------------------------------ loop side

    def _purge_stale(self) -> None:
        """Drop queued copies from a dead connection: the broker will redeliver them."""
        keep: list[Delivery] = []
        dropped = 0
        while True:
            try:
                d = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if d.generation == self._generation or d.qos == 0:
                keep.append(d)
            else:
                dropped += 1
                self._taken(d)
        for d in keep:
            self._queue.put_nowait(d)
        if dropped:
            log.info("event=mqtt_purged_stale count=%d", dropped)
