"""An asyncio MQTT 5 subscriber whose messages are acknowledged only when the caller says so.

Why not aiomqtt: aiomqtt 2.5 acknowledges every QoS 1 message as soon as paho hands
it over (its manual-ack API is still a draft, aiomqtt #345/#346). Ingest must ack
only after the readings are durably in InfluxDB, otherwise a crash between "acked"
and "written" loses them.

Why not paho either (it has ``manual_ack=True``): its network thread reads every
packet with three or four ``recv`` calls and a ``select``, and each message then
crosses to the event loop; every one of those syscalls hands the GIL back and forth
with the loop that decodes the batches. Profiled on a draining backlog, paho's
thread was busy ~65 % of the time for a worker that reached 0.3 × the database's
write rate. The subset of MQTT 5 a subscriber with manual acks needs (CONNECT,
SUBSCRIBE, PUBLISH/PUBACK both ways, PING, DISCONNECT) is small, so this module
speaks it directly on an asyncio transport: one thread, each socket read parses
every packet it holds, one wake-up per burst, and the acks of a whole batch go out
in one write.

Three rules keep the guarantee honest:

* **Persistent session.** Fixed client id, ``clean_start=False`` and a session
  expiry, so what was not acked when a worker dies stays with the broker and is
  redelivered to the same client id when it comes back.
* **Flow control by the broker, and by us.** MQTT 5 ``Receive Maximum`` caps how
  many unacked QoS 1 messages the broker sends us. mosquitto 2.0.11 was seen to
  exceed it when a large backlog is handed over on reconnect, so the local queue
  also has a hard capacity (count and bytes): when it is full we stop reading the
  socket (TCP backpressure) and leave the rest unparsed; nothing is dropped.
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
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field

from enmon.errors import EnmonError
from enmon.lineproto import payload_hash
from enmon.wire import MAX_PAYLOAD_BYTES

log = logging.getLogger("enmon.ingest.mqtt")

SHARE_GROUP = "ingest"

# control packet types (high nibble of the first byte), MQTT 5.0 §2.1.2
_CONNACK, _PUBLISH, _PUBACK, _SUBACK, _PINGRESP, _DISCONNECT = 2, 3, 4, 9, 13, 14
_PINGREQ = b"\xc0\x00"
_DISCONNECT_NORMAL = b"\xe0\x00"  # reason 0: the session stays (its expiry is > 0)
# property identifier → how its value is encoded (§2.2.2.2): 1/2/4-byte int, varint,
# UTF-8 string, binary data, string pair
_PROP_KIND = {
    **dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), "b"),
    **dict.fromkeys((0x13, 0x21, 0x22, 0x23), "h"),
    **dict.fromkeys((0x02, 0x11, 0x18, 0x27), "i"),
    0x0B: "v",
    **dict.fromkeys((0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F), "s"),
    **dict.fromkeys((0x09, 0x16), "s"),
    0x26: "p",
}
_CONNACK_REASONS = {0x80: "unspecified error", 0x81: "malformed packet",
                    0x82: "protocol error", 0x84: "unsupported protocol version",
                    0x85: "client identifier not valid", 0x86: "bad user name or password",
                    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy",
                    0x8A: "banned", 0x9F: "connection rate exceeded"}


class MqttError(EnmonError):
    """The broker refused us or could not be reached in time."""


class _ProtocolError(Exception):
    """The broker sent something this client does not accept: drop the connection."""


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
            it we stop reading the socket (TCP backpressure to the broker).
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


@dataclass(slots=True, eq=False)
class Delivery:
    """One received message and the handle that acknowledges it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    dup: bool
    generation: int
    received_at: float  # time.time() when the packet was read
    _owner: AckingSubscriber = field(repr=False)
    # a payload over the wire contract's limit is not kept: only its size and SHA-256,
    # which is all its ``rejected`` record needs (memory stays bounded in bytes)
    oversize: tuple[int, str] | None = None

    def ack(self) -> bool:
        """Tell the broker this message is done. False if its connection is gone."""
        return self._owner.ack(self)


# ---------------------------------------------------------------------- encoding


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _connect_packet(s: MqttSettings, keepalive: int) -> bytes:
    flags = 0  # clean start off: resume the session
    if s.username is not None:
        flags |= 0x80
        if s.password is not None:
            flags |= 0x40
    props = (b"\x11" + s.session_expiry.to_bytes(4, "big")
             + b"\x21" + s.receive_maximum.to_bytes(2, "big"))
    body = (_utf8("MQTT") + b"\x05" + bytes((flags,)) + keepalive.to_bytes(2, "big")
            + _varint(len(props)) + props + _utf8(s.client_id))
    if s.username is not None:
        body += _utf8(s.username)
        if s.password is not None:
            pw = s.password.encode()
            body += len(pw).to_bytes(2, "big") + pw
    return _packet(0x10, body)


def _subscribe_packet(mid: int, topics: Sequence[str]) -> bytes:
    body = mid.to_bytes(2, "big") + b"\x00" + b"".join(_utf8(t) + b"\x01" for t in topics)
    return _packet(0x82, body)


def _properties(data: bytes, pos: int) -> tuple[dict[int, object], int]:
    """Decode the property block at ``pos``; returns the properties and the end offset."""
    length, pos = _read_varint(data, pos)
    end = pos + length
    out: dict[int, object] = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        kind = _PROP_KIND.get(pid)
        if kind is None:
            raise _ProtocolError(f"unknown property 0x{pid:02x}")
        if kind == "b":
            out[pid], pos = data[pos], pos + 1
        elif kind == "h":
            out[pid], pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif kind == "i":
            out[pid], pos = int.from_bytes(data[pos:pos + 4], "big"), pos + 4
        elif kind == "v":
            out[pid], pos = _read_varint(data, pos)
        else:
            for _ in range(2 if kind == "p" else 1):
                n = int.from_bytes(data[pos:pos + 2], "big")
                out[pid], pos = bytes(data[pos + 2:pos + 2 + n]), pos + 2 + n
    if pos != end:
        raise _ProtocolError("malformed properties")
    return out, end


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    n, mult = 0, 1
    for i in range(4):
        byte = data[pos + i]
        n += (byte & 0x7F) * mult
        if not byte & 0x80:
            return n, pos + i + 1
        mult *= 128
    raise _ProtocolError("variable byte integer longer than 4 bytes")


# ---------------------------------------------------------------------- connection


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection: splits the byte stream into packets for its owner."""

    def __init__(self, owner: AckingSubscriber, generation: int) -> None:
        self.owner = owner
        self.generation = generation
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.paused = False  # reading paused because the local queue is full
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.connack: asyncio.Future[tuple[bool, int, dict[int, object]]] = (
            asyncio.get_running_loop().create_future())
        self.last_received = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError(f"connection closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self.buf += data
        self.parse()

    def parse(self) -> None:
        """Handle every complete packet in the buffer, unless the queue fills first."""
        buf = self.buf
        pos, end = 0, len(buf)
        owner = self.owner
        mv = memoryview(buf)
        try:
            while end - pos >= 2 and not self.paused:
                first = buf[pos]
                length, mult, i, complete = 0, 1, pos + 1, False
                while i < end and i - pos <= 4:
                    byte = buf[i]
                    i += 1
                    length += (byte & 0x7F) * mult
                    if not byte & 0x80:
                        complete = True
                        break
                    mult *= 128
                if not complete:
                    if i - pos > 4:
                        raise _ProtocolError("remaining length longer than 4 bytes")
                    break  # the length itself is incomplete
                if end - i < length:
                    break  # the body is still on its way
                pos = i + length
                if first >> 4 == _PUBLISH:
                    owner._publish_received(self, first, mv, i, pos)
                else:
                    owner._control_received(self, first >> 4, mv[i:pos].tobytes())
        except (_ProtocolError, IndexError, UnicodeDecodeError) as exc:
            log.error("event=mqtt_protocol_error client_id=%s error=%r",
                      owner.settings.client_id, str(exc))
            mv.release()
            buf.clear()
            self.close()
            return
        mv.release()
        del buf[:pos]

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.transport.is_closing():
            self.paused = False
            self.parse()  # what was read before the pause first
            if not self.paused:
                self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AckingSubscriber:
    """Subscribe over MQTT 5 with a persistent session; ack each message explicitly.

    Use as ``async with AckingSubscriber(settings, topics=[...]) as sub:`` then
    ``async for d in sub.deliveries(): ...; d.ack()`` — or, for throughput,
    ``batch = await sub.take(n)`` and ``sub.ack_many(batch)``. Reusable, not
    reentrant. Everything runs on the event loop that entered it.
    """

    def __init__(self, settings: MqttSettings, *, topics: Sequence[str]) -> None:
        if not 1 <= settings.receive_maximum <= 65535:
            raise ValueError("receive_maximum must be 1..65535")
        self.settings = settings
        self.topics = list(topics)
        # Room for receive_maximum messages plus as many stale copies from before a
        # reconnect; reading stops while the queue holds that many (or max_queued_bytes).
        self.capacity = 2 * settings.receive_maximum
        self._queue: deque[Delivery] = deque()
        self._bytes = 0  # payload bytes in _queue
        self._avail = asyncio.Event()  # the queue is not empty
        self._generation = 0
        self._conn: _Connection | None = None  # the current connection, once CONNACKed
        self._ready = asyncio.Event()  # connected and subscribed
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._entered = False
        self._full_logged = False
        self._was_connected = False
        # our QoS 1 publishes (end-to-end acks): in flight up to the broker's Receive
        # Maximum, the rest wait here (bounded; a lost one costs a gateway resend only)
        self._out_mid = 0
        self._out_inflight: set[int] = set()
        self._out_max = 65535
        self._out_wait: deque[tuple[str, bytes]] = deque(maxlen=10_000)
        self.reconnects = 0
        self.overflows = 0
        self.stale_acks = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> AckingSubscriber:
        if self._entered:
            raise RuntimeError("AckingSubscriber is not reentrant")
        self._entered = True
        self._closing = False
        self._ready = asyncio.Event()
        self._avail = asyncio.Event()
        if self._queue:
            self._avail.set()
        # the connection loop keeps reconnecting on its own, also when the broker is
        # not up yet at start
        self._task = asyncio.create_task(self._run(), name=f"mqtt-{self.settings.client_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        conn, self._conn = self._conn, None
        self._generation += 1
        if conn is not None:
            # a normal DISCONNECT keeps the session (expiry > 0): unacked messages stay
            conn.write(_DISCONNECT_NORMAL)
            conn.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._ready.clear()
        self._entered = False

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
        return self._conn is not None

    async def _run(self) -> None:
        delay = 1.0
        while not self._closing:
            try:
                if await self._session():
                    delay = 1.0
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError) as exc:
                log.warning("event=mqtt_connect_failed client_id=%s host=%s port=%d error=%r",
                            self.settings.client_id, self.settings.host, self.settings.port,
                            str(exc))
            if self._closing:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _session(self) -> bool:
        """One connection from CONNECT to its loss; True if the broker accepted us."""
        s = self.settings
        loop = asyncio.get_running_loop()
        ctx = None
        if s.tls:
            ctx = ssl.create_default_context(cafile=s.ca_file)
            if s.cert_file:
                ctx.load_cert_chain(s.cert_file, s.key_file)
        self._generation += 1
        gen = self._generation
        _, conn = await asyncio.wait_for(loop.create_connection(
            lambda: _Connection(self, gen), s.host, s.port, ssl=ctx), 10)
        try:
            conn.write(_connect_packet(s, s.keepalive))
            session_present, reason, props = await asyncio.wait_for(conn.connack, 10)
            if reason >= 0x80:
                log.warning("event=mqtt_connect_refused client_id=%s reason=%s",
                            s.client_id, _CONNACK_REASONS.get(reason, hex(reason)))
                return False
            if gen != self._generation or self._closing:
                return False
            keepalive = int(props.get(0x13, s.keepalive))  # type: ignore[call-overload]
            self._out_max = int(props.get(0x21, 65535))  # type: ignore[call-overload]
            self._out_inflight.clear()
            self._conn = conn
            was, self._was_connected = self._was_connected, True
            log.info("event=mqtt_connected client_id=%s session_present=%s generation=%d",
                     s.client_id, session_present, gen)
            if was and not session_present:
                # the broker forgot us (expired, restarted without persistence, or another
                # worker took this client id): what it held for us is gone; say so loudly
                log.error("event=mqtt_session_lost client_id=%s", s.client_id)
            # Subscribing again on a resumed session is harmless and repairs a session
            # the broker lost (e.g. a broker restart without persistence).
            conn.write(_subscribe_packet(1, self.topics))
            self._flush_out()
            pinger = asyncio.create_task(self._keepalive(conn, keepalive))
            try:
                await conn.lost
            finally:
                pinger.cancel()
            return True
        finally:
            conn.close()
            if self._conn is conn:
                self._conn = None
                self._generation += 1
                self.reconnects += 1
                log.warning("event=mqtt_disconnected client_id=%s", s.client_id)
            self._ready.clear()
            self._purge_stale()

    async def _keepalive(self, conn: _Connection, keepalive: int) -> None:
        """PINGREQ at half the keep-alive; a broker silent for 1.5 × it is gone."""
        if keepalive <= 0:
            return
        while True:
            await asyncio.sleep(keepalive / 2)
            if time.monotonic() - conn.last_received > keepalive * 1.5 and not conn.paused:
                log.warning("event=mqtt_keepalive_timeout client_id=%s",
                            self.settings.client_id)
                conn.close()
                return
            conn.write(_PINGREQ)

    # ------------------------------------------------------------------ packets in

    def _publish_received(self, conn: _Connection, first: int, mv: memoryview, pos: int,
                          end: int) -> None:
        """One PUBLISH, ``mv[pos:end]`` its variable header and payload."""
        qos = (first >> 1) & 3
        n = (mv[pos] << 8) | mv[pos + 1]
        topic = str(mv[pos + 2:pos + 2 + n], "utf-8")
        pos += 2 + n
        mid = 0
        if qos:
            if qos > 1:
                raise _ProtocolError("QoS 2 publish on a QoS 1 subscription")
            mid = (mv[pos] << 8) | mv[pos + 1]
            pos += 2
        plen = mv[pos]
        if plen & 0x80:
            plen, pos = _read_varint(mv, pos)
        else:
            pos += 1
        pos += plen  # properties: nothing in them changes what we store
        if pos > end:
            raise _ProtocolError("PUBLISH properties overrun the packet")
        size = end - pos
        if size > MAX_PAYLOAD_BYTES:
            payload, oversize = b"", (size, payload_hash(mv[pos:end].tobytes()))
        else:
            payload, oversize = mv[pos:end].tobytes(), None
        self._queue.append(Delivery(topic, payload, mid, qos, bool(first & 0x08),
                                    conn.generation, time.time(), self, oversize))
        self._bytes += len(payload)
        self._avail.set()
        if len(self._queue) >= self.capacity or self._bytes >= self.settings.max_queued_bytes:
            # mosquitto oversent (or the payloads are big): stop reading, drop nothing
            if not self._full_logged:
                self._full_logged = True
                self.overflows += 1
                log.warning("event=mqtt_queue_full capacity=%d action=backpressure",
                            self.capacity)
            conn.pause()

    def _control_received(self, conn: _Connection, kind: int, body: bytes) -> None:
        if kind == _PUBACK:
            self._out_inflight.discard(int.from_bytes(body[0:2], "big"))
            self._flush_out()
        elif kind == _CONNACK:
            props: dict[int, object] = {}
            if len(body) > 2:
                props, _ = _properties(body, 2)
            if not conn.connack.done():
                conn.connack.set_result((bool(body[0] & 1), body[1], props))
        elif kind == _SUBACK:
            _, pos = _properties(body, 2)
            bad = [hex(r) for r in body[pos:] if r >= 0x80]
            if bad:
                log.error("event=mqtt_subscribe_refused topics=%s reasons=%s", self.topics, bad)
                return
            log.info("event=subscribed client_id=%s topics=%s", self.settings.client_id,
                     ",".join(self.topics))
            self._ready.set()
        elif kind == _DISCONNECT:
            reason = body[0] if body else 0
            log.warning("event=mqtt_server_disconnect client_id=%s reason=0x%02x",
                        self.settings.client_id, reason)
            conn.close()
        elif kind != _PINGRESP:
            raise _ProtocolError(f"unexpected packet type {kind}")

    # ------------------------------------------------------------------ consuming

    async def get(self) -> Delivery:
        while not self._queue:
            self._avail.clear()
            await self._avail.wait()
        d = self._queue.popleft()
        self._taken(len(d.payload))
        return d

    def get_nowait(self) -> Delivery | None:
        if not self._queue:
            return None
        d = self._queue.popleft()
        self._taken(len(d.payload))
        return d

    async def take(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` queued deliveries, waiting for the first one."""
        while not self._queue:
            self._avail.clear()
            await self._avail.wait()
        return self.take_nowait(limit)

    def take_nowait(self, limit: int) -> list[Delivery]:
        """Up to ``limit`` queued deliveries, in receive order (maybe none)."""
        q = self._queue
        n = min(limit, len(q))
        out = [q.popleft() for _ in range(n)]
        if out:
            self._taken(sum(len(d.payload) for d in out))
        return out

    def _taken(self, nbytes: int) -> None:
        self._bytes -= nbytes
        conn = self._conn
        if (conn is not None and conn.paused and len(self._queue) < self.capacity
                and self._bytes < self.settings.max_queued_bytes):
            self._full_logged = False
            conn.resume()

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            yield await self.get()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def publish(self, topic: str, payload: bytes) -> bool:
        """QoS 1 publish on this connection (ingest's end-to-end acks); False if offline.

        A lost ack costs a resend from the gateway after its timeout, never data.
        """
        if self._conn is None:
            return False
        self._out_wait.append((topic, payload))
        self._flush_out()
        return True

    def _flush_out(self) -> None:
        conn = self._conn
        if conn is None:
            return
        chunks = []
        while self._out_wait and len(self._out_inflight) < self._out_max:
            topic, payload = self._out_wait.popleft()
            mid = self._out_mid
            while True:
                mid = mid % 65535 + 1
                if mid not in self._out_inflight:
                    break
            self._out_mid = mid
            self._out_inflight.add(mid)
            chunks.append(_packet(0x32, _utf8(topic) + mid.to_bytes(2, "big") + b"\x00"
                                  + payload))
        if chunks:
            conn.write(b"".join(chunks))

    def ack(self, d: Delivery) -> bool:
        if d.qos == 0:
            return True
        conn = self._conn
        if conn is None or d.generation != conn.generation:
            self.stale_acks += 1
            return False
        conn.write(b"\x40\x02" + d.mid.to_bytes(2, "big"))
        return True

    def ack_many(self, ds: Iterable[Delivery]) -> tuple[int, int]:
        """Ack every delivery in one socket write; returns (acked, stale)."""
        conn = self._conn
        gen = conn.generation if conn is not None else -1
        out = []
        acked = stale = 0
        for d in ds:
            if d.qos == 0:
                acked += 1
            elif d.generation == gen:
                out.append(b"\x40\x02" + d.mid.to_bytes(2, "big"))
                acked += 1
            else:
                stale += 1
        if out and conn is not None:
            conn.write(b"".join(out))
        self.stale_acks += stale
        return acked, stale

    # ------------------------------------------------------------------ loop side

    def _purge_stale(self) -> None:
        """Drop queued copies from a dead connection: the broker will redeliver them."""
        gen = self._generation
        keep = [d for d in self._queue if d.generation == gen or d.qos == 0]
        dropped = len(self._queue) - len(keep)
        if dropped:
            self._queue = deque(keep)
            self._bytes = sum(len(d.payload) for d in keep)
            if not keep:
                self._avail.clear()
            log.info("event=mqtt_purged_stale count=%d", dropped)
