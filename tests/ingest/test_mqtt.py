"""The manual-ack MQTT layer against a real mosquitto: unacked means redelivered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from enmon.localrun import Mosquitto
from ingest.mqtt import AckingSubscriber, Delivery, MqttSettings, shared

TOPIC = "enmon/v1/site-a/gw-01/telemetry"
FILTER = shared("enmon/v1/+/+/telemetry")


@contextmanager
def publisher(server: Mosquitto) -> Iterator[paho.Client]:
    """A QoS 1 publisher, disconnected however the block ends."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                    protocol=paho.MQTTv5)
    c.connect(server.host, server.port)
    c.loop_start()
    try:
        yield c
    finally:
        c.loop_stop()
        c.disconnect()


def publish(c: paho.Client, payload: bytes, topic: str = TOPIC) -> None:
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(timeout=10)
    assert info.is_published()


async def next_delivery(sub: AckingSubscriber, timeout: float = 20) -> Delivery:
    return await asyncio.wait_for(sub.get(), timeout)


async def test_unacked_is_redelivered_acked_is_not(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-t1")
    with publisher(mosquitto) as pub:
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            publish(pub, b"first")
            d = await next_delivery(sub)
            assert d.payload == b"first" and not d.dup
            # leave it unacked and go away (session kept)

        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            d = await next_delivery(sub)
            assert d.payload == b"first", "an unacked message must come back"
            assert d.dup
            assert d.ack()

        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            publish(pub, b"marker")
            # the broker resends in-flight messages before new ones, so if "first"
            # were still owed it would arrive before the marker
            d = await next_delivery(sub)
            assert d.payload == b"marker", f"acked message came back: {d.payload!r}"
            assert d.ack()


async def test_messages_published_while_away_wait_in_the_session(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-t2")
    async with AckingSubscriber(settings, topics=[FILTER]) as sub:
        await sub.wait_ready()
    with publisher(mosquitto) as pub:
        for i in range(5):
            publish(pub, f"m{i}".encode())
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            got = [await next_delivery(sub) for _ in range(5)]
            assert [d.payload for d in got] == [f"m{i}".encode() for i in range(5)]
            assert all(d.ack() for d in got)


async def test_receive_maximum_bounds_unacked_messages(mosquitto: Mosquitto) -> None:
    """Flat memory when the database is slow: the broker stops at Receive Maximum."""
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-t3",
                            receive_maximum=10)
    with publisher(mosquitto) as pub:
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            for i in range(30):
                publish(pub, f"m{i}".encode())
            held = [await next_delivery(sub) for _ in range(10)]
            # a marker sent now must not overtake: 20 are waiting behind the 10 unacked
            publish(pub, b"marker")
            received, acked = 10, 0
            while True:
                # invariant: never more than receive_maximum unacked in our hands
                assert received - acked <= 10, (received, acked)
                held[0].ack()
                held.pop(0)
                acked += 1
                d = await next_delivery(sub)
                received += 1
                held.append(d)
                if d.payload == b"marker":
                    break
            assert received == 31


async def test_reconnect_after_broker_restart(mosquitto: Mosquitto) -> None:
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-t4")
    async with AckingSubscriber(settings, topics=[FILTER]) as sub:
        await sub.wait_ready()
        with publisher(mosquitto) as pub:
            publish(pub, b"before")
            assert (await next_delivery(sub)).payload == b"before"  # not acked
        mosquitto.stop()  # graceful: mosquitto saves sessions to its persistence file
        mosquitto.start()
        await sub.wait_ready(timeout=60)
        again = await next_delivery(sub, timeout=60)
        assert again.payload == b"before", "unacked message lost across a broker restart"
        assert again.ack()
        with publisher(mosquitto) as pub:
            publish(pub, b"after")
            while (d2 := await next_delivery(sub, timeout=60)).payload != b"after":
                pass
            assert d2.ack()
            assert sub.reconnects >= 1


async def test_full_queue_stops_reading_the_socket_instead_of_dropping() -> None:
    """mosquitto 2.0.11 was seen sending more than Receive Maximum on a backlog handover.
    That oversend cannot be provoked on demand, so a scripted broker on a real TCP socket
    stands in for it: after CONNACK and SUBACK it sends 6 PUBLISH packets in one write to a
    subscriber with Receive Maximum 2 (capacity 4). The subscriber must stop at its
    capacity, leave the rest unparsed (TCP backpressure), never drop one, and go on as soon
    as the consumer takes messages."""
    got_connect = asyncio.Event()

    def publish_packet(i: int) -> bytes:
        topic, payload = TOPIC.encode(), f"m{i}".encode()
        body = len(topic).to_bytes(2, "big") + topic + (i + 1).to_bytes(2, "big") + b"\x00"
        return bytes((0x32, len(body) + len(payload))) + body + payload

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # CONNECT
        got_connect.set()
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK: no session, success, no props
        await reader.read(1024)  # SUBSCRIBE (packet id 1)
        writer.write(b"\x90\x04\x00\x01\x00\x01")  # SUBACK: granted QoS 1
        writer.write(b"".join(publish_packet(i) for i in range(6)))
        await writer.drain()
        await reader.read(1024)  # until the subscriber goes away
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = MqttSettings(port=port, client_id="bp", receive_maximum=2)
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            assert sub.capacity == 4
            await sub.wait_ready()
            deadline = time.monotonic() + 20
            while sub.queued < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            for _ in range(20):  # the other two are on the socket: they must not come in
                await asyncio.sleep(0.01)
            assert sub.queued == 4 and sub.overflows == 1, (sub.queued, sub.overflows)
            got = [(await next_delivery(sub)).payload for _ in range(6)]
            assert got == [f"m{i}".encode() for i in range(6)]
            assert sub.queued == 0
    finally:
        server.close()
        await server.wait_closed()


async def test_packets_split_anywhere_across_reads_are_parsed_whole() -> None:
    """TCP may cut a packet anywhere — inside the remaining length, the topic, the payload.
    A scripted broker (mosquitto cannot be told where to cut) sends a 200-byte and a
    20 000-byte PUBLISH (a 3-byte remaining length) one byte per write, then 50 small ones
    in one write; all arrive whole and in order, with their packet ids and DUP flag."""
    big = b"x" * 20_000

    def publish_packet(mid: int, payload: bytes, dup: bool = False) -> bytes:
        topic = TOPIC.encode()
        body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + b"\x00" + payload
        n, rl = len(body), bytearray()
        while True:
            n, digit = divmod(n, 128)
            rl.append(digit | (0x80 if n else 0))
            if not n:
                break
        return bytes((0x3A if dup else 0x32,)) + bytes(rl) + body

    async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")
        await reader.read(1024)  # SUBSCRIBE
        writer.write(b"\x90\x04\x00\x01\x00\x01")
        for byte in publish_packet(7, b"a" * 200) + publish_packet(8, big, dup=True):
            writer.write(bytes((byte,)))
            await writer.drain()
        writer.write(b"".join(publish_packet(100 + i, f"s{i}".encode()) for i in range(50)))
        await writer.drain()
        await reader.read(1 << 20)
        writer.close()

    server = await asyncio.start_server(broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = MqttSettings(port=port, client_id="split")
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            got = [await next_delivery(sub) for _ in range(52)]
            assert [(d.mid, d.payload, d.dup, d.topic) for d in got[:2]] == [
                (7, b"a" * 200, False, TOPIC), (8, big, True, TOPIC)]
            assert [d.payload for d in got[2:]] == [f"s{i}".encode() for i in range(50)]
            assert [d.mid for d in got[2:]] == list(range(100, 150))
            assert sub.ack_many(got) == (52, 0)
    finally:
        server.close()
        await server.wait_closed()


async def test_stop_lets_built_batches_finish_and_ack(mosquitto: Mosquitto) -> None:
    """A routine restart (SIGTERM) should not cause redeliveries: batches already built are
    written and acked within the grace period before the session is left."""
    from ingest.metrics import Stats
    from ingest.pipeline import Pipeline, PipelineSettings
    from tests.ingest.conftest import make_batch

    class SlowInflux:
        """Stands in for an InfluxDB that is slow to answer: a real influxd cannot be made
        to hold one request on demand. Writes of meter points wait for ``gate``."""

        def __init__(self) -> None:
            self.gate = asyncio.Event()
            self.lines: list[str] = []

        async def write(self, lines: list[str]) -> None:
            if any(ln.startswith("meter,") for ln in lines):
                await self.gate.wait()
            self.lines += lines

        async def close(self) -> None:
            pass

    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="ingest-grace")
    writer = SlowInflux()
    with publisher(mosquitto) as pub:
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            for s in range(5):
                publish(pub, make_batch("gw-01", s))
            stats = Stats()
            pipe = Pipeline(sub=sub, writer=writer, worker="g", stats=stats,
                            settings=PipelineSettings(max_wait_s=0.05, stats_interval_s=3600,
                                                      shutdown_grace_s=30))
            stop = asyncio.Event()
            task = asyncio.create_task(pipe.run(stop))
            deadline = time.monotonic() + 30
            while not (stats.messages == 5 and pipe._writing):
                assert time.monotonic() < deadline, "the pipeline never started writing"
                await asyncio.sleep(0.01)
            stop.set()
            for _ in range(50):
                await asyncio.sleep(0)
            assert not task.done(), "stopped while a built batch was still being written"
            writer.gate.set()
            await asyncio.wait_for(task, 30)
            assert stats.acked == 5
        async with AckingSubscriber(settings, topics=[FILTER]) as sub:
            await sub.wait_ready()
            publish(pub, b"marker")
            assert (await next_delivery(sub)).payload == b"marker", "acked batches came back"
