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


async def test_full_queue_blocks_the_network_thread_instead_of_dropping() -> None:
    """mosquitto 2.0.11 was seen sending more than Receive Maximum on a backlog handover.
    Driven directly (no broker: the oversend cannot be provoked on demand): paho's thread
    must wait for room, never drop, and resume as soon as the consumer takes a message."""
    import threading
    import time

    from paho.mqtt.client import MQTTMessage

    sub = AckingSubscriber(MqttSettings(client_id="bp", receive_maximum=2), topics=[FILTER])
    sub._loop = asyncio.get_running_loop()
    assert sub.capacity == 4

    def deliver(n: int) -> None:
        for i in range(n):
            m = MQTTMessage(mid=i + 1, topic=TOPIC.encode())
            m.payload, m.qos = f"m{i}".encode(), 1
            sub._on_message(None, None, m)  # type: ignore[arg-type]

    t = threading.Thread(target=deliver, args=(6,), daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    while sub.overflows == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert sub.overflows == 1 and t.is_alive(), "the 5th message must wait for room"
    got = [(await next_delivery(sub)).payload for _ in range(6)]
    assert got == [f"m{i}".encode() for i in range(6)]
    t.join(10)
    assert not t.is_alive()


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
