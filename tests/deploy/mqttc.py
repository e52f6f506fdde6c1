"""A small synchronous MQTT 5 client for deploy tests (paho 2.x, real sockets).

Every wait is on an event with a deadline, so a refused connection or a
message that never arrives fails fast and clearly instead of hanging.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

DEADLINE = 20.0  # generous: the machine is shared with other test runs


@dataclass
class Probe:
    """One client; ``connect()`` returns the broker's verdict instead of raising."""

    port: int
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    client_id: str = field(default_factory=lambda: f"probe-{uuid.uuid4().hex[:8]}")
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._done = threading.Event()
        self._subacked = threading.Event()
        self.disconnected = threading.Event()
        self.connack: ReasonCode | None = None
        self.granted: list[ReasonCode] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if self.username is not None:
            c.username_pw_set(self.username, self.password)
        if self.ca_file is not None:
            c.tls_set(
                ca_certs=str(self.ca_file),
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        self.client = c

    # paho callbacks (network thread)
    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self.connack = rc
        self._done.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self.disconnected.set()
        self._done.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._arrived:
            self.received.append((msg.topic, bytes(msg.payload)))
            self._arrived.notify_all()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        self.granted = list(rcs)
        self._subacked.set()

    def connect(self, *, clean_start: bool = True, session_expiry_s: int = 0) -> str:
        """'ok', the CONNACK reason ('Bad user name or password', 'Not authorized'…),
        or 'no connack' when the broker closed the socket without answering (TLS mismatch).
        ``clean_start=False`` with a ``session_expiry_s`` keeps a persistent session."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = None
        if session_expiry_s:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=clean_start,
                                properties=props)
        except (OSError, ssl.SSLError) as exc:
            return f"socket error: {exc.__class__.__name__}"
        self.client.loop_start()
        if not self._done.wait(DEADLINE):
            raise AssertionError("broker neither answered nor closed the connection")
        if self.connack is None:
            return "no connack"
        return "ok" if not self.connack.is_failure else str(self.connack)

    def subscribe(self, topic: str) -> list[ReasonCode]:
        self._subacked.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subacked.wait(DEADLINE), f"no SUBACK for {topic}"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(DEADLINE)

    def wait_for(self, payload: bytes) -> None:
        with self._arrived:
            ok = self._arrived.wait_for(
                lambda: any(p == payload for _, p in self.received), DEADLINE
            )
        assert ok, f"{payload!r} did not arrive; got {self.received!r}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def connected(probe: Probe) -> Iterator[Probe]:
    verdict = probe.connect()
    try:
        assert verdict == "ok", f"{probe.username or 'anonymous'} could not connect: {verdict}"
        yield probe
    finally:
        probe.close()
